"""`corral eval --strategy SPEC[,SPEC...]` as a library call: several inference-time strategies
on one model and one split, score against compute per item, saved to a run folder like any
evaluation (and drawn as an SVG with `plot`).

    report = compare_strategies(EvalOptions(model=["smollm2-135m-instruct"], task="arithmetic",
                                            limit=50, strategy="greedy,majority:8,refine:2"))
    report.rows   # one summary row per strategy: score, pass ± stderr, calls and tokens/item
"""
from __future__ import annotations

import warnings
from pathlib import Path

from corral.core.config import ConfigNote
from corral.core.errors import CorralError
from corral.eval.commands import EvalOptions, EvalReport, check_share, load_task


def refuse_unsupported(opts: EvalOptions) -> None:
    """Options of `corral eval` that a strategy comparison cannot honour are errors."""
    if not opts.strategy:
        raise CorralError("--plot draws the score-against-compute curve of --strategy; give "
                          "--strategy SPEC[,SPEC...] too, or drop --plot")
    if opts.n != 1 or opts.k:
        raise CorralError("-n and -k do not apply with --strategy: each spec sets its own "
                          "samples (majority:8, best-of-n:8); drop them")
    if len(opts.model) != 1:
        raise CorralError("--strategy compares strategies on one model; give one --model and "
                          "run it once per model")
    if opts.plot and not opts.plot.endswith(".svg"):
        raise CorralError(f"--plot {opts.plot}: the picture is an SVG; give a FILE.svg")
    check_share(opts.max_grader_errors)


def build_strategies(opts: EvalOptions, task, items) -> list:
    """Parse and check every spec, and load the scorers they name, before any model loads
    (a `judge` scorer is bound to the model by `bind_judges` once it has loaded)."""
    from corral.graders.load import load_grader
    from corral.strategies.base import grader_scorer
    from corral.strategies.spec import parse_strategy, split_specs

    temperature = 0.8 if opts.temperature is None else opts.temperature
    specs = split_specs(opts.strategy)
    repeated = next((s for i, s in enumerate(specs) if s in specs[:i]), None)
    if repeated:
        raise CorralError(f"--strategy names '{repeated}' twice; give each strategy once")
    strategies = [parse_strategy(s, max_new_tokens=opts.max_new_tokens,
                                 temperature=temperature, seed=opts.seed) for s in specs]
    for strategy in strategies:
        strategy.check(task)
        if strategy.scorer_spec == "judge":
            strategy.scorer = "judge"  # bound to the loaded model in bind_judges
        elif strategy.scorer_spec:
            strategy.scorer = grader_scorer(load_grader(strategy.scorer_spec, root=opts.root),
                                            items, opts.max_grader_errors)
        elif strategy.kind == "best-of-n":
            strategy.scorer = grader_scorer(task.grader, items, opts.max_grader_errors)
            warnings.warn(ConfigNote(
                f"{strategy.spec} picks with the task's own grader, an oracle (an upper bound, "
                f"not a deployable score); give {strategy.spec}:GRADER to pick with a reward "
                "model or judge"), stacklevel=2)
    return strategies


def bind_judges(strategies, generator, max_new_tokens: int) -> None:
    """best-of-n:N:judge: the model being evaluated judges its own samples."""
    from corral.strategies.judged import JudgeScorer

    for strategy in strategies:
        if getattr(strategy, "scorer", None) == "judge":
            strategy.scorer = JudgeScorer(generator, max_new_tokens)


def compare_strategies(opts: EvalOptions) -> EvalReport:
    """Run every strategy of `opts.strategy` on `opts.model[0]` through the one evaluation
    path; the run folder opens once the first strategy has succeeded."""
    from corral.eval.commands import load_generator
    from corral.store.runs import RunStore, new_run_name
    from corral.strategies.compare import run_strategies, write_svg

    refuse_unsupported(opts)
    task = load_task(opts)
    items = task.prompt_items()
    strategies = build_strategies(opts, task, items)
    generator = load_generator(opts.model[0], opts.root, opts.template)
    bind_judges(strategies, generator, opts.max_new_tokens)
    name = opts.name or new_run_name("eval")
    opened: list = []

    def save(result) -> None:  # the run folder opens once the first strategy has succeeded
        if not opened:
            store = RunStore(opts.root, name)
            store.write_config({"task": opts.task, "split": opts.split, "model": opts.model[0],
                                "strategies": [s.spec for s in strategies],
                                "temperature": strategies[0].temperature,
                                "max_new_tokens": opts.max_new_tokens, "limit": opts.limit,
                                "data": opts.data, "seed": opts.seed,
                                "generator": generator.identity()})
            opened.append(store)
        store = opened[0]
        store.append_samples([{"model": opts.model[0], "task": task.name,
                               "strategy": result.name, **row} for row in result.samples])
        store.append_metrics(0, {f"{result.name}/{k}": v for k, v in result.row.items()
                                 if k != "strategy"})

    results = run_strategies(strategies, items, generator, task.grader, on_result=save,
                             max_grader_errors=opts.max_grader_errors)
    rows = [r.row for r in results]
    if opts.plot:
        write_svg(rows, opts.plot, title=f"{task.name} ({opts.split}): score vs compute")
    return EvalReport(Path(opts.root) / name, task.name, opts.split, len(items), rows=rows,
                      model=opts.model[0], plot=opts.plot)
