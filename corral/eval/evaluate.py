"""Evaluation, the one path: items -> any Generator (a local model or an OpenAI-compatible
endpoint) through a strategy -> grader -> mean, pass@k, maj@k, stderr.

    result = evaluate(generator_for("openai:gpt-4o-mini"), items, grader,
                      SamplingParams(n=8, temperature=0.8), ks=(1, 4, 8))
    result.metrics["pass@8"], result.samples[0]["grade"]
    evaluate(generator, items, grader, strategy=parse_strategy("majority:8"))   # a strategy

A strategy is anything with `run(items, generator, grader) -> [Outcome]` (each outcome an
`answer` and its `compute`; see `corral.strategies`). The default, `Sampling`, lives here:
`params.n` samples per item, every one graded, which is what pass@k and maj@k need; at
temperature 0 and n=1 it is greedy decoding. A strategy's one answer per item is graded
the same way (pass@1, mean), and its compute per item comes with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from corral.core.errors import CorralError
from corral.core.records import as_dicts
from corral.eval import metrics as M
from corral.eval.outcomes import Compute, Meter, Outcome
from corral.eval.report import format_table, summary_row
from corral.graders.base import Sample, check_grader_errors, passed
from corral.infer.engine import SamplingParams, engine_for
from corral.infer.generators import Generator, LocalGenerator, Usage

__all__ = ["EvalResult", "Sampling", "as_generator", "combine", "compare_models", "evaluate",
           "evaluate_task", "format_table", "item_conversation", "policy_scorer",
           "task_evaluator"]


@dataclass
class EvalResult:
    metrics: dict
    samples: list = field(default_factory=list)  # one row per graded sample: item, output, grade
    outcomes: list = field(default_factory=list)  # one Outcome per item (answer, compute, trace)
    scores: list = field(default_factory=list)  # one Score per row of `samples`

    def summary_row(self, name: str) -> dict:
        """A strategy's line of the strategies table: score and pass ± stderr, compute/item."""
        return summary_row(name, self.outcomes, self.scores)

    @property
    def compute(self) -> Compute:
        """Everything the items cost together."""
        return sum((o.compute for o in self.outcomes), Compute())


def item_conversation(item) -> list[dict]:
    """The conversation a model answers for an item: its messages (a task's items come
    rendered with its system prompt and few-shot turns, `Task.prompt_items`), as fresh dicts."""
    return [dict(m) for m in as_dicts(item.messages)]


class Sampling:
    """Plain sampling, evaluate's default strategy: `params.n` samples of each item's
    conversation in one batched call, each kept for grading (pass@k, maj@k); greedy at
    temperature 0. A failed request fails the evaluation (no silent zeros)."""
    kind = "sampling"
    needs_grader = False

    def __init__(self, params: SamplingParams):
        self.params = params

    @property
    def name(self) -> str:
        return "greedy" if self.params.greedy and self.params.n == 1 else f"sample:{self.params.n}"

    def run(self, items, generator, grader=None) -> list[Outcome]:
        meter = Meter(len(items))
        gens = meter.chat(generator, list(range(len(items))),
                          [item_conversation(it) for it in items], self.params,
                          return_errors=False)
        return [Outcome(g[0].text if g else "", meter.compute[k], samples=list(g))
                for k, g in enumerate(gens)]


class _ChatOnly(Generator):
    """An engine-like object that only has `generate_chat` (a test double) as a Generator."""

    def __init__(self, engine, template=None):
        self.engine, self.template, self.name, self.usage = engine, template, "engine", Usage()

    def identity(self) -> dict:
        return {"kind": "local", "model": self.name}

    def chat(self, conversations, params=None, *, return_errors=False) -> list:
        return self.engine.generate_chat(conversations, params, template=self.template)


def as_generator(model, template: str | None = None) -> Generator:
    """What `evaluate` answers with: a Generator as it is; an Engine as a LocalGenerator
    (rendering with `template` when given)."""
    if hasattr(model, "chat"):
        if template is not None and getattr(model, "template", template) != template:
            raise CorralError("evaluate: template= applies to an engine; give the generator "
                              "its template when making it (Generator.from_engine)")
        return model
    if hasattr(model, "backend") and hasattr(model, "render_chat"):
        return LocalGenerator(model, "engine", template=template)
    if hasattr(model, "generate_chat"):
        return _ChatOnly(model, template)
    raise CorralError(f"evaluate: {type(model).__name__} is neither a Generator nor an Engine")


