"""Evaluation: items -> generation engine -> grader -> mean, pass@k, maj@k, stderr.

    result = evaluate(engine, items, grader, SamplingParams(n=8, temperature=0.8), ks=(1, 4, 8))
    result.metrics["pass@8"], result.samples[0]["grade"]
"""
from __future__ import annotations

from dataclasses import dataclass, field

from corral.core.errors import CorralError
from corral.core.records import as_dicts
from corral.eval import metrics as M
from corral.graders.base import Sample, check_grader_errors, passed
from corral.infer.engine import SamplingParams, engine_for


@dataclass
class EvalResult:
    metrics: dict
    samples: list = field(default_factory=list)  # one row per sample: item, output, grade


def item_conversation(item) -> list[dict]:
    return as_dicts(item.messages)


def evaluate(engine, items, grader, params: SamplingParams, ks=(1,), template=None,
             chooser=None, max_grader_errors: float = 1.0) -> EvalResult:
    """Sample `params.n` outputs per item, grade each, and summarise.

    chooser: an optional grader (reward model, judge) whose highest-scored sample is the
    best-of-n pick; graded by `grader`. Grading that fails on `max_grader_errors` of the
    samples or more (default: all) stops with the first error instead of reporting zeros.
    """
    if not items:
        raise CorralError("evaluate: no items to evaluate; check the task, split and --limit")
    conversations = [item_conversation(item) for item in items]
    generations = engine.generate_chat(conversations, params, template=template)
    pairs = [(item.grader_item(), Sample.of(g.text)) for item, gens in zip(items, generations)
             for g in gens]
    scores = grader.grade_batch(pairs) if pairs else []
    check_grader_errors(scores, grader, max_grader_errors, "--max-grader-errors")
    choice_scores = chooser.grade_batch(pairs) if chooser is not None and pairs else None
    if choice_scores is not None:
        check_grader_errors(choice_scores, chooser, max_grader_errors, "--max-grader-errors")
    per_item, rows, i = [], [], 0
    for item, gens in zip(items, generations):
        item_scores = scores[i:i + len(gens)]
        per_item.append(item_scores)
        for j, (g, s) in enumerate(zip(gens, item_scores)):
            rows.append({"item": item.source, "sample": j, "output": g.text,
                         "grade": s.value, "passed": passed(s), "answer": s.answer,
                         "details": s.details, "finish_reason": g.finish_reason})
        i += len(gens)
    summary = M.summarize(per_item, [k for k in ks if k <= params.n])
    if choice_scores is not None:
        summary.update(_best_of_n(per_item, choice_scores))
    return EvalResult(metrics=summary, samples=rows)


def _best_of_n(per_item, choice_scores) -> dict:
    picks, i = [], 0
    for item_scores in per_item:
        choice = choice_scores[i:i + len(item_scores)]
        picks.append(M.best_of_n([c.value for c in choice], [passed(s) for s in item_scores]))
        i += len(item_scores)
    mean, stderr = M.mean_stderr([float(p) for p in picks])
    return {"best_of_n": mean, "best_of_n_stderr": stderr}


def evaluate_task(policy, task, params: SamplingParams, ks=(1,), template=None,
                  max_grader_errors: float = 1.0) -> EvalResult:
    """Evaluate a Task (items rendered with its system prompt and few-shot turns)."""
    return evaluate(engine_for(policy), task.prompt_items(), task.grader, params, ks,
                    template=template, max_grader_errors=max_grader_errors)


def compare_models(models: list[str], task, params: SamplingParams, ks, store=None,
                   load=None, max_grader_errors: float = 1.0) -> dict:
    """Evaluate several models on one task; samples go to the store, one row per sample.
    `store` may be a callable returning the store: it is opened once every model has loaded
    and the first evaluation has succeeded, so a failed start writes nothing."""
    from corral.core.sections import ModelConfig
    from corral.model.policy import load_policy

    load = load or (lambda name: load_policy(ModelConfig(name=name), None, for_training=False))
    table = {}
    for name in models:  # one at a time: two large models need not fit in memory together
        result = evaluate_task(load(name), task, params, ks,
                               max_grader_errors=max_grader_errors)
        table[name] = result.metrics
        if callable(store):
            store = store()
        if store is not None:
            store.append_samples([{"model": name, "task": task.name, **row}
                                  for row in result.samples])
            store.append_metrics(0, {f"{name}/{k}": v for k, v in result.metrics.items()})
    return table


def format_table(table: dict) -> str:
    """Models side by side: one column per model, one row per metric (mean ± stderr)."""
    names = list(table)
    metrics = [k for k in next(iter(table.values())) if not k.endswith("_stderr")]
    width = max([12] + [len(n) + 2 for n in names])
    lines = ["metric".ljust(14) + "".join(n[-width + 1:].rjust(width) for n in names)]
    for key in metrics:
        cells = []
        for name in names:
            value, err = table[name].get(key), table[name].get(f"{key}_stderr")
            text = "-" if value is None else (f"{value:.3f}" if isinstance(value, float)
                                              else str(value))
            if err is not None:
                text += f"±{err:.3f}"
            cells.append(text.rjust(width))
        lines.append(key.ljust(14) + "".join(cells))
    return "\n".join(lines)


def task_evaluator(eval_cfg, template=None):
    """An evaluator for the training loop: graded dev metrics (`<split>/pass@1`, ...) or None."""
    if not eval_cfg.task:
        return None
    from corral.tasks import get_task

    task = get_task(eval_cfg.task, split=eval_cfg.split, data=eval_cfg.data,
                    grader=eval_cfg.grader, limit=eval_cfg.limit)
    params = SamplingParams(max_new_tokens=eval_cfg.max_new_tokens, n=eval_cfg.n,
                            temperature=eval_cfg.temperature, seed=0)
    ks = tuple(int(k) for k in eval_cfg.k if int(k) <= eval_cfg.n) or (1,)

    def run(policy, step) -> dict:
        result = evaluate_task(policy, task, params, ks, template=template)
        return {f"{eval_cfg.split}/{k}": v for k, v in result.metrics.items()
                if not k.endswith("_stderr") and isinstance(v, (int, float))}
    return run


def combine(*evaluators):
    """One evaluator calling each non-None evaluator and merging their metrics."""
    active = [e for e in evaluators if e is not None]
    if not active:
        return None
    return lambda policy, step: {k: v for e in active for k, v in e(policy, step).items()}
