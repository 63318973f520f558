"""GSM8K grade-school math: a local JSONL file (`data=`) or the hub dataset when online."""
from __future__ import annotations

INSTRUCTION = "Solve the problem step by step. End with a line '#### <number>'."


def build(split: str = "test", data: str = "", seed: int = 0, few_shot: int = 0):
    from corral.data.readers import load_items
    from corral.graders.rules import NumericAnswer
    from corral.records import Item, Message
    from corral.tasks import Task

    hub_split = "train" if split == "train" else "test"
    rows = load_items(data or f"openai/gsm8k:{hub_split}")
    items = []
    for item in rows:
        question = item.fields.get("question") or item.messages[-1].content
        answer = str(item.fields.get("answer", "")).split("####")[-1].strip().replace(",", "")
        items.append(Item(messages=(Message("user", f"{question}\n{INSTRUCTION}"),),
                          fields={**item.fields, "answer": answer}, source=item.source))
    shots = []
    if few_shot:
        for item in rows[-few_shot:]:  # the file's last rows: never the evaluated first ones
            question = item.fields.get("question") or item.messages[-1].content
            shots.append((f"{question}\n{INSTRUCTION}", str(item.fields.get("answer", ""))))
        items = items[:-few_shot]
    return Task(name="gsm8k", items=items, grader=NumericAnswer(), few_shot=shots)
