"""`corral split` as a library call: rows assigned to train/dev/unseen by content hash, the
unseen rows sealed (training refuses them).

    result = split_data(SplitOptions("data.jsonl", dev=0.1, unseen=0.1))
    result.counts["train"], result.duplicates
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SplitOptions:
    data: str
    dev: float = 0.1
    unseen: float = 0.1
    out: str = ""  # folder for <stem>.{train,dev,unseen}.jsonl; default: next to the data


@dataclass
class SplitResult:
    counts: dict  # rows per split ("train", "dev", "unseen")
    duplicates: int = 0  # rows repeating an earlier row (each went to its original's split)
    first_duplicate: str = ""  # where the first repeat is, e.g. data.jsonl:7


def split_data(opts: SplitOptions) -> SplitResult:
    from corral.data.splits import split_file

    counts = split_file(opts.data, opts.dev, opts.unseen, opts.out or None)
    return SplitResult({k: counts[k] for k in ("train", "dev", "unseen")},
                       counts.get("duplicates", 0), str(counts.get("first_duplicate", "")))
