"""Inference-time strategies (greedy, best-of-n, majority, self-refine, Reflexion, debate,
beam search) behind one interface, each reporting its compute per item; see
docs/strategies.md."""
from corral.strategies.base import (
    Compute,
    GraderScorer,
    Outcome,
    Scorer,
    Strategy,
    grader_scorer,
)
from corral.strategies.compare import format_table, run_strategies, write_svg
from corral.strategies.spec import ACCEPTED, parse_strategy, split_specs

__all__ = ["ACCEPTED", "Compute", "GraderScorer", "Outcome", "Scorer", "Strategy",
           "format_table", "grader_scorer", "parse_strategy", "run_strategies", "split_specs",
           "write_svg"]
