"""`corral eval --strategy SPEC[,SPEC...]`: several inference-time strategies on one split,
score against compute per item, saved to a run folder like any evaluation.

    corral eval --model M --task arithmetic --limit 50 \\
        --strategy greedy,majority:8,refine:2,debate:3x2 --plot curve.svg

The command is `corral.api.eval.run_eval` (`corral.strategies.commands.compare_strategies`);
`cli/app.cmd_eval` parses and prints it. This module keeps the old import paths.
"""
from __future__ import annotations

from corral.strategies.commands import build_strategies, compare_strategies  # noqa: F401
from corral.strategies.judged import JudgeScorer  # noqa: F401  (its old home)
