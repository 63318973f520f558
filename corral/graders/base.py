"""The grader interface shared by rule graders, OpenAI grader JSON, reward models and judges."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Sample:
    """One model output as graders see it (`{{sample.output_text}}`, `{{sample.output_json.x}}`)."""
    output_text: str
    output_json: Any = None  # parsed lazily from output_text when None

    @classmethod
    def of(cls, text: str) -> Sample:
        try:
            parsed = json.loads(text)
        except (ValueError, TypeError):
            parsed = None
        return cls(output_text=text, output_json=parsed)


@dataclass(frozen=True)
class Score:
    """value: the reward (in [0, 1] unless the grader declares a range); details: why."""
    value: float
    details: dict = field(default_factory=dict)
    passed: bool | None = None  # set by graders with a pass threshold
    answer: str | None = None  # the extracted answer, when the grader has one (maj@k votes on it)


class Grader(Protocol):
    name: str

    def grade(self, item: dict, sample: Sample) -> Score: ...

    def grade_batch(self, pairs: list[tuple[dict, Sample]]) -> list[Score]: ...


class BaseGrader:
    """Default batch behaviour: grade one pair at a time. Sandboxed graders override it."""
    name = "grader"

    def grade(self, item: dict, sample: Sample) -> Score:  # pragma: no cover - abstract
        raise NotImplementedError

    def grade_batch(self, pairs: list[tuple[dict, Sample]]) -> list[Score]:
        return [self.grade(item, sample) for item, sample in pairs]


def passed(score, threshold: float = 1.0) -> bool:
    """The one pass rule: a Score passes when its grader says so (`passed`), else when its
    value reaches `threshold` (1.0 unless the caller was told otherwise)."""
    verdict = getattr(score, "passed", None)
    return bool(verdict) if verdict is not None else float(score.value) >= threshold


def score_error(score) -> str | None:
    """Why grading failed for this score (its own error or a sub-grader's), None when it did
    not: a wrong answer is a score, a failed grading is an error."""
    details = getattr(score, "details", None) or {}
    if details.get("error_kind"):
        return str(details.get("error") or details["error_kind"])
    for sub in (details.get("sub_details") or {}).values():
        found = score_error(Score(0.0, sub)) if isinstance(sub, dict) else None
        if found:
            return found
    return None


def check_grader_errors(scores, grader, max_share: float = 1.0, flag: str = "") -> None:
    """Stop when grading failed on at least `max_share` of the samples (default: all of them).

    A failure on one sample is that sample's zero; a failure on every sample is a setup
    mistake (a template field no row has, a python grader that raises, a judge that is not
    listening), and a mean of 0.000 would hide it."""
    errors = [e for e in map(score_error, scores) if e]
    if not scores or not errors or len(errors) < max_share * len(scores):
        return
    from corral.core.errors import CorralError

    name = getattr(grader, "name", type(grader).__name__)
    share = "every sample" if len(errors) == len(scores) else \
        f"{len(errors)} of {len(scores)} samples"
    allow = f" (or raise {flag} to allow a share of failures)" if flag and max_share < 1 else ""
    raise CorralError(f"grader '{name}' failed on {share}, so this is the setup, not the "
                      f"samples: {errors[0]}; fix the grader or the data{allow}")
