"""OpenAI grader JSON (string_check, text_similarity, score_model, label_model, python, multi).

`load_grader(spec)` builds a grader, `validate_grader(spec)` lists what is wrong with a spec,
`run_grader(spec, item, sample_text)` answers like OpenAI's graders "run" endpoint.
"""
from __future__ import annotations

import ast
import difflib
import json
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from corral.errors import CorralError
from corral.graders.arith import safe_eval, validate_expr
from corral.graders.base import BaseGrader, Sample, Score
from corral.graders.sandbox import TIMEOUT, run_python_grader
from corral.graders.similarity import METRICS, cosine_batch

# judge(messages, sampling_params) -> reply text: the local generation engine or http_judge().
Judge = Callable[[list[dict], dict], str]
# The flags of metadata.errors in OpenAI's run endpoint; a failed Score names one in error_kind.
ERROR_FLAGS = (
    "formula_parse_error", "sample_parse_error", "truncated_observation_error",
    "unresponsive_reward_error", "invalid_variable_error", "other_error",
    "python_grader_server_error", "python_grader_runtime_error", "model_grader_server_error",
    "model_grader_refusal_error", "model_grader_parse_error",
)


class JudgeError(Exception):
    """A judge call failed; `kind` is one of ERROR_FLAGS."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class _Unrenderable(Exception):
    """A template points at a field this item or sample lacks: the grade is 0, not a crash."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------- templates
_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def _reference_error(ref: str) -> str | None:
    parts = ref.split(".")
    if any(not p for p in parts):
        return f"{{{{{ref}}}}} has an empty path segment"
    if parts[0] == "item" and len(parts) >= 2:
        return None
    if parts[:2] == ["sample", "output_text"] and len(parts) == 2:
        return None
    if parts[:2] == ["sample", "output_json"]:
        return None
    return (f"{{{{{ref}}}}} is not a known reference; use {{{{item.<field>}}}}, "
            "{{sample.output_text}} or {{sample.output_json.<field>}}")


def template_errors(text, path: str) -> list[str]:
    if not isinstance(text, str):
        return [f"{path}: expected a string, got {type(text).__name__}"]
    return [f"{path}: {why}" for ref in _TEMPLATE.findall(text)
            if (why := _reference_error(ref)) is not None]


def _output_json(sample: Sample):
    if sample.output_json is not None:
        return sample.output_json
    return Sample.of(sample.output_text).output_json  # base.Sample parses lazily


def _lookup(ref: str, item: dict, sample: Sample):
    parts = ref.split(".")
    if parts[0] == "item":
        value, path, where = item, parts[1:], "the item"
    elif parts[1] == "output_text":
        return sample.output_text
    else:
        value, path, where = _output_json(sample), parts[2:], "the sample's JSON"
        if value is None:
            raise _Unrenderable("sample_parse_error",
                                f"{{{{{ref}}}}}: the sample output is not valid JSON")
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise _Unrenderable("invalid_variable_error",
                                f"{{{{{ref}}}}}: {where} has no field {key!r}")
    return value


def render(template: str, item: dict, sample: Sample) -> str:
    """Fill `{{item.x.y}}`, `{{sample.output_text}}`, `{{sample.output_json.x}}`; non-strings
    are written as JSON. A missing field raises _Unrenderable (the grader scores 0)."""
    def fill(match: re.Match) -> str:
        value = _lookup(match.group(1), item, sample)
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return _TEMPLATE.sub(fill, template)


