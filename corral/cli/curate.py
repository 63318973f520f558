"""`corral curate`: dedup, decontaminate and select training rows into a new file + manifest.

    corral curate train.jsonl --out train.curated.jsonl
    corral curate train.jsonl --out clean.jsonl --decontaminate gsm8k=gsm8k_test.jsonl
    corral curate train.jsonl --out small.jsonl --semantic 0.95 --select 900 --select-method kcenter
    corral curate train.jsonl --out best.jsonl --select 500 --score-model smollm2-135m-instruct

The logic is the library's: `corral.curate.run(CurateRunOptions(...))`.
"""
from __future__ import annotations

import argparse


def cmd_curate(args) -> None:
    from corral.cli.options import options
    from corral.curate import CurateRunOptions, run

    result = run(options(CurateRunOptions, args))
    for step in result.steps:
        notes = "".join(f"; {note}" for note in step.get("notes", []))
        print(f"{step['step']}: removed {step['removed']}, kept {step['kept']}{notes}")
    print(f"wrote {result.out} ({result.rows_out} of {result.rows_in} rows), report "
          f"{result.report}, manifest {result.manifest_path}")


def register(subparsers) -> None:
    p = subparsers.add_parser("curate", help="dedup, decontaminate and select training rows")
    p.add_argument("file", help="training rows (.jsonl, .json, .parquet)")
    p.add_argument("--out", required=True, help="curated .jsonl (a manifest is written beside)")
    p.add_argument("--exact", action=argparse.BooleanOptionalAction, default=True,
                   help="drop rows whose normalised text repeats an earlier row's")
    p.add_argument("--near", default="0.7", help="MinHash Jaccard threshold, or off")
    p.add_argument("--ngram", type=int, default=5, help="words per shingle for --near")
    p.add_argument("--num-perm", type=int, default=128, help="MinHash permutations")
    p.add_argument("--semantic", default="off", help="MiniLM cosine threshold (e.g. 0.95), "
                   "or off")
    p.add_argument("--decontaminate", nargs="+", default=[], metavar="TASK_OR_FILE",
                   help="test sets to drop overlapping rows against: FILE (every row); NAME "
                   "(a task's dev and unseen splits: arithmetic, gsm8k from the hub); "
                   "NAME=FILE (every row of the task's local file: gsm8k=test.jsonl); "
                   "NAME:SPLIT[,SPLIT][=FILE] (those splits only: gsm8k:dev,unseen=FILE). "
                   "The output and the manifest say which rows of which file were checked")
    p.add_argument("--known-splits", action=argparse.BooleanOptionalAction, default=True,
                   help="also check sealed unseen rows and the dev/unseen files beside "
                        "X.train.jsonl")
    p.add_argument("--decontam-ngram", type=int, default=13)
    p.add_argument("--decontam-threshold", type=float, default=0.5,
                   help="drop a row covering this share of a test item's n-grams")
    p.add_argument("--decontam-semantic", default="off", help="also drop rows whose prompt "
                   "has this MiniLM cosine to a test item (paraphrases; e.g. 0.9), or off")
    p.add_argument("--select", type=int, default=0, metavar="K", help="keep K rows")
    p.add_argument("--select-method", default="deita", choices=["deita", "kcenter", "random"])
    p.add_argument("--tau", type=float, default=0.9, help="deita: max cosine to a kept row")
    p.add_argument("--score-field", default="", help="deita scores: a numeric field of the rows")
    p.add_argument("--score-model", default="", help="deita scores: IFD under this model")
    p.add_argument("--batch-size", type=int, default=8, help="rows per --score-model forward")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", default="", help="findings JSONL (default OUT.report.jsonl)")
    p.set_defaults(func=cmd_curate)
