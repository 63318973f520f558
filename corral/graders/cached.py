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

from corral.core.io import content_hash
from corral.graders.base import BaseGrader, Score, score_error
from corral.graders.judge_cache import CallBudget, JudgeCache


class CachedGrader(BaseGrader):
    """Scores in the one verdict cache (`judge_cache.JudgeCache`), calls under the one budget
    (`judge_cache.CallBudget`) that the judge uses too."""

    def __init__(self, inner, path: str = "", max_calls: int = 0):
        self.inner, self.name = inner, getattr(inner, "name", "grader")
        self.cache = JudgeCache(path or None)
        self.path = self.cache.path
        self.budget = CallBudget(max_calls, "the reward's budget of {limit} grader calls is "
                                 "spent ({made} made, {more} more needed); raise "
                                 "rl.max_reward_calls to go on")
        self.max_calls, self.hits = max_calls, 0
        self.has_pass = getattr(inner, "has_pass", None)
        self.scores: dict[str, Score] = {
            key: Score(row["value"], row.get("details") or {}, row.get("passed"),
                       row.get("answer")) for key, row in self.cache.entries.items()}

    @property
    def calls(self) -> int:
        return self.budget.calls

    def __getattr__(self, name):  # the inner grader's other attributes (spec, range, ...)
        if name in ("inner", "budget", "cache"):
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
        self.budget.charge(len(todo))
        failed = {}
        if todo:
            fresh = self.inner.grade_batch([pairs[k] for k in todo.values()])
            new = []
            for key, score in zip(todo, fresh):
                if score_error(score) is None:
                    self.scores[key] = score
                    new.append({"key": key, "value": score.value, "details": score.details,
                                "passed": score.passed, "answer": score.answer})
                else:
                    failed[key] = score
            self.cache.put(new)
        return [failed.get(key) or self.scores[key] for key in keys]
