"""Regenerate corral/assets/quickstart_*.jsonl (the quickstart's built-in data set).

    python scripts/make_quickstart_data.py
"""
import json
from pathlib import Path

from corral.tasks.arithmetic import make_rows, to_chat

rows = make_rows(800, seed=1234)
splits = {"train": rows[:600], "dev": rows[600:700], "unseen": rows[700:]}
out = Path(__file__).resolve().parent.parent / "corral" / "assets"
for name, part in splits.items():
    with open(out / f"quickstart_{name}.jsonl", "w", encoding="utf-8") as handle:
        for row in part:
            record = to_chat(row)
            record["answer"] = row["answer"].split("####")[-1].strip()
            handle.write(json.dumps(record) + "\n")
print({k: len(v) for k, v in splits.items()})
