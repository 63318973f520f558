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
