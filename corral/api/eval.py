"""Evaluation commands as library calls: `corral eval` (models, endpoints, or inference-time
strategies) and `corral grade validate|run`.

    from corral.api.eval import EvalOptions, run_eval
    report = run_eval(EvalOptions(model=["openai:gpt-4o-mini"], task="arithmetic", limit=20))
    report.table, report.run                      # metrics per model; runs/<name>/
    run_eval(EvalOptions(model=["m"], task="arithmetic", strategy="greedy,majority:8")).rows
"""
from __future__ import annotations

from corral.eval.commands import EvalOptions, EvalReport, evaluate_models
from corral.graders.commands import (
    GradeOptions,
    GradeResult,
    ValidateGraderOptions,
    ValidateGraderResult,
    grade_sample,
    validate_grader,
)
from corral.strategies.commands import compare_strategies

__all__ = ["EvalOptions", "EvalReport", "GradeOptions", "GradeResult", "ValidateGraderOptions",
           "ValidateGraderResult", "compare_strategies", "evaluate_models", "grade_sample",
           "run_eval", "validate_grader"]


def run_eval(opts: EvalOptions) -> EvalReport:
    """`corral eval`: models graded on a task (`evaluate_models`), or with `strategy` (or
    `plot`) inference-time strategies compared on one model (`compare_strategies`)."""
    if opts.strategy or opts.plot:
        return compare_strategies(opts)
    return evaluate_models(opts)
