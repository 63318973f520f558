"""GSM8K grade-school math: a local JSONL file (`data=`) or the hub dataset when online.

Splits: `train` and `test` are the file (or hub split) whole; `dev` and `unseen` are two
disjoint halves of it (hub: of the test split), fixed by the hash of each question, so a model
tuned on dev is judged on problems it was never tuned on."""
from __future__ import annotations

INSTRUCTION = "Solve the problem step by step. End with a line '#### <number>'."


def build(split: str = "test", data: str = "", seed: int = 0, few_shot: int = 0):
    from corral.data.readers import load_items
    from corral.graders.rules import NumericAnswer
    from corral.records import Item, Message
    from corral.splits import assign, row_hash
    from corral.tasks import Task

    hub_split = "train" if split == "train" else "test"
    rows = load_items(data or f"openai/gsm8k:main:{hub_split}")
    if split in ("dev", "unseen"):
        rows = [r for r in rows
                if assign(row_hash({"question": _question(r)}), 0.5, 0.5) == split]
    items = []
    for item in rows:
        question = _question(item)
        answer = str(item.fields.get("answer", "")).split("####")[-1].strip().replace(",", "")
        items.append(Item(messages=(Message("user", f"{question}\n{INSTRUCTION}"),),
                          fields={**item.fields, "answer": answer}, source=item.source))
    shots = []
    if few_shot:
        for item in rows[-few_shot:]:  # the file's last rows: never the evaluated first ones
            question = _question(item)
            shots.append((f"{question}\n{INSTRUCTION}", str(item.fields.get("answer", ""))))
        items = items[:-few_shot]
    return Task(name="gsm8k", items=items, grader=NumericAnswer(), few_shot=shots)


def _question(item) -> str:
    return item.fields.get("question") or item.messages[-1].content
