"""The one interface of inference-time strategies, and the compute accounting they share.

A strategy turns task items into one answer each, spending model calls on the way:

    outcomes = strategy.run(task.prompt_items(), generator, grader)
    outcomes[0].answer, outcomes[0].compute.completion_tokens, outcomes[0].trace

Every model call goes through a `Meter`, which sends one batched `Generator.chat` per round
(all items' conversations together: a small local model is only fast in batches) and charges
each conversation's calls and tokens to the item it serves. So per-item compute is exact and
sums to the generators' own usage counters, whatever the strategy does.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Protocol

from corral.core.errors import CorralError
from corral.core.records import as_dicts
from corral.graders.base import Sample, check_grader_errors
from corral.infer.engine import Generation, SamplingParams


@dataclass(frozen=True)
class Compute:
    """What one item cost: conversations sent to a model (`calls`; n samples of one
    conversation are one call, as a local generator's usage counts them), prompt tokens
    (each rendered prompt once: its samples share the prefill) and generated tokens."""
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Compute) -> Compute:
        return Compute(self.calls + other.calls, self.prompt_tokens + other.prompt_tokens,
                       self.completion_tokens + other.completion_tokens)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens}


@dataclass
class Outcome:
    """One item's final answer, what it cost, and the steps that led to it (for samples.jsonl
    and for tests that check a protocol round by round)."""
    answer: str
    compute: Compute = field(default_factory=Compute)
    trace: list = field(default_factory=list)


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


class Meter:
    """Sends model calls and charges each conversation's cost to its owner item.

    Prompt tokens come from `Generator.count_prompt_tokens` and generated tokens from
    `len(Generation.token_ids)` where the generator knows them per conversation (a local
    model); otherwise (an endpoint: usage totals only, no token ids) the call's usage delta
    is shared out by text length, so totals still match the generator's usage exactly."""

    def __init__(self, n_items: int):
        self.compute = [Compute() for _ in range(n_items)]
        self.errors: list[list[str]] = [[] for _ in range(n_items)]
        self.rounds = 0  # batched chat calls sent, for tests and traces

    def chat(self, generator, owners: list[int], conversations: list[list[dict]],
             params: SamplingParams) -> list[list[Generation]]:
        """One batched call; a conversation that failed alone comes back as `params.n` empty
        generations (finish_reason "error") and its message is kept in `errors[owner]`."""
        if not conversations:
            return []
        before = _usage(generator)
        results = generator.chat(conversations, params, return_errors=True)
        after = _usage(generator)
        self.rounds += 1
        ok = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        prompt = _prompt_counts(generator, [conversations[i] for i in ok],
                                after[0] - before[0])
        completion = _completion_counts([results[i] for i in ok], after[1] - before[1])
        charged = dict(zip(ok, zip(prompt, completion)))
        out = []
        for i, (owner, result) in enumerate(zip(owners, results)):
            p, c = charged.get(i, (0, 0))
            self.compute[owner] = self.compute[owner] + Compute(1, p, c)
            if isinstance(result, Exception):
                self.errors[owner].append(f"{type(result).__name__}: {result}")
                result = [Generation("", [], [], "error", i, k) for k in range(params.n)]
            out.append(result)
        return out


def _usage(generator) -> tuple[int, int]:
    usage = getattr(generator, "usage", None)
    return (getattr(usage, "prompt_tokens", 0), getattr(usage, "completion_tokens", 0))


def _prompt_counts(generator, conversations, delta: int) -> list[int]:
    counts = generator.count_prompt_tokens(conversations) if conversations else []
    if counts is not None:
        return [int(c) for c in counts]
    weights = [sum(len(str(m.get("content", ""))) + 1 for m in as_dicts(c))
               for c in conversations]
    return share(delta, weights)


def _completion_counts(results, delta: int) -> list[int]:
    counts = [sum(len(g.token_ids) for g in gens) for gens in results]
    if any(counts) or not delta:
        return counts
    return share(delta, [sum(len(g.text) + 1 for g in gens) for gens in results])


def share(total: int, weights: list[float]) -> list[int]:
    """`total` split in proportion to weights, in whole numbers that sum to it exactly
    (largest remainders get the leftover units)."""
    if not weights:
        return []
    if sum(weights) <= 0:
        weights = [1] * len(weights)
    exact = [total * w / sum(weights) for w in weights]
    parts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[:total - sum(parts)]:
        parts[i] += 1
    return parts


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


def outcomes_of(meter: Meter, answers: list[str], traces: list[list]) -> list[Outcome]:
    out = []
    for i, (answer, trace) in enumerate(zip(answers, traces)):
        if meter.errors[i]:
            trace = [*trace, {"errors": list(meter.errors[i])}]
        out.append(Outcome(answer, meter.compute[i], trace))
    return out


def item_conversation(item) -> list[dict]:
    return [dict(m) for m in as_dicts(item.messages)]


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
