"""`corral grade validate|run` as library calls: what is wrong with a grader spec, and one
sample graded the way OpenAI's `graders/run` answers.

    validate_grader(ValidateGraderOptions("numeric")).valid
    grade_sample(GradeOptions('{"type": "string_check", ...}', item='{"answer": "4"}',
                              sample="4")).reply["reward"]
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from corral.core.errors import CorralError


@dataclass(frozen=True)
class ValidateGraderOptions:
    grader: str  # a rule, RULE:OPTION, GRADER.json or inline JSON


@dataclass
class ValidateGraderResult:
    valid: bool
    errors: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"valid": self.valid, "errors": list(self.errors)}


@dataclass(frozen=True)
class GradeOptions:
    grader: str  # any spec load_grader takes, a reward_model spec included
    root: str = "runs"  # where reward-model runs live
    item: str = ""  # the data row as JSON (text or a .json file)
    sample: str = ""  # the model output text


@dataclass
class GradeResult:
    """`reply`: OpenAI's graders/run answer (reward, sub_rewards, metadata) for a grader
    JSON spec; reward, passed, answer and details for any other grader."""
    reply: dict


def validate_grader(opts: ValidateGraderOptions) -> ValidateGraderResult:
    from corral.graders.load import grader_errors

    errors = grader_errors(opts.grader)
    return ValidateGraderResult(not errors, errors)


def grade_sample(opts: GradeOptions) -> GradeResult:
    from corral.graders.base import Sample
    from corral.graders.load import load_grader, read_spec
    from corral.graders.openai import run_grader
    from corral.graders.spec import SpecGrader

    item = read_json_arg(opts.item, "--item") if opts.item else {}
    if not isinstance(item, dict):
        raise CorralError(f"--item must be a JSON object (the data row), got {opts.item!r}")
    grader = load_grader(opts.grader, root=opts.root)
    if isinstance(grader, SpecGrader):  # OpenAI grader JSON: answer as graders/run does
        spec = read_spec(opts.grader)[0]
        return GradeResult(run_grader(spec, item, opts.sample))
    score = grader.grade(item, Sample.of(opts.sample))
    return GradeResult({"reward": score.value, "passed": score.passed, "answer": score.answer,
                        "details": score.details})


def read_json_arg(text: str, what: str):
    """JSON given inline or as a file's path; a parse error names the option."""
    try:
        if Path(text).is_file():
            return json.loads(Path(text).read_text(encoding="utf-8"))
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorralError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                          "pass a .json file or quote the JSON") from None