# ---------------------------------------------------------------- shared machinery
def _did_you_mean(word, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class SpecGrader(BaseGrader):
    """A grader built from one OpenAI grader JSON object."""
    type = ""
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    has_pass = False  # whether Score.passed is meaningful for this type

    def __init__(self, spec: dict, judge: Judge | None = None):
        self.spec = spec
        self.name = spec.get("name", self.type)

    @classmethod
    def value_errors(cls, spec: dict, path: str) -> list[str]:
        """Checks of the values, run once every required key is present."""
        return []

    def _fail(self, kind: str, message: str) -> Score:
        return Score(0.0, {"error": message, "error_kind": kind},
                     passed=False if self.has_pass else None)

    def grade(self, item: dict, sample: Sample) -> Score:
        try:
            return self._grade(item, sample)
        except _Unrenderable as exc:
            return self._fail(exc.kind, str(exc))

    def _grade(self, item: dict, sample: Sample) -> Score:  # pragma: no cover - abstract
        raise NotImplementedError


def _threshold_errors(spec: dict, path: str) -> list[str]:
    if "pass_threshold" in spec and not _is_number(spec["pass_threshold"]):
        return [f"{path}.pass_threshold: expected a number, got {spec['pass_threshold']!r}"]
    return []


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
            errors.append(f"{path}.operation: unknown operation {op!r}{_did_you_mean(op, cls.OPERATIONS)}; "
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


# ---------------------------------------------------------------- score_model, label_model
_FENCE = re.compile(r"^```\w*\s*|\s*```$")
# "7/10" is not read as 10: a number right after "/" or a digit does not count.
_NUMBER_AT_END = re.compile(r"(?<![\d/.])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\.?\s*$")


def _json_result(text: str):
    """The reply as JSON, or the `result` of a JSON object in it; None when there is none."""
    candidates = [text] + re.findall(r"\{[^{}]*\}", text)
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            value = value.get("result")
        if value is not None:
            return value
    return None


def parse_score(reply: str) -> float | None:
    """A number, JSON `{"result": x}` (also inside text or a ``` fence), or a number that ends
    the reply ("... so the score is 0.8"); None when the reply holds none of these."""
    text = _FENCE.sub("", reply.strip())
    value = _json_result(text)
    if _is_number(value):
        return float(value)
    match = _NUMBER_AT_END.search(text)
    return float(match.group(1)) if match else None


def parse_label(reply: str, labels: list[str]) -> str | None:
    """The label the reply names: the whole reply, JSON `{"result": label}`, or the only label
    that occurs in it as a word (case-insensitive); None when ambiguous or absent."""
    by_folded = {label.casefold(): label for label in labels}
    text = _FENCE.sub("", reply.strip())
    for candidate in (text.strip("\"'`. \n"), _json_result(text)):
        if isinstance(candidate, str) and candidate.strip().casefold() in by_folded:
            return by_folded[candidate.strip().casefold()]
    found = [label for label in labels
             if re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, re.IGNORECASE)]
    return found[0] if len(found) == 1 else None


def _message_errors(messages, path: str) -> list[str]:
    if not isinstance(messages, list) or not messages:
        return [f"{path}: expected a non-empty list of messages with 'role' and 'content'"]
    errors = []
    for i, message in enumerate(messages):
        where = f"{path}[{i}]"
        if not isinstance(message, dict) or "content" not in message:
            errors.append(f"{where}: expected an object with 'role' and 'content'")
            continue
        if message.get("role", "user") not in ("system", "developer", "user", "assistant"):
            errors.append(f"{where}.role: unknown role {message.get('role')!r}; use system, "
                          "developer, user or assistant")
        content = message["content"]
        if isinstance(content, list):  # OpenAI's [{"type": "input_text", "text": ...}] form
            for j, part in enumerate(content):
                text = part.get("text") if isinstance(part, dict) else None
                errors += template_errors(text, f"{where}.content[{j}].text")
        else:
            errors += template_errors(content, f"{where}.content")
    return errors


class _JudgeGrader(SpecGrader):
    """A grader that asks a judge model; the judge is injected, so any engine can serve it."""

    def __init__(self, spec, judge=None):
        super().__init__(spec)
        if judge is None:
            raise CorralError(f"{self.type} grader {self.name!r} needs a judge; pass "
                              "judge=http_judge(base_url, api_key, model) or a callable "
                              "(messages, sampling_params) -> str to load_grader.")
        self.judge = judge

    def _instruction(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _messages(self, item, sample) -> list[dict]:
        messages = []
        for message in self.spec["input"]:
            content = message["content"]
            if isinstance(content, list):  # local judges read text only: join the text parts
                content = "\n".join(part["text"] for part in content)
            messages.append({"role": message.get("role", "user"),
                             "content": render(content, item, sample)})
        # OpenAI constrains the judge's output format itself; a local judge gets told instead.
        if messages[0]["role"] in ("system", "developer"):
            messages[0]["content"] += "\n\n" + self._instruction()
        else:
            messages.insert(0, {"role": "system", "content": self._instruction()})
        return messages

    def _ask(self, item, sample) -> str:
        messages = self._messages(item, sample)
        try:
            return self.judge(messages, dict(self.spec.get("sampling_params", {})))
        except JudgeError as exc:
            raise _Unrenderable(exc.kind, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - an injected judge may fail any way; score 0
            raise _Unrenderable("model_grader_server_error",
                                f"the judge failed: {type(exc).__name__}: {exc}") from None


class ScoreModelGrader(_JudgeGrader):
    type = "score_model"
    required = ("input",)
    optional = ("model", "range", "sampling_params", "pass_threshold")

    def __init__(self, spec, judge=None):
        super().__init__(spec, judge)
        self.low, self.high = spec.get("range", (0.0, 1.0))
        self.has_pass = "pass_threshold" in spec

    @classmethod
    def value_errors(cls, spec, path):
        errors = _message_errors(spec["input"], f"{path}.input") + _threshold_errors(spec, path)
        bounds = spec.get("range", [0, 1])
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(map(_is_number, bounds))
                and bounds[0] < bounds[1]):
            errors.append(f"{path}.range: expected [low, high] with low < high, got {bounds!r}")
        if not isinstance(spec.get("sampling_params", {}), dict):
            errors.append(f"{path}.sampling_params: expected an object such as "
                          '{"temperature": 0}')
        return errors

    def _instruction(self):
        return (f"Reply with only a number from {self.low:g} to {self.high:g}, "
                'or JSON {"result": <number>}.')

    def _grade(self, item, sample):
        reply = self._ask(item, sample)
        raw = parse_score(reply)
        if raw is None:
            return self._fail("model_grader_parse_error",
                              f"no score found in the judge's reply {reply[:300]!r}")
        value = min(max(raw, self.low), self.high)
        threshold = self.spec.get("pass_threshold")
        passed = None if threshold is None else value >= threshold
        return Score(value, {"raw": raw, "reply": reply[:1000]}, passed=passed)


class LabelModelGrader(_JudgeGrader):
    type = "label_model"
    required = ("input", "labels", "passing_labels")
    optional = ("model", "sampling_params")
    has_pass = True

    @classmethod
    def value_errors(cls, spec, path):
        errors = _message_errors(spec["input"], f"{path}.input")
        labels, passing = spec["labels"], spec["passing_labels"]
        for key, value in (("labels", labels), ("passing_labels", passing)):
            if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
                errors.append(f"{path}.{key}: expected a non-empty list of strings")
        if not errors:
            errors += [f"{path}.passing_labels: {label!r} is not one of labels {labels}; "
                       "add it to labels or remove it" for label in passing if label not in labels]
        return errors

    def _instruction(self):
        return ("Reply with exactly one of these labels and nothing else: "
                f"{', '.join(self.spec['labels'])}.")

    def _grade(self, item, sample):
        reply = self._ask(item, sample)
        label = parse_label(reply, self.spec["labels"])
        if label is None:
            return self._fail("model_grader_parse_error",
                              f"no single label found in the judge's reply {reply[:300]!r}")
        passed = label in self.spec["passing_labels"]
        return Score(float(passed), {"label": label, "reply": reply[:1000]},
                     passed=passed, answer=label)


def http_judge(base_url: str, api_key: str | None, model: str, timeout_s: float = 120.0) -> Judge:
    """A judge backed by an OpenAI-compatible server: POST {base_url}/chat/completions."""
    url = base_url.rstrip("/") + "/chat/completions"

    def judge(messages: list[dict], sampling_params: dict) -> str:
        params = dict(sampling_params)
        if "max_completions_tokens" in params:  # the grader JSON's name for it
            params["max_tokens"] = params.pop("max_completions_tokens")
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        body = json.dumps({"model": model, "messages": messages, **params}).encode()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                message = json.loads(response.read())["choices"][0]["message"]
        except urllib.error.HTTPError as exc:
            raise JudgeError("model_grader_server_error",
                             f"{url} answered HTTP {exc.code}: {exc.read()[:300]!r}") from None
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeError("model_grader_server_error", f"{url}: {exc!r}") from None
        if message.get("refusal"):
            raise JudgeError("model_grader_refusal_error", f"the judge refused: {message['refusal']}")
        return message.get("content") or ""

    return judge


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
        results = run_python_grader(self.spec["source"], payload, timeout_s=self.timeout_s,
                                    memory_mb=self.memory_mb)
        scores = []
        for value, reason in results:
            if reason is None:
                scores.append(Score(value, {}))
            elif reason.startswith(TIMEOUT):
                scores.append(self._fail("unresponsive_reward_error", reason))
            elif reason.startswith("error"):
                scores.append(self._fail("python_grader_runtime_error", reason))
            else:
                scores.append(self._fail("python_grader_server_error", reason))
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


def _build(spec: dict, judge: Judge | None) -> SpecGrader:
    return GRADER_TYPES[spec["type"]](spec, judge)


def _read_spec(source: dict | str | Path) -> tuple[dict, str]:
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


def load_grader(spec: dict | str | Path, judge: Judge | None = None) -> SpecGrader:
    """Build a grader from a spec dict or a .json/.yaml file; raise CorralError if it is invalid.

    `judge` serves score_model and label_model graders (also inside multi)."""
    spec, where = _read_spec(spec)
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


def run_grader(spec: dict, item: dict, sample_text: str, judge: Judge | None = None) -> dict:
    """Grade one sample the way OpenAI's `graders/run` answers:
    {"reward", "sub_rewards", "metadata": {"errors", "name", "type", "execution_time"}}."""
    grader = load_grader(spec, judge)
    start = time.perf_counter()
    score = grader.grade(item, Sample.of(sample_text))
    errors = dict.fromkeys(ERROR_FLAGS, False)
    _collect_errors(score.details, errors)
    return {
        "reward": score.value,
        "sub_rewards": dict(score.details.get("sub_rewards", {})),
        "metadata": {"errors": errors, "name": grader.name, "type": grader.type,
                     "execution_time": time.perf_counter() - start},
    }
