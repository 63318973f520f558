"""What answering an item cost and what came of it: `Compute`, `Outcome` and the `Meter` that
sends model calls and charges each to its item. Evaluation (`eval.evaluate`) and every
inference-time strategy (`corral.strategies`) speak in these.

    meter = Meter(len(items))
    gens = meter.chat(generator, owners=[0, 1], conversations=[c0, c1], params=params)
    Outcome(answer=gens[0][0].text, compute=meter.compute[0])

The Meter sends one batched `Generator.chat` per round (all items' conversations together: a
small local model is only fast in batches) and charges each conversation's calls and tokens to
the item it serves, so per-item compute is exact and sums to the generators' usage counters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from corral.core.records import as_dicts
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
    and for tests that check a protocol round by round). `samples`: the Generations of plain
    sampling (n per item, each graded: pass@k, maj@k); empty for a strategy, whose one
    `answer` is what is graded."""
    answer: str
    compute: Compute = field(default_factory=Compute)
    trace: list = field(default_factory=list)
    samples: list = field(default_factory=list)


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
             params: SamplingParams, *, return_errors: bool = True) -> list[list[Generation]]:
        """One batched call; a conversation that failed alone comes back as `params.n` empty
        generations (finish_reason "error") and its message is kept in `errors[owner]`
        (with `return_errors=False` the failure raises instead, as an evaluation wants)."""
        if not conversations:
            return []
        before = _usage(generator)
        results = generator.chat(conversations, params, return_errors=return_errors)
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
    count = getattr(generator, "count_prompt_tokens", None)
    counts = count(conversations) if conversations and count is not None else None
    if counts is not None:
        return [int(c) for c in counts]
    weights = [sum(len(str(m.get("content", ""))) + 1 for m in as_dicts(c))
               for c in conversations]
    return share(delta, weights)


def _completion_counts(results, delta: int) -> list[int]:
    counts = [sum(len(getattr(g, "token_ids", None) or ()) for g in gens) for gens in results]
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


def outcomes_of(meter: Meter, answers: list[str], traces: list[list]) -> list[Outcome]:
    """Outcomes from a strategy's answers and traces, charged the meter's compute (and
    noting the calls that failed)."""
    out = []
    for i, (answer, trace) in enumerate(zip(answers, traces)):
        if meter.errors[i]:
            trace = [*trace, {"errors": list(meter.errors[i])}]
        out.append(Outcome(answer, meter.compute[i], trace))
    return out
