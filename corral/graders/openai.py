"""OpenAI grader JSON (string_check, text_similarity, score_model, label_model, python, multi).

`load_openai_grader(spec)` builds a grader, `validate_grader(spec)` lists what is wrong with a spec,
`run_grader(spec, item, sample_text)` answers like OpenAI's graders "run" endpoint.
"""
from __future__ import annotations

import ast
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from corral.core.errors import CorralError
from corral.graders.arith import safe_eval, validate_expr
from corral.graders.base import Sample, Score
from corral.graders.judge import (
    Judge,
    JudgeError,
    LabelModelGrader,
    ScoreModelGrader,
    http_judge,
    parse_label,
    parse_score,
)
from corral.graders.sandbox import TIMEOUT, SandboxUnavailable, run_python_grader
from corral.graders.similarity import METRICS, cosine_batch
from corral.graders.spec import (
    ERROR_FLAGS,
    JudgeFn,
    SpecGrader,
    _did_you_mean,
    _output_json,
    _threshold_errors,
    _Unrenderable,
    render,
    template_errors,
)

__all__ = [
    "ERROR_FLAGS", "GRADER_TYPES", "Judge", "JudgeError", "JudgeFn", "LabelModelGrader",
    "MultiGrader",
    "PythonGrader", "ScoreModelGrader", "SpecGrader", "StringCheckGrader", "TextSimilarityGrader",
    "http_judge", "load_openai_grader", "parse_label", "parse_score", "render", "run_grader",
    "template_errors", "validate_grader",
]


# ---------------------------------------------------------------- string_check, text_similarity
class StringCheckGrader(SpecGrader):
    type = "string_check"
    required = ("input", "reference", "operation")
    has_pass = True
    OPERATIONS: ClassVar[dict[str, Callable[[str, str], bool]]] = {
        "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
        "like": lambda a, b: b in a, "ilike": lambda a, b: b.casefold() in a.casefold(),
    }

    @classmethod
    def value_errors(cls, spec, path):
        errors = template_errors(spec["input"], f"{path}.input")
        errors += template_errors(spec["reference"], f"{path}.reference")
        op = spec["operation"]
        if op not in cls.OPERATIONS:
            errors.append(f"{path}.operation: unknown operation {op!r}"
                          f"{_did_you_mean(op, cls.OPERATIONS)}; "
                          f"use one of {', '.join(cls.OPERATIONS)}")
        return errors

    def _grade(self, item, sample):
        text = render(self.spec["input"], item, sample)
        reference = render(self.spec["reference"], item, sample)
        ok = self.OPERATIONS[self.spec["operation"]](text, reference)
        return Score(float(ok), {"operation": self.spec["operation"]}, passed=ok)


class TextSimilarityGrader(SpecGrader):
    type = "text_similarity"
    required = ("input", "reference", "evaluation_metric")
    optional = ("pass_threshold",)

    def __init__(self, spec, judge=None):
        super().__init__(spec)
        self.has_pass = "pass_threshold" in spec

    @classmethod
    def value_errors(cls, spec, path):
        errors = template_errors(spec["input"], f"{path}.input")
        errors += template_errors(spec["reference"], f"{path}.reference")
        metric = spec["evaluation_metric"]
        if metric not in METRICS:
            errors.append(f"{path}.evaluation_metric: unknown metric {metric!r}"
                          f"{_did_you_mean(metric, METRICS)}; use one of {', '.join(METRICS)}")
        return errors + _threshold_errors(spec, path)

    def _score(self, value: float) -> Score:
        threshold = self.spec.get("pass_threshold")
        passed = None if threshold is None else value >= threshold
        return Score(value, {"metric": self.spec["evaluation_metric"]}, passed=passed)

    def grade(self, item, sample):
        return self.grade_batch([(item, sample)])[0]

    def grade_batch(self, pairs):
        """Renders every pair first so that cosine embeds the whole batch in one pass."""
        scores: list[Score | None] = [None] * len(pairs)
        texts: dict[int, tuple[str, str]] = {}
        for i, (item, sample) in enumerate(pairs):
            try:
                texts[i] = (render(self.spec["input"], item, sample),
                            render(self.spec["reference"], item, sample))
            except _Unrenderable as exc:
                scores[i] = self._fail(exc.kind, str(exc))
        metric = self.spec["evaluation_metric"]
        if metric == "cosine":
            values = dict(zip(texts, cosine_batch(list(texts.values()))))
        else:
            values = {i: METRICS[metric](*pair) for i, pair in texts.items()}
        for i, value in values.items():
            scores[i] = self._score(value)
        return scores



