"""Scoring prompt programs on dev under a budget of model calls: successive halving (Jamieson
& Talwalkar 2016). Every candidate answers the first n items of a seeded order of the dev
split; the better half (by mean score, then fewer prompt tokens) answers twice as many, and
so on, until one is left or the items run out. A candidate's earlier answers are reused, so
a round costs only its new items; `n` is the largest start whose whole schedule fits the
budget. All (candidate, item) answers of a round go to the model in one batch, through the
one evaluation path (`eval.evaluate`), and each is kept as a row of a resumable job
(`ScoreJob`): a killed search rerun with the same command sends no call twice.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import append_jsonl, read_jsonl
from corral.core.records import Item, as_messages
from corral.eval.metrics import mean_stderr
from corral.graders.base import passed

CHUNK = 64  # conversations per evaluate call (the engine batches within it) and job write


class ScoreJob:
    """(candidate hash, item source) -> {score, passed, output, calls, tokens}, appended to
    a JSONL file (fsynced) after every chunk; read back on a rerun."""

    def __init__(self, path):
        self.path = Path(path)
        self.rows = {(r["candidate"], r["item"]): r for r in
                     (read_jsonl(self.path) if self.path.exists() else [])}
        self.sent = 0  # calls this process sent

    def __contains__(self, key) -> bool:
        return key in self.rows

    def add(self, rows: list[dict]) -> None:
        append_jsonl(self.path, rows)
        self.rows.update({(r["candidate"], r["item"]): r for r in rows})


@dataclass
class Scorer:
    """Answers (program, items) pairs through one Generator and grades them."""
    generator: object
    grader: object
    params: object
    job: ScoreJob

    def score(self, pairs: list[tuple]) -> list[dict]:
        """Rows for [(key, program, item)], from the job where answered before."""
        from corral.eval.evaluate import evaluate

        todo = [(key, program, item) for key, program, item in pairs
                if (key, item.source) not in self.job]
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            rendered = _render(chunk)
            result = evaluate(self.generator, rendered, self.grader, self.params)
            rows = [_row(key, item.source, outcome, score) for (key, _, item), outcome, score
                    in zip(chunk, result.outcomes, result.scores)]
            self.job.add(rows)
            self.job.sent += len(chunk)
        return [self.job.rows[(key, item.source)] for key, _, item in pairs]


def _render(chunk: list[tuple]) -> list[Item]:
    """Each item rendered by its program; a program's items are rendered together (one
    embedding batch for similarity selection)."""
    out: list = [None] * len(chunk)
    by_program: dict = {}
    for i, (_, program, item) in enumerate(chunk):
        by_program.setdefault(program, []).append(i)
    for program, where in by_program.items():
        convs = program.render_all([chunk[i][2] for i in where])
        for i, conv in zip(where, convs):
            item = chunk[i][2]
            out[i] = Item(messages=as_messages(conv), fields=item.fields, source=item.source)
    return out


def _row(key: str, source: str, outcome, score) -> dict:
    return {"candidate": key, "item": source, "score": float(score.value),
            "passed": passed(score), "output": outcome.answer,
            "calls": outcome.compute.calls, "prompt_tokens": outcome.compute.prompt_tokens,
            "completion_tokens": outcome.compute.completion_tokens}


@dataclass
class Standing:
    """A candidate's record in the search: its answers so far and the round it left."""
    candidate: object
    rows: list = field(default_factory=list)
    left_in: int | None = None  # the round it was eliminated in; None: the winner

    @property
    def score(self) -> tuple[float, float]:
        return mean_stderr([r["score"] for r in self.rows]) if self.rows else (0.0, 0.0)

    @property
    def prompt_tokens(self) -> float:
        return sum(r["prompt_tokens"] for r in self.rows) / max(1, len(self.rows))

    def summary(self) -> dict:
        mean, err = self.score
        return {"name": self.candidate.name, "hash": self.candidate.hash,
                "items": len(self.rows), "score": round(mean, 4), "stderr": round(err, 4),
                "calls": sum(r["calls"] for r in self.rows),
                "prompt_tokens": round(self.prompt_tokens, 1),
                "completion_tokens": sum(r["completion_tokens"] for r in self.rows),
                "eliminated_in_round": self.left_in}


