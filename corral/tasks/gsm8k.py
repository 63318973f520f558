"""GSM8K grade-school math: a local JSONL file (`data=`) or the hub dataset when online.

Splits, fixed by the hash of each question so they never overlap: with a local file, `train`
is half of it and `dev` and `unseen` a quarter each (`test` is the whole file); from the hub,
`train` is its train split and `dev` and `unseen` are halves of its test split."""
from __future__ import annotations

INSTRUCTION = "Solve the problem step by step. End with a line '#### <number>'."


def build(split: str = "test", data: str = "", seed: int = 0, few_shot: int = 0):
    from corral.core.io import content_hash
    from corral.core.records import Item, Message
    from corral.data.readers import load_items
    from corral.data.splits import assign
    from corral.graders.rules import NumericAnswer
    from corral.tasks import Task

    if data:  # one file holds every split: train half, dev and unseen quarters, test = all
        rows, share = load_items(data), (0.25 if split in ("train", "dev", "unseen") else 0)
    else:  # the hub's train split is train; dev and unseen are halves of its test split
        rows = load_items(f"openai/gsm8k:main:{'train' if split == 'train' else 'test'}")
        share = 0.5 if split in ("dev", "unseen") else 0
    if share:
        rows = [r for r in rows
                if assign(content_hash({"question": _question(r)}), share, share) == split]
    items, solutions = [], []
    for item in rows:
        question = _question(item)
        answer = str(item.fields.get("answer", "")).split("####")[-1].strip().replace(",", "")
        items.append(Item(messages=(Message("user", f"{question}\n{INSTRUCTION}"),),
                          fields={**item.fields, "answer": answer}, source=item.source))
        solutions.append(str(item.fields.get("answer", "")))
    shots = []
    if few_shot:
        for item in rows[-few_shot:]:  # the file's last rows: never the evaluated first ones
            question = _question(item)
            shots.append((f"{question}\n{INSTRUCTION}", str(item.fields.get("answer", ""))))
        items, solutions = items[:-few_shot], solutions[:-few_shot]
    return Task(name="gsm8k", items=items, grader=NumericAnswer(), few_shot=shots,
                solutions=solutions)


def _question(item) -> str:
    return item.fields.get("question") or item.messages[-1].content
