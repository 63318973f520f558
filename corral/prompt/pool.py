"""The demonstrations a prompt program may show: train items with their answers, never an
item of dev or unseen (by question text, and through the split seal for files a `corral
split` sealed), and bootstrapped ones (the model's own answers a grader passed).

    demos = gold_demos(train_task)                 # [(question, answer, fields), ...]
    demos, rows = bootstrap(score_items, train_items, limit=16)   # [(question, its answer), ...]
"""
from __future__ import annotations

from corral.core.errors import CorralError
from corral.core.records import as_dicts


def question(item) -> str:
    """The text a demonstration shows as its input: the item's last user message."""
    messages = as_dicts(item.messages)
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def gold_demos(task) -> list[tuple]:
    """(input, output, fields) for each train item with a reference answer: the task's
    solutions, or a file row's final assistant turn."""
    out = []
    solutions = task.solutions if len(task.solutions) == len(task.items) else [None] * len(
        task.items)
    for item, solution in zip(task.items, solutions):
        messages = as_dicts(item.messages)
        if solution is None and messages and messages[-1]["role"] == "assistant":
            solution, messages = messages[-1]["content"], messages[:-1]
        if solution is None:
            continue
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        out.append((user, solution, tuple(sorted((item.fields or {}).items()))))
    return out


def check_pool(pool: list[tuple], pool_items, held: dict[str, list]) -> None:
    """Refuse demonstrations drawn from held-out items: a pool item that a `corral split`
    sealed as unseen, or whose question is the question of a dev or unseen item."""
    from corral.data.splits import refuse_sealed_items

    refuse_sealed_items(pool_items, "train", "demonstrations", "--train")
    inputs = {d[0].strip(): d for d in pool}
    for split, items in held.items():
        for item in items:
            if question(item).strip() in inputs:
                raise CorralError(f"the demonstration pool holds {item.source or 'an item'} "
                                  f"of the {split} split (same question); demonstrations "
                                  "come from the train split only: give a train file "
                                  "without dev and unseen rows")


def bootstrap(run_items, items, limit: int, wanted: int, chunk: int = 8
              ) -> tuple[list[tuple], int]:
    """The model's own grader-passed answers on train items, as demonstrations (DSPy's
    BootstrapFewShot with a grader as the metric): items are answered zero-shot a chunk at a
    time until `wanted` passed or `limit` items were answered. `run_items(items) -> rows`
    scores them (the search's scorer: resumable, counted in the budget); returns the
    demonstrations and the number of items answered."""
    demos, answered = [], 0
    for start in range(0, min(limit, len(items)), chunk):
        chosen = items[start:min(start + chunk, limit)]
        rows = run_items(chosen)
        answered += len(chosen)
        demos += [(question(it), row["output"], tuple(sorted((it.fields or {}).items())))
                  for it, row in zip(chosen, rows)
                  if row["passed"] and row["output"].strip()]
        if len(demos) >= wanted:
            break
    return demos[:wanted], answered
