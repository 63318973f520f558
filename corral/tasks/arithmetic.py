"""Procedural arithmetic problems (Goat-style) with a checkable `#### n` answer line.

Levels: 1 = one-digit +/-, 2 = two-digit +/-, 3 = two-digit × one-digit and three-digit +/-,
4 = two-digit × two-digit. Answers show the working for multiplication, as Goat does.
"""
from __future__ import annotations

import random

INSTRUCTION = "Solve the problem. End with a line '#### <number>'."


def _operands(rng: random.Random, level: int) -> tuple[int, str, int]:
    if level == 1:
        return rng.randint(0, 9), rng.choice("+-"), rng.randint(0, 9)
    if level == 2:
        return rng.randint(10, 99), rng.choice("+-"), rng.randint(10, 99)
    if level == 3:
        if rng.random() < 0.5:
            return rng.randint(10, 99), "*", rng.randint(2, 9)
        return rng.randint(100, 999), rng.choice("+-"), rng.randint(100, 999)
    return rng.randint(10, 99), "*", rng.randint(10, 99)


def _working(a: int, op: str, b: int) -> str:
    if op == "*" and b >= 10:
        tens, ones = divmod(b, 10)
        return (f"{a} * {b} = {a} * {tens * 10} + {a} * {ones} = {a * tens * 10} + {a * ones}"
                f" = {a * b}")
    result = a + b if op == "+" else a - b if op == "-" else a * b
    return f"{a} {op} {b} = {result}"


def make_problem(rng: random.Random, level: int = 2) -> dict:
    """One problem as a row: question, answer (with `#### n`), level."""
    a, op, b = _operands(rng, level)
    result = a + b if op == "+" else a - b if op == "-" else a * b
    return {"question": f"What is {a} {op} {b}?",
            "answer": f"{_working(a, op, b)}\n#### {result}", "level": level}


def make_rows(n: int, seed: int, levels=(2, 3)) -> list[dict]:
    """n distinct problems, reproducible from the seed."""
    rng, rows, seen = random.Random(seed), [], set()
    while len(rows) < n:
        row = make_problem(rng, rng.choice(levels))
        if row["question"] not in seen:
            seen.add(row["question"])
            rows.append(row)
    return rows


def to_chat(row: dict) -> dict:
    """The OpenAI chat form of a problem (for SFT)."""
    return {"messages": [{"role": "user", "content": f"{row['question']} {INSTRUCTION}"},
                         {"role": "assistant", "content": row["answer"]}]}


def build(split: str = "dev", data: str = "", seed: int = 0, few_shot: int = 0, levels=(2, 3),
          size: int = 200):
    """The `arithmetic` task: split membership comes from the content hash, as `corral split`."""
    from corral.core.io import content_hash
    from corral.core.records import Item, Message
    from corral.data.splits import assign
    from corral.graders.rules import NumericAnswer
    from corral.tasks import Task

    if split not in ("train", "dev", "unseen"):
        raise ValueError(f"arithmetic has splits train, dev, unseen, not '{split}'")
    items, shots, solutions = [], [], []
    for row in make_rows(size * 12, seed=seed, levels=levels):
        name = assign(content_hash(row), dev=0.1, unseen=0.1)
        if name == "train" and len(shots) < few_shot:
            shots.append((f"{row['question']} {INSTRUCTION}", row["answer"]))
            continue  # a worked example is never also an item (its answer would be shown)
        if name == split and len(items) < size:
            answer = row["answer"].split("####")[-1].strip()
            items.append(Item(messages=(Message("user", f"{row['question']} {INSTRUCTION}"),),
                              fields={"answer": answer, "level": row["level"]},
                              source=f"arithmetic:{split}:{len(items) + 1}"))
            solutions.append(row["answer"])
    return Task(name="arithmetic", items=items, grader=NumericAnswer(), few_shot=shots,
                solutions=solutions)
