"""Regenerate corral/assets/quickstart_*.jsonl (the quickstart's built-in data set: 600 train,
100 dev and 100 unseen arithmetic rows from `make_rows(800, seed=1234)`; the *quickstart
unseen set* of docs/results.md, not the `arithmetic` task's hash split).

    python scripts/make_quickstart_data.py [OUT_DIR]     # default: corral/assets
"""
import json
import sys
from pathlib import Path

from corral.tasks.arithmetic import make_rows, to_chat


def write(out: Path) -> dict:
    rows = make_rows(800, seed=1234)
    splits = {"train": rows[:600], "dev": rows[600:700], "unseen": rows[700:]}
    out.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        with open(out / f"quickstart_{name}.jsonl", "w", encoding="utf-8") as handle:
            for row in part:
                record = to_chat(row)
                record["answer"] = row["answer"].split("####")[-1].strip()
                handle.write(json.dumps(record) + "\n")
    return {k: len(v) for k, v in splits.items()}


if __name__ == "__main__":
    default = Path(__file__).resolve().parent.parent / "corral" / "assets"
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else default))
