"""Synthesis commands as library calls (`corral synth`, `corral pairs`), re-exported from the
packages that hold them, plus the two that chain packages of one rank: ReST-EM's rounds
(rejection sampling + training, `methods.rest_em`) and a distillation teacher that answers
through an inference strategy (`synth` + `strategies`).

    from corral.api.synth import DistillOptions, distill
    result = distill(DistillOptions(model="M", task="arithmetic", strategy="majority:8",
                                    out="data/d.jsonl"))
"""
from __future__ import annotations

from collections.abc import Callable

from corral.core.errors import CorralError
from corral.methods.rest_em import RestEMResult
from corral.methods.rest_em import run as rest_em
from corral.synth import commands
from corral.synth.commands import (
    DistillOptions,
    RejectionOptions,
    SelfInstructOptions,
    SynthResult,
    self_instruct,
)
from corral.synth.pairs import PairsOptions, PairsResult
from corral.synth.pairs import run as pairs

__all__ = ["DistillOptions", "PairsOptions", "PairsResult", "RejectionOptions", "RestEMResult",
           "SelfInstructOptions", "SynthResult", "distill", "pairs", "rejection", "rest_em",
           "self_instruct", "strategy_teacher"]


def rejection(opts: RejectionOptions, log: Callable[[str], None] | None = None,
              ) -> SynthResult | RestEMResult:
    """`corral synth rejection`: with rounds > 0, ReST-EM's rounds (`RestEMResult`), else one
    pass of rejection sampling (`SynthResult`)."""
    if opts.rounds:
        return rest_em(opts, log=log)
    return commands.rejection(opts, log=log)


def distill(opts: DistillOptions, log: Callable[[str], None] | None = None) -> SynthResult:
    """`corral synth distill`; with `strategy`, the teacher answers through it."""
    teacher = strategy_teacher(opts) if opts.strategy else None
    return commands.distill(opts, log=log, teacher=teacher)


def strategy_teacher(opts: DistillOptions):
    """generator -> the teacher as an inference strategy over it (a judge scorer is the model
    itself; other scorers need reference fields a new prompt does not have)."""
    from corral.strategies import parse_strategy
    from corral.strategies.generator import StrategyGenerator
    from corral.strategies.judged import JudgeScorer

    strategy = parse_strategy(opts.strategy, max_new_tokens=opts.max_new_tokens,
                              temperature=opts.temperature or 0.8, seed=opts.seed)
    if strategy.scorer_spec or strategy.kind == "best-of-n":
        if strategy.scorer_spec != "judge":
            raise CorralError(f"--strategy {opts.strategy}: a teacher's best-of-n picks with "
                              "the model as judge; write best-of-n:N:judge")

    def wrap(generator):
        if strategy.scorer_spec == "judge":
            strategy.scorer = JudgeScorer(generator, opts.max_new_tokens)
        return StrategyGenerator(strategy, generator)
    return wrap
