"""`corral eval --strategy SPEC[,SPEC...]`: several inference-time strategies on one split,
score against compute per item, saved to a run folder like any evaluation.

    corral eval --model M --task arithmetic --limit 50 \\
        --strategy greedy,majority:8,refine:2,debate:3x2 --plot curve.svg
"""
from __future__ import annotations

import sys
from pathlib import Path

from corral.core.errors import CorralError


def _refuse_unsupported(args) -> None:
    """Options of `corral eval` that a strategy comparison cannot honour are errors."""
    if not args.strategy:
        raise CorralError("--plot draws the score-against-compute curve of --strategy; give "
                          "--strategy SPEC[,SPEC...] too, or drop --plot")
    if args.n != 1 or args.k:
        raise CorralError("-n and -k do not apply with --strategy: each spec sets its own "
                          "samples (majority:8, best-of-n:8); drop them")
    if len(args.model) != 1:
        raise CorralError("--strategy compares strategies on one model; give one --model and "
                          "run it once per model")
    if args.plot and not args.plot.endswith(".svg"):
        raise CorralError(f"--plot {args.plot}: the picture is an SVG; give a FILE.svg")
    if not 0 < args.max_grader_errors <= 1:
        raise CorralError(f"--max-grader-errors {args.max_grader_errors}: give a share in "
                          "(0, 1], e.g. 0.5 to stop once half the samples fail to grade")


def build_strategies(args, task, items) -> list:
    """Parse and check every spec, and load the scorers they name, before any model loads."""
    from corral.graders.load import load_grader
    from corral.strategies import grader_scorer, parse_strategy, split_specs

    temperature = 0.8 if args.temperature is None else args.temperature
    specs = split_specs(args.strategy)
    repeated = next((s for i, s in enumerate(specs) if s in specs[:i]), None)
    if repeated:
        raise CorralError(f"--strategy names '{repeated}' twice; give each strategy once")
    strategies = [parse_strategy(s, max_new_tokens=args.max_new_tokens,
                                 temperature=temperature, seed=args.seed) for s in specs]
    for strategy in strategies:
        strategy.check(task)
        if strategy.scorer_spec == "judge":
            strategy.scorer = "judge"  # bound to the loaded model in run_eval_strategies
        elif strategy.scorer_spec:
            strategy.scorer = grader_scorer(load_grader(strategy.scorer_spec, root=args.root),
                                            items, args.max_grader_errors)
        elif strategy.kind == "best-of-n":
            strategy.scorer = grader_scorer(task.grader, items, args.max_grader_errors)
            print(f"corral: note: {strategy.spec} picks with the task's own grader, an oracle "
                  f"(an upper bound, not a deployable score); give {strategy.spec}:GRADER to "
                  "pick with a reward model or judge", file=sys.stderr)
    return strategies


def run_eval_strategies(args) -> None:
    from corral.graders.base import passed
    from corral.infer.generators import generator_for
    from corral.store.runs import RunStore, new_run_name
    from corral.strategies import format_table, run_strategies, write_svg
    from corral.tasks import get_task

    _refuse_unsupported(args)
    task = get_task(args.task, split=args.split, data=args.data, grader=args.grader,
                    limit=args.limit, few_shot=args.few_shot, system_prompt=args.system)
    items = task.prompt_items()
    strategies = build_strategies(args, task, items)
    generator = generator_for(args.model[0], root=args.root, key="--model")
    for strategy in strategies:
        if getattr(strategy, "scorer", None) == "judge":
            strategy.scorer = JudgeScorer(generator, args.max_new_tokens)
    name = args.name or new_run_name("eval")
    opened: list = []

    def save(result) -> None:  # the run folder opens once the first strategy has succeeded
        if not opened:
            store = RunStore(args.root, name)
            store.write_config({"task": args.task, "split": args.split, "model": args.model[0],
                                "strategies": [s.spec for s in strategies],
                                "temperature": strategies[0].temperature,
                                "max_new_tokens": args.max_new_tokens, "limit": args.limit,
                                "data": args.data, "seed": args.seed,
                                "generator": generator.identity()})
            opened.append(store)
        store = opened[0]
        store.append_samples([
            {"model": args.model[0], "task": task.name, "strategy": result.name,
             "item": item.source, "output": o.answer, "grade": s.value, "passed": passed(s),
             "answer": s.answer, "details": s.details, "compute": o.compute.as_dict(),
             "trace": o.trace}
            for item, o, s in zip(items, result.outcomes, result.scores)])
        store.append_metrics(0, {f"{result.name}/{k}": v for k, v in result.row.items()
                                 if k != "strategy"})

    results = run_strategies(strategies, items, generator, task.grader, on_result=save,
                             max_grader_errors=args.max_grader_errors)
    rows = [r.row for r in results]
    print(f"task {task.name} ({args.split}), {len(items)} items, model {args.model[0]}")
    print(format_table(rows))
    print(f"samples: {Path(args.root) / name}/samples.jsonl")
    if args.plot:
        write_svg(rows, args.plot, title=f"{task.name} ({args.split}): score vs compute")
        print(f"plot: {args.plot}")


class JudgeScorer:
    """best-of-n:N:judge — the model being evaluated judges its own samples (correctness
    rubric, verdict only: the likelier of Yes/No for a local model), and each answer is
    charged its share of the judge's calls and tokens (`last_compute`), so the strategy is
    compared at what it really costs."""

    def __init__(self, generator, max_new_tokens: int):
        from corral.feedback.judge import Judge

        verdict = "logprob" if hasattr(generator, "choice_logprobs") else "generate"
        self.judge = Judge(generator, rubric="correctness", reasoning=False,
                           max_new_tokens=min(32, max_new_tokens), verdict=verdict)

    def score(self, conversations, answers) -> list[float]:
        from corral.strategies import Compute

        usage = self.judge.generator.usage
        before = (self.judge.stats.calls, usage.prompt_tokens, usage.completion_tokens)
        verdicts = self.judge.score(conversations, answers)
        spent = (self.judge.stats.calls - before[0], usage.prompt_tokens - before[1],
                 usage.completion_tokens - before[2])
        n = max(1, len(answers))
        self.last_compute = [Compute(*(x // n + (k < x % n) for x in spent))
                             for k in range(len(answers))]
        return [v.value if v.value is not None else -1.0 for v in verdicts]
