"""The one verdict cache and the one call budget, shared by the judge (`judging.Judge`) and
the reward wrapper (`cached.CachedGrader`).

    cache = JudgeCache("runs/x/judge.jsonl")      # key -> record, on disk
    budget = CallBudget(5000, "the judge's budget of {limit} calls is spent ...")
    budget.charge(8)                               # BudgetSpent before the call would exceed it

Records are JSON lines appended and fsynced as they come (`core.io.append_jsonl`); a torn
last line (a killed job) is skipped on reading, so a rerun asks again only for it.
"""
from __future__ import annotations

from pathlib import Path

from corral.core.errors import BudgetSpent
from corral.core.io import append_jsonl, read_jsonl


class JudgeCache:
    """Records by their `key`, kept in memory and, with a path, on disk."""

    def __init__(self, path=None):
        self.path = Path(path) if path else None
        self.entries: dict[str, dict] = {}
        for record in read_jsonl(self.path) if self.path else []:
            if "key" in record:
                self.entries[record["key"]] = record

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, records: list[dict]) -> None:
        if not records:
            return
        for record in records:
            self.entries[record["key"]] = record
        if self.path is not None:
            append_jsonl(self.path, records)


class CallBudget:
    """At most `limit` calls (None or 0: no limit). `charge(n)` counts n calls, or raises
    BudgetSpent *before* counting them when they would exceed the limit. `message` is
    formatted with limit, made (calls so far) and more (the n asked for)."""

    def __init__(self, limit: int | None, message: str):
        self.limit, self.message, self.calls = limit or None, message, 0

    def charge(self, n: int) -> None:
        if self.limit is not None and self.calls + n > self.limit:
            raise BudgetSpent(self.message.format(limit=self.limit, made=self.calls, more=n))
        self.calls += n
