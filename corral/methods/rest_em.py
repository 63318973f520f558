"""Iterated rejection sampling (ReST-EM, Singh et al. 2023; STaR's outer loop): K rounds of
sample → keep what the grader passes → fine-tune → measure dev, stopping when dev stops
improving.

Each round samples from the latest student (round 1: the base model). ReST-EM fine-tunes
from the *base* model every round on that round's data, which keeps errors from compounding
across rounds; `from_last=True` continues from the last student instead (STaR restarts from
the base too, the default here). A round whose dev score does not beat the best so far by
more than `min_gain` ends the loop, and the best round's student is the result.

The three steps are passed in, so the CLI wires real sampling, training and evaluation and
the tests wire arithmetic ones:

    sample(model, round) -> data file      train(data, start_model, round) -> model
    evaluate(model) -> dev score
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import atomic_write_text


@dataclass
class RoundResult:
    round: int
    sampled_from: str
    data: str
    model: str
    dev: float


@dataclass
class RestEM:
    rounds: int
    base: str
    from_last: bool = False
    min_gain: float = 0.0
    history: list = field(default_factory=list)

    def run(self, sample, train, evaluate, log=print, record: str = "") -> list[RoundResult]:
        if self.rounds < 1:
            raise CorralError(f"--rounds {self.rounds}: run at least 1 round")
        best = evaluate(self.base)
        log(f"rest-em: round 0 (base {self.base}) dev {best:.3f}")
        self.history = [RoundResult(0, "", "", self.base, best)]
        student = self.base
        for r in range(1, self.rounds + 1):
            data = sample(student, r)
            start = student if self.from_last else self.base
            model = train(data, start, r)
            dev = evaluate(model)
            self.history.append(RoundResult(r, student, data, model, dev))
            log(f"rest-em: round {r} sampled from {student}, trained from {start}: dev "
                f"{dev:.3f} (best so far {best:.3f})")
            if record:
                self._save(record)
            if dev <= best + self.min_gain:
                log(f"rest-em: dev did not improve by more than {self.min_gain}; stopping "
                    "after this round")
                break
            best, student = dev, model
        return self.history

    def best(self) -> RoundResult:
        return max(self.history, key=lambda h: (h.dev, -h.round))

    def _save(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({
            "rounds": [vars(h) for h in self.history], "best": vars(self.best()),
            "from_last": self.from_last, "min_gain": self.min_gain}, indent=2) + "\n")
