"""Several strategies on one split: score against compute, as a table and a picture.

    results = run_strategies([parse_strategy("greedy"), parse_strategy("majority:8")],
                             task.prompt_items(), generator, task.grader)
    print(format_table([r.row for r in results])); write_svg([r.row for r in results], "c.svg")

Each strategy goes through the one evaluation path (`corral.eval.evaluate.evaluate`, with
`strategy=`): its final answers are graded by the same grader, once each, and items are the
unit of the standard error, as in `corral eval`. The table and the picture are rendered by
`corral.eval.report` (re-exported here under their old names)."""
from __future__ import annotations

from dataclasses import dataclass

from corral.core.errors import CorralError
from corral.eval.evaluate import evaluate
from corral.eval.report import format_strategy_table as format_table
from corral.eval.report import summary_row, write_svg

__all__ = ["StrategyResult", "format_table", "run_strategies", "summary_row", "write_svg"]


@dataclass
class StrategyResult:
    name: str
    row: dict  # summary_row: score and pass ± stderr, mean compute per item
    outcomes: list  # list[Outcome], parallel to the items
    scores: list  # list[Score] of each outcome's answer
    samples: list | None = None  # evaluate's samples.jsonl rows, parallel to the items


def run_strategies(strategies, items, generator, grader, *, on_result=None,
                   max_grader_errors: float = 1.0) -> list[StrategyResult]:
    """Run each strategy on `items` and grade its answers. `on_result(result)` is called
    after each strategy, so a caller can save results as they come (and open its run folder
    only once the first strategy has succeeded)."""
    if not items:
        raise CorralError("no items to run the strategies on; check the task, split and --limit")
    results = []
    for strategy in strategies:
        evaluated = evaluate(generator, items, grader, strategy=strategy,
                             max_grader_errors=max_grader_errors)
        result = StrategyResult(strategy.name, evaluated.summary_row(strategy.name),
                                evaluated.outcomes, evaluated.scores, evaluated.samples)
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results
