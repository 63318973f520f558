"""A grader with a memory and a budget: the form a judge takes as an RL reward.

    grader = CachedGrader(judge_grader, path="runs/x/reward-cache.jsonl", max_calls=5000)

Same item, same answer → one call to the inner grader, ever (RL samples repeat themselves:
a group of 8 at a low temperature often holds the same answer twice, and a resumed run
re-grades its last rollout). Scores are kept in memory and, with `path`, appended to a JSONL
file as they come, so a resumed run pays for nothing twice. A grading that failed
(`error_kind`) is not cached: it is asked again next time.

`max_calls` bounds the inner grader's calls (a paid judge endpoint, or a slow local judge);
the batch that would exceed it raises BudgetSpent before any call, and the training loop
stops cleanly at its last finished step.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from corral.core.errors import BudgetSpent
from corral.core.io import content_hash, read_jsonl
from corral.graders.base import BaseGrader, Score, score_error


class CachedGrader(BaseGrader):
    def __init__(self, inner, path: str = "", max_calls: int = 0):
        self.inner, self.name = inner, getattr(inner, "name", "grader")
        self.path = Path(path) if path else None
        self.max_calls, self.calls, self.hits = max_calls, 0, 0
        self.has_pass = getattr(inner, "has_pass", None)
        self.scores: dict[str, Score] = {}
        for row in read_jsonl(self.path) if self.path else []:
            if "key" in row:
                self.scores[row["key"]] = Score(row["value"], row.get("details") or {},
                                                row.get("passed"), row.get("answer"))

    def __getattr__(self, name):  # the inner grader's other attributes (spec, range, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _key(self, item, sample) -> str:
        return content_hash({"grader": self.name, "item": item, "answer": sample.output_text})

    def grade(self, item, sample) -> Score:
        return self.grade_batch([(item, sample)])[0]

    def grade_batch(self, pairs) -> list[Score]:
        keys = [self._key(item, sample) for item, sample in pairs]
        todo = {}  # key → first index asking for it: a repeat within the batch is one call too
        for k, key in enumerate(keys):
            if key not in self.scores and key not in todo:
                todo[key] = k
        self.hits += len(keys) - len(todo)
        if self.max_calls and self.calls + len(todo) > self.max_calls:
            raise BudgetSpent(f"the reward's budget of {self.max_calls} grader calls is spent "
                              f"({self.calls} made, {len(todo)} more needed); raise "
                              "rl.max_reward_calls to go on")
        if todo:
            self.calls += len(todo)
            fresh = self.inner.grade_batch([pairs[k] for k in todo.values()])
            new = []
            for key, score in zip(todo, fresh):
                if score_error(score) is None:
                    self.scores[key] = score
                    new.append({"key": key, "value": score.value, "details": score.details,
                                "passed": score.passed, "answer": score.answer})
            self._append(new)
            failed = {key: score for key, score in zip(todo, fresh)
                      if score_error(score) is not None}
        else:
            failed = {}
        return [failed.get(key) or self.scores[key] for key in keys]

    def _append(self, rows: list[dict]) -> None:
        if not rows or self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