def evaluate(generator, items, grader, params: SamplingParams | None = None, ks=(1,),
             template=None, chooser=None, max_grader_errors: float = 1.0, *,
             strategy=None) -> EvalResult:
    """Answer every item through `strategy` (default: `Sampling(params)`), grade each
    sample, and summarise. `generator`: any Generator, or an Engine (rendered with
    `template`).

    chooser: an optional grader (reward model, judge) whose highest-scored sample is the
    best-of-n pick; graded by `grader`. Grading that fails on `max_grader_errors` of the
    samples or more (default: all) stops with the first error instead of reporting zeros.
    """
    if not items:
        raise CorralError("evaluate: no items to evaluate; check the task, split and --limit")
    if strategy is None:
        strategy = Sampling(params or SamplingParams(temperature=0.0))
    outcomes = [_outcome(o) for o in strategy.run(items, as_generator(generator, template),
                                                   grader)]
    texts = [[g.text for g in o.samples] if o.samples else [o.answer] for o in outcomes]
    pairs = [(item.grader_item(), Sample.of(t)) for item, ts in zip(items, texts) for t in ts]
    scores = grader.grade_batch(pairs) if pairs else []
    check_grader_errors(scores, grader, max_grader_errors, "--max-grader-errors")
    choice_scores = chooser.grade_batch(pairs) if chooser is not None and pairs else None
    if choice_scores is not None:
        check_grader_errors(choice_scores, chooser, max_grader_errors, "--max-grader-errors")
    per_item, rows, i = [], [], 0
    for item, outcome, ts in zip(items, outcomes, texts):
        item_scores = scores[i:i + len(ts)]
        per_item.append(item_scores)
        rows += _rows(item, outcome, item_scores)
        i += len(ts)
    n = min(len(ts) for ts in texts)
    summary = M.summarize(per_item, [k for k in ks if k <= n])
    if choice_scores is not None:
        summary.update(_best_of_n(per_item, choice_scores))
    return EvalResult(metrics=summary, samples=rows, outcomes=outcomes, scores=list(scores))


def _outcome(o) -> Outcome:
    """A strategy's outcome as an Outcome (a duck-typed one needs only `answer`)."""
    if isinstance(o, Outcome):
        return o
    return Outcome(o.answer, getattr(o, "compute", None) or Compute(),
                   list(getattr(o, "trace", None) or []), list(getattr(o, "samples", None) or []))


def _rows(item, outcome, scores) -> list[dict]:
    """samples.jsonl rows: one per sample of plain sampling (with its index and finish
    reason), or one per strategy answer (with its compute and trace)."""
    def graded(s) -> dict:
        return {"grade": s.value, "passed": passed(s), "answer": s.answer, "details": s.details}
    if not outcome.samples:
        [s] = scores
        return [{"item": item.source, "output": outcome.answer, **graded(s),
                 "compute": outcome.compute.as_dict(), "trace": outcome.trace}]
    return [{"item": item.source, "sample": j, "output": g.text, **graded(s),
             "finish_reason": g.finish_reason} for j, (g, s) in enumerate(zip(outcome.samples,
                                                                               scores))]


def _best_of_n(per_item, choice_scores) -> dict:
    picks, i = [], 0
    for item_scores in per_item:
        choice = choice_scores[i:i + len(item_scores)]
        picks.append(M.best_of_n([c.value for c in choice], [passed(s) for s in item_scores]))
        i += len(item_scores)
    mean, stderr = M.mean_stderr([float(p) for p in picks])
    return {"best_of_n": mean, "best_of_n_stderr": stderr}


def evaluate_task(policy, task, params: SamplingParams, ks=(1,), template=None,
                  max_grader_errors: float = 1.0, *, strategy=None) -> EvalResult:
    """Evaluate a Task (items rendered with its system prompt and few-shot turns) on a
    Policy's live weights, or on any Generator passed in its place."""
    model = policy if hasattr(policy, "chat") else engine_for(policy)
    return evaluate(model, task.prompt_items(), task.grader, params, ks, template=template,
                    max_grader_errors=max_grader_errors, strategy=strategy)


def compare_models(models: list[str], task, params: SamplingParams, ks, store=None,
                   load=None, max_grader_errors: float = 1.0) -> dict:
    """Evaluate several models on one task; samples go to the store, one row per sample.
    `load(name)` gives a Generator (default: `generator_for`, so endpoints too) or a Policy.
    `store` may be a callable returning the store: it is opened once every model has loaded
    and the first evaluation has succeeded, so a failed start writes nothing."""
    from corral.infer.generators import generator_for

    load = load or (lambda name: generator_for(name, key="model.name"))
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


def policy_scorer(items, grader, params: SamplingParams, ks=(1,), template=None,
                  batch_size: int = 16):
    """`score(policy) -> metrics` over fixed items on a Policy's live weights: what the
    training loop's evaluators call (greedy unless params sample)."""
    def score(policy) -> dict:
        generator = Generator.from_engine(engine_for(policy, batch_size), template=template)
        return evaluate(generator, items, grader, params, ks).metrics
    return score


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
    score = policy_scorer(task.prompt_items(), task.grader, params, ks, template=template)

    def run(policy, step) -> dict:
        return {f"{eval_cfg.split}/{k}": v for k, v in score(policy).items()
                if not k.endswith("_stderr") and isinstance(v, (int, float))}
    return run


def combine(*evaluators):
    """One evaluator calling each non-None evaluator and merging their metrics."""
    active = [e for e in evaluators if e is not None]
    if not active:
        return None
    return lambda policy, step: {k: v for e in active for k, v in e(policy, step).items()}
