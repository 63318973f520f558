"""The judge and feedback commands as library calls (`corral judge audit`, `corral feedback
label`, `corral feedback constitutional`), from `corral.feedback.commands`. Audit and label
sample a missing samples file through `synth.sampling.sample_task` (a package of feedback's
rank), so they are wired here.

    from corral.api.feedback import LabelOptions, label
    result = label(LabelOptions(task="arithmetic", samples="s.jsonl", out="pairs.jsonl"))
    print(result.summary)
"""
from __future__ import annotations

from collections.abc import Callable

from corral.feedback import commands
from corral.feedback.commands import (
    AuditOptions,
    AuditResult,
    ConstitutionalOptions,
    ConstitutionalResult,
    LabelOptions,
    LabelResult,
    constitutional,
    make_judge,
)
from corral.graders.judging import Judge, JudgeCache, PairVerdict, Verdict

__all__ = ["AuditOptions", "AuditResult", "ConstitutionalOptions", "ConstitutionalResult",
           "Judge", "JudgeCache", "LabelOptions", "LabelResult", "PairVerdict", "Verdict",
           "constitutional", "judge_audit", "label", "make_judge"]


def _sampler():
    from corral.synth.sampling import sample_task

    return sample_task


def judge_audit(opts: AuditOptions, log: Callable[[str], None] | None = None) -> AuditResult:
    """`corral judge audit` (see `corral.feedback.commands.judge_audit`)."""
    return commands.judge_audit(opts, log=log, sampler=_sampler())


def label(opts: LabelOptions, log: Callable[[str], None] | None = None) -> LabelResult:
    """`corral feedback label` (see `corral.feedback.commands.label`)."""
    return commands.label(opts, log=log, sampler=_sampler())
