"""The one interface of inference-time strategies, and the compute accounting they share.

A strategy turns task items into one answer each, spending model calls on the way:

    outcomes = strategy.run(task.prompt_items(), generator, grader)
    outcomes[0].answer, outcomes[0].compute.completion_tokens, outcomes[0].trace

Every model call goes through a `Meter`, which sends one batched `Generator.chat` per round
(all items' conversations together: a small local model is only fast in batches) and charges
each conversation's calls and tokens to the item it serves. So per-item compute is exact and
sums to the generators' own usage counters, whatever the strategy does. `Compute`, `Outcome`
and `Meter` live in `corral.eval.outcomes` (evaluation speaks them too) and are re-exported
here; `corral.eval.evaluate.evaluate(..., strategy=s)` runs and grades any strategy.
"""
from __future__ import annotations

import json
from typing import Protocol

from corral.core.errors import CorralError
from corral.core.records import as_dicts
from corral.eval.evaluate import item_conversation
from corral.eval.outcomes import Compute, Meter, Outcome, outcomes_of, share
from corral.graders.base import Sample, check_grader_errors
from corral.infer.engine import SamplingParams

__all__ = ["Compute", "GraderScorer", "Meter", "Outcome", "Scorer", "Strategy",
           "best_index", "conversation_key", "grader_scorer", "item_conversation",
           "majority_index", "normalise", "outcomes_of", "share", "vote_keys"]


class Scorer(Protocol):
    """Ranks answers to conversations, higher is better: a grader (`grader_scorer`), a reward
    model grader, or a judge injected from above (feedback/) that never needs importing here."""

    def score(self, conversations: list[list[dict]], answers: list[str]) -> list[float]: ...


class GraderScorer:
    """A grader as a Scorer. Strategies score answers to the items' own conversations, so the
    conversation finds its item (and the item's reference fields) by its content."""

    def __init__(self, grader, items, max_errors: float = 1.0):
        self.grader, self.max_errors = grader, max_errors
        self.name = getattr(grader, "name", type(grader).__name__)
        self._items = {}
        for item in items:
            self._items.setdefault(conversation_key(as_dicts(item.messages)), item)

    def score(self, conversations, answers) -> list[float]:
        pairs = []
        for conversation, answer in zip(conversations, answers):
            item = self._items.get(conversation_key(conversation))
            if item is None:
                raise CorralError(f"scorer '{self.name}' was asked about a conversation that is "
                                  "none of its items'; build it with the items being run")
            pairs.append((item.grader_item(), Sample.of(answer)))
        scores = self.grader.grade_batch(pairs) if pairs else []
        check_grader_errors(scores, self.grader, self.max_errors)
        return [float(s.value) for s in scores]


def grader_scorer(grader, items, max_errors: float = 1.0) -> GraderScorer:
    """The grader (a rule, a reward model grader, a judge grader) as a Scorer over `items`."""
    return GraderScorer(grader, items, max_errors)


def conversation_key(conversation) -> str:
    return json.dumps(as_dicts(conversation), sort_keys=True, ensure_ascii=False)


class Strategy:
    """An inference-time strategy. `spec` is how the user named it (`majority:8`);
    `needs_grader` says whether `run` requires the task's grader (reflexion uses its verdicts
    and feedback); `check(task)` raises when the task cannot support the strategy."""
    kind = ""
    needs_grader = False
    scorer_spec = ""  # the grader spec a user named to rank answers with (best-of-n:8:SPEC)

    def __init__(self, spec: str = "", *, max_new_tokens: int = 256, temperature: float = 0.8,
                 seed: int | None = 0):
        self.spec = spec or self.kind
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed

    def greedy(self, max_new_tokens: int | None = None, **kw) -> SamplingParams:
        """Answers, critiques and revisions: the model's best guess, repeatable."""
        return SamplingParams(max_new_tokens=max_new_tokens or self.max_new_tokens,
                              temperature=0.0, seed=self.seed, **kw)

    def sampled(self, n: int = 1, **kw) -> SamplingParams:
        """Votes, debaters and beam steps: diverse samples at the strategy's temperature."""
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                              n=n, seed=self.seed, **kw)

    @property
    def name(self) -> str:
        return self.spec

    def check(self, task) -> None:
        """Raise CorralError when `task` cannot support this strategy (before any compute)."""

    def run(self, items, generator, grader=None) -> list[Outcome]:
        raise NotImplementedError

    def _start(self, items, grader) -> Meter:
        if not items:
            raise CorralError(f"strategy {self.spec}: no items to answer; check the task, split "
                              "and --limit")
        if self.needs_grader and grader is None:
            raise CorralError(f"strategy {self.spec} needs a grader (it retries with the "
                              "grader's verdict and feedback); give the task's grader")
        return Meter(len(items))


def normalise(text: str) -> str:
    """Answer text as a vote key when no grader extracts answers: case and spacing ignored."""
    return " ".join(text.lower().split()).rstrip(".")


def vote_keys(items_of: list, texts: list[str], grader=None) -> list[str | None]:
    """What each text votes for: the grader's extracted `Score.answer` when the grader
    extracts answers (a text it finds none in does not vote), else the normalised text."""
    if grader is not None and texts:
        scores = grader.grade_batch([(item.grader_item(), Sample.of(t))
                                     for item, t in zip(items_of, texts)])
        answers = [getattr(s, "answer", None) for s in scores]
        if any(a is not None for a in answers):
            return [None if a is None else str(a) for a in answers]
    return [normalise(t) for t in texts]


def majority_index(keys: list[str | None]) -> int:
    """The first text of the most voted key (ties go to the key seen first; no votes at all
    picks the first text)."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
            first.setdefault(key, i)
    if not counts:
        return 0
    return first[max(counts, key=counts.get)]


def best_index(scores: list[float]) -> int:
    """The highest score's index, first on ties."""
    return max(range(len(scores)), key=lambda i: scores[i])
