"""Paired comparison of `corral eval` runs on the same items: each run's mean score ± its
standard error (binomial, sqrt(p(1-p)/n)) and each later run's difference from the first ±
the paired standard error (sd of the per-item differences / sqrt(n)).

    python scripts/paired.py runs/eval-base runs/eval-student [more runs...]
"""
import json
import math
import sys
from pathlib import Path


def per_item(run: str) -> dict:
    scores: dict = {}
    for line in (Path(run) / "samples.jsonl").read_text().splitlines():
        row = json.loads(line)
        scores.setdefault(row["item"], []).append(float(row["passed"]))
    return {k: sum(v) / len(v) for k, v in scores.items()}


def stderr(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def main(runs: list[str]) -> None:
    base = per_item(runs[0])
    mean = sum(base.values()) / len(base)
    print(f"{runs[0]}: {mean:.3f} ± {stderr(mean, len(base)):.3f} ({len(base)} items)")
    for run in runs[1:]:
        other = per_item(run)
        shared = sorted(set(base) & set(other))
        diffs = [other[k] - base[k] for k in shared]
        d = sum(diffs) / len(diffs)
        sd = math.sqrt(sum((x - d) ** 2 for x in diffs) / max(1, len(diffs) - 1))
        acc = sum(other[k] for k in shared) / len(shared)
        print(f"{run}: {acc:.3f} ± {stderr(acc, len(shared)):.3f}; paired difference "
              f"{d:+.3f} ± {sd / math.sqrt(len(diffs)):.3f} on {len(shared)} shared items")


if __name__ == "__main__":
    main(sys.argv[1:])