# ---------------------------------------------------------------- python, multi
def _python_errors(source, path: str) -> list[str]:
    """Parse only (never run) the source; it must define grade(sample, item) at top level."""
    if not isinstance(source, str):
        return [f"{path}: expected Python source as a string"]
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"{path}: line {exc.lineno}: {exc.msg}; fix the Python syntax"]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "grade":
            args = node.args
            if len(args.posonlyargs) + len(args.args) >= 2 or args.vararg:
                return []
            return [f"{path}: grade() must take two arguments, grade(sample, item)"]
    return [f"{path}: the source does not define grade(sample, item) -> float at top level"]


class PythonGrader(SpecGrader):
    """`source` defines grade(sample, item) -> float; runs in sandbox.py, one process a batch."""
    type = "python"
    required = ("source",)
    optional = ("image_tag",)
    timeout_s, memory_mb = 120, 2048  # OpenAI's limits: 2 minutes, 2 GB

    @classmethod
    def value_errors(cls, spec, path):
        return _python_errors(spec["source"], f"{path}.source")

    def grade(self, item, sample):
        return self.grade_batch([(item, sample)])[0]

    def grade_batch(self, pairs):
        payload = [(item, {"output_text": s.output_text, "output_json": _output_json(s)})
                   for item, s in pairs]
        # CPU seconds: the batch's whole wall-clock allowance, so busy-loop children cannot
        # outlive it even when the wall clock is not watching them (e.g. forked processes).
        info: dict = {}  # which sandbox ran the batch and its start-up seconds
        try:
            results = run_python_grader(self.spec["source"], payload, timeout_s=self.timeout_s,
                                        memory_mb=self.memory_mb,
                                        cpu_s=int(self.timeout_s * len(payload)) + 10, info=info)
        except SandboxUnavailable as exc:  # sandbox.py runs standalone: no corral imports there
            raise CorralError(str(exc)) from None
        scores = []
        for value, reason in results:
            if reason is None:
                scores.append(Score(value, {"sandbox": dict(info)}))
            elif reason.startswith(TIMEOUT):
                scores.append(self._fail("unresponsive_reward_error", reason))
            elif reason.startswith("error"):
                scores.append(self._fail("python_grader_runtime_error", reason))
            else:
                scores.append(self._fail("python_grader_server_error", reason))
        for score in scores:
            score.details.setdefault("sandbox", dict(info))
        return scores


class MultiGrader(SpecGrader):
    """Named sub-graders combined by `calculate_output` (arith.safe_eval over their rewards)."""
    type = "multi"
    required = ("graders", "calculate_output")

    def __init__(self, spec, judge=None):
        super().__init__(spec)
        self.graders = {key: _build(sub, judge) for key, sub in spec["graders"].items()}

    @classmethod
    def value_errors(cls, spec, path):
        graders = spec["graders"]
        if not isinstance(graders, dict) or not graders:
            return [f"{path}.graders: expected an object mapping names to graders"]
        errors = []
        for key, sub in graders.items():
            if not key.isidentifier():
                errors.append(f"{path}.graders: rename {key!r} to a name like 'exact_match' so "
                              "calculate_output can refer to it")
            errors += _spec_errors(sub, f"{path}.graders.{key}")
        try:
            validate_expr(spec["calculate_output"], graders)
        except CorralError as exc:
            errors.append(f"{path}.{exc}")
        return errors

    def grade(self, item, sample):
        return self.grade_batch([(item, sample)])[0]

    def grade_batch(self, pairs):
        """Each sub-grader sees the whole batch, so a python sub-grader starts one process."""
        columns = {key: grader.grade_batch(pairs) for key, grader in self.graders.items()}
        scores = []
        for i in range(len(pairs)):
            subs = {key: column[i] for key, column in columns.items()}
            rewards = {key: score.value for key, score in subs.items()}
            details = {"sub_rewards": rewards,
                       "sub_details": {key: score.details for key, score in subs.items()}}
            try:
                value = safe_eval(self.spec["calculate_output"], rewards)
            except ValueError as exc:
                details.update(error=str(exc), error_kind="other_error")
                value = 0.0
            scores.append(Score(value, details))
        return scores