def schedule(n_candidates: int, n_items: int, budget: int) -> list[tuple[int, int]]:
    """[(candidates alive, items answered)] per round: the largest start whose schedule fits
    `budget` new calls (a round grows its items only as far as the budget left allows);
    refused when the budget cannot give every candidate one item."""
    if budget < n_candidates:
        raise CorralError(f"--budget {budget}: {n_candidates} candidates need at least "
                          f"{n_candidates} calls to be scored once; raise --budget or try "
                          "fewer candidates (--k, --choose, --layout, --order)")
    for start in range(n_items, 0, -1):  # the largest start whose doubling fits
        if _cost(_plan(n_candidates, n_items, start, 10 ** 12)) <= budget:
            return _plan(n_candidates, n_items, start, budget)
    return _plan(n_candidates, n_items, 1, budget)  # doubling capped by what is left


def _plan(n_candidates: int, n_items: int, start: int, budget: int) -> list[tuple[int, int]]:
    plan, alive, items = [(n_candidates, start)], n_candidates, start
    left = budget - n_candidates * start
    while alive > 1:
        alive = math.ceil(alive / 2)
        grow = min(n_items, items * 2) - items
        grow = min(grow, left // alive)
        items, left = items + grow, left - alive * grow
        plan.append((alive, items))
    return plan


def _cost(plan) -> int:
    cost, before = 0, 0
    for alive, items in plan:
        cost += alive * (items - before)
        before = items
    return cost


def halving(scorer: Scorer, candidates: list, dev: list, budget: int, seed: int = 0,
            log=None) -> list[Standing]:
    """Successive halving; the standings, the winner first."""
    order = list(dev)
    random.Random(seed).shuffle(order)
    standings = [Standing(c) for c in candidates]
    alive = list(standings)
    for round_no, (count, n) in enumerate(schedule(len(candidates), len(order), budget), 1):
        for s in alive[count:]:
            s.left_in = round_no - 1
        alive = alive[:count]
        pairs = [(s.candidate.hash, s.candidate.program, item) for s in alive
                 for item in order[:n]]
        rows = scorer.score(pairs)
        for k, s in enumerate(alive):
            s.rows = rows[k * n:(k + 1) * n]
        alive.sort(key=lambda s: (-s.score[0], s.prompt_tokens))
        if log:
            log(f"round {round_no}: {len(alive)} candidate(s) on {n} dev items; best "
                f"{alive[0].candidate.name} {alive[0].score[0]:.3f}")
    for s in alive[1:]:
        s.left_in = round_no
    rest = sorted([s for s in standings if s is not alive[0]],
                  key=lambda s: (-(s.left_in or 0), -s.score[0]))
    return [alive[0]] + rest


def ordering_spread(scorer: Scorer, winner: Standing, items: list, orderings: int,
                    seed: int = 0) -> dict | None:
    """The winner's score under other orders of its fixed demonstrations, on the items it
    was last scored on: how much order alone moves the score (Lu et al. 2022)."""
    from dataclasses import replace

    from corral.tasks.prompt_file import program_hash

    program = winner.candidate.program
    k = len(program.few_shot)
    if k < 2 or orderings < 2:
        return None
    perms, rng = {tuple(range(k))}, random.Random(seed)
    while len(perms) < min(orderings, math.factorial(k)):
        perms.add(tuple(rng.sample(range(k), k)))
    scores = []
    for perm in sorted(perms):
        variant = replace(program, few_shot=tuple(program.few_shot[i] for i in perm))
        rows = scorer.score([(program_hash(variant), variant, it) for it in items])
        scores.append(mean_stderr([r["score"] for r in rows])[0])
    return {"orderings": len(scores), "items": len(items), "min": min(scores),
            "max": max(scores), "spread": max(scores) - min(scores),
            "std": mean_stderr(scores)[1] * math.sqrt(len(scores)) if len(scores) > 1
            else 0.0, "scores": [round(s, 4) for s in scores]}


def dump(path, data) -> None:
    from corral.core.io import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
