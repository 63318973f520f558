"""Shared machinery of the OpenAI grader JSON: `{{...}}` template rendering and checks,
the `SpecGrader` base every grader type builds on, and small helpers."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

from corral.core.config import closest
from corral.graders.base import BaseGrader, Sample, Score

# judge(messages, sampling_params) -> reply text: the local generation engine or http_judge().
# A judge as a plain callable: (messages, sampling_params) -> reply. The one judge of corral is
# graders.judging.Judge; a callable of this shape is wrapped into it (graders/judge.as_judge).
JudgeFn = Callable[[list[dict], dict], str]
# The flags of metadata.errors in OpenAI's run endpoint; a failed Score names one in error_kind.
ERROR_FLAGS = (
    "formula_parse_error", "sample_parse_error", "truncated_observation_error",
    "unresponsive_reward_error", "invalid_variable_error", "other_error",
    "python_grader_server_error", "python_grader_runtime_error", "model_grader_server_error",
    "model_grader_refusal_error", "model_grader_parse_error",
)


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
    close = closest(word, choices)
    return f" (did you mean {close!r}?)" if close else ""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class SpecGrader(BaseGrader):
    """A grader built from one OpenAI grader JSON object."""
    type = ""
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    has_pass = False  # whether Score.passed is meaningful for this type

    def __init__(self, spec: dict, judge: JudgeFn | None = None):
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
