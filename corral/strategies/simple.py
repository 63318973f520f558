"""One-round strategies: greedy, best-of-n picked by a Scorer, and majority vote.

Each sends every item's conversation in a single batched call; n samples of one
conversation are one call whose prompt is counted once (they share the prefill)."""
from __future__ import annotations

from corral.core.errors import CorralError
from corral.strategies.base import (
    Outcome,
    Strategy,
    best_index,
    item_conversation,
    majority_index,
    outcomes_of,
    vote_keys,
)


class Greedy(Strategy):
    """The baseline every other strategy is measured against: one greedy answer."""
    kind = "greedy"

    def run(self, items, generator, grader=None) -> list[Outcome]:
        meter = self._start(items, grader)
        gens = meter.chat(generator, list(range(len(items))),
                          [item_conversation(it) for it in items], self.greedy())
        answers = [g[0].text for g in gens]
        return outcomes_of(meter, answers, [[{"step": "answer", "text": a}] for a in answers])


class _Sampled(Strategy):
    """n sampled answers per item, then a pick."""

    def __init__(self, n: int, spec: str = "", **kw):
        super().__init__(spec, **kw)
        self.n = n
        if self.temperature <= 0 and n > 1:
            raise CorralError(f"strategy {self.spec} samples {n} answers, which at temperature "
                              "0 are one answer repeated; give a temperature above 0")

    def _sample(self, items, generator, grader):
        meter = self._start(items, grader)
        gens = meter.chat(generator, list(range(len(items))),
                          [item_conversation(it) for it in items], self.sampled(self.n))
        return meter, [[g.text for g in per_item] for per_item in gens]


class BestOfN(_Sampled):
    """n samples, the one a Scorer (reward model, judge, grader) ranks highest. A scorer
    that reports `last_compute` (a judge: one Compute per answer scored) is charged to the
    items; a grader or reward model costs no generation and is not counted."""
    kind = "best-of-n"

    def __init__(self, n: int, scorer=None, spec: str = "", **kw):
        super().__init__(n, spec, **kw)
        self.scorer = scorer

    def run(self, items, generator, grader=None) -> list[Outcome]:
        if self.scorer is None:
            raise CorralError(f"strategy {self.spec} needs a scorer to pick with (a reward model,"
                              " a judge or a grader): give best-of-n:N:GRADER")
        meter, texts = self._sample(items, generator, grader)
        conversations = [item_conversation(it) for it, t in zip(items, texts) for _ in t]
        flat = [x for t in texts for x in t]
        scores = [float(s) for s in self.scorer.score(conversations, flat)] if flat else []
        # A scorer that is itself a model (a judge) says what each scoring cost: it is
        # charged to the item, so best-of-n with a judge is compared at its true compute.
        costs = list(getattr(self.scorer, "last_compute", None) or [])
        answers, traces, i = [], [], 0
        for k, samples in enumerate(texts):
            if costs:
                meter.compute[k] = sum(costs[i:i + len(samples)], meter.compute[k])
            mine = scores[i:i + len(samples)]
            i += len(samples)
            pick = best_index(mine)
            answers.append(samples[pick])
            traces.append([{"step": "samples", "texts": samples, "scores": mine},
                           {"step": "pick", "index": pick}])
        return outcomes_of(meter, answers, traces)


class Majority(_Sampled):
    """n samples, the answer most of them agree on (self-consistency): votes are the
    grader's extracted answers where it extracts them (numbers for math), else the
    normalised texts; the outcome is the first sample giving the winning answer."""
    kind = "majority"

    def run(self, items, generator, grader=None) -> list[Outcome]:
        meter, texts = self._sample(items, generator, grader)
        owners = [it for it, t in zip(items, texts) for _ in t]
        keys = vote_keys(owners, [x for t in texts for x in t], grader)
        answers, traces, i = [], [], 0
        for samples in texts:
            mine = keys[i:i + len(samples)]
            i += len(samples)
            pick = majority_index(mine)
            answers.append(samples[pick])
            traces.append([{"step": "samples", "texts": samples, "votes": mine},
                           {"step": "pick", "index": pick, "answer": mine[pick]}])
        return outcomes_of(meter, answers, traces)