GRADER_TYPES: dict[str, type[SpecGrader]] = {
    cls.type: cls for cls in (StringCheckGrader, TextSimilarityGrader, ScoreModelGrader,
                              LabelModelGrader, PythonGrader, MultiGrader)
}


# ---------------------------------------------------------------- validate, load, run
def _spec_errors(spec, path: str) -> list[str]:
    if not isinstance(spec, dict):
        return [f"{path}: expected a grader object with a 'type', got {type(spec).__name__}"]
    kind = spec.get("type")
    if kind not in GRADER_TYPES:
        what = "missing key 'type'" if kind is None else f"unknown grader type {kind!r}"
        hint = _did_you_mean(kind, GRADER_TYPES) if kind else ""
        return [f"{path}.type: {what}{hint}; use one of {', '.join(GRADER_TYPES)}"]
    cls = GRADER_TYPES[kind]
    allowed = ("type", "name") + cls.required + cls.optional
    errors = [f"{path}: a {kind} grader needs the key {key!r}"
              for key in cls.required if key not in spec]
    errors += [f"{path}.{key}: unknown key for a {kind} grader{_did_you_mean(key, allowed)}; "
               f"allowed keys are {', '.join(allowed)}" for key in spec if key not in allowed]
    if "name" in spec and not isinstance(spec["name"], str):
        errors.append(f"{path}.name: expected a string")
    return errors or cls.value_errors(spec, path)


def validate_grader(spec: dict) -> list[str]:
    """Every problem with a grader spec, each naming its key; [] when it is valid. Never runs it."""
    return _spec_errors(spec, "grader")


def _build(spec: dict, judge: Judge | JudgeFn | None) -> SpecGrader:
    return GRADER_TYPES[spec["type"]](spec, judge)


def read_spec_file(source: dict | str | Path) -> tuple[dict, str]:
    if isinstance(source, dict):
        return source, "grader"
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CorralError(f"{path}: cannot read the grader file ({exc.strerror}); "
                          "check the path.") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml
        try:
            return yaml.safe_load(text), str(path)
        except yaml.YAMLError as exc:
            raise CorralError(f"{path}: not valid YAML ({exc}); fix the grader file.") from None
    try:
        return json.loads(text), str(path)
    except ValueError as exc:
        raise CorralError(f"{path}: not valid JSON ({exc}); fix the grader file.") from None


def load_openai_grader(spec: dict | str | Path, judge: Judge | JudgeFn | None = None) -> SpecGrader:
    """Build a grader from a spec dict or a .json/.yaml file; raise CorralError if it is invalid.

    `judge` serves score_model and label_model graders (also inside multi)."""
    spec, where = read_spec_file(spec)
    errors = validate_grader(spec)
    if errors:
        prefix = "" if where == "grader" else f"{where}: "  # dict specs: errors name grader.*
        raise CorralError(prefix + "; ".join(errors) + ".")
    return _build(spec, judge)


def _collect_errors(details: dict, errors: dict) -> None:
    kind = details.get("error_kind")
    if kind:
        errors[kind] = True
        errors[f"{kind}_details"] = details.get("error")
    for sub in details.get("sub_details", {}).values():
        _collect_errors(sub, errors)


def run_grader(spec: dict, item: dict, sample_text: str,
               judge: Judge | JudgeFn | None = None) -> dict:
    """Grade one sample the way OpenAI's `graders/run` answers:
    {"reward", "sub_rewards", "metadata": {"errors", "name", "type", "execution_time"}}."""
    grader = load_openai_grader(spec, judge)
    start = time.perf_counter()
    score = grader.grade(item, Sample.of(sample_text))
    errors = dict.fromkeys(ERROR_FLAGS, False)
    _collect_errors(score.details, errors)
    return {
        "reward": score.value,
        "sub_rewards": dict(score.details.get("sub_rewards", {})),
        "metadata": {"errors": errors, "name": grader.name, "type": grader.type,
                     "execution_time": time.perf_counter() - start,
                     **({"sandbox": score.details["sandbox"]} if "sandbox" in score.details
                        else {})},
    }
