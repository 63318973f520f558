"""A strategy as a Generator: each conversation is answered by running the strategy on it,
so anything that takes a generator (a distillation teacher, a judge) can spend more
inference compute without knowing how.

    teacher = StrategyGenerator(parse_strategy("refine:1"), generator_for("smollm2-135m-instruct"))
    corral synth distill --task arithmetic --strategy refine:1 --out d.jsonl     # the CLI form

One Generation per conversation (the strategy's answer; n must be 1); `usage` is the inner
generator's, so every call the strategy made is in the job's token accounting; `identity()`
names the strategy too, so a cached job row made without it is never reused for it.
Strategies that need reference answers (Reflexion) have none here and say so.
"""
from __future__ import annotations

from corral.core.errors import CorralError
from corral.core.records import Item, as_messages
from corral.infer.engine import Generation, SamplingParams
from corral.infer.generators import Generator


class StrategyGenerator(Generator):
    def __init__(self, strategy, inner: Generator):
        if strategy.needs_grader:
            raise CorralError(f"strategy {strategy.spec} needs a grader's verdicts on each "
                              "answer, which a teacher answering new prompts does not have; "
                              "use greedy, majority, best-of-n, refine, debate or beam")
        self.strategy, self.inner = strategy, inner
        self.name = f"{inner.name}+{strategy.spec}"

    @property
    def usage(self):
        return self.inner.usage

    def identity(self) -> dict:
        return {**self.inner.identity(), "strategy": self.strategy.spec}

    def chat(self, conversations, params: SamplingParams | None = None, *,
             return_errors: bool = False) -> list:
        if params is not None and params.n != 1:
            raise CorralError(f"strategy {self.strategy.spec} gives one answer per prompt; "
                              f"use -n 1 (got {params.n})")
        items = [Item(as_messages(c), {}, f"conversation:{k}")
                 for k, c in enumerate(conversations)]
        outcomes = self.strategy.run(items, self.inner)
        return [[Generation(o.answer, [], [], "stop", k, 0)] for k, o in enumerate(outcomes)]
