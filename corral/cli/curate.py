"""`corral curate`: dedup, decontaminate and select training rows into a new file + manifest.

    corral curate train.jsonl --out train.curated.jsonl
    corral curate train.jsonl --out clean.jsonl --decontaminate gsm8k=../shared/data/gsm8k/x.jsonl
    corral curate train.jsonl --out small.jsonl --semantic 0.95 --select 900 --select-method kcenter
    corral curate train.jsonl --out best.jsonl --select 500 --score-model smollm2-135m-instruct
"""
from __future__ import annotations

import argparse

from corral.core.errors import CorralError


def _similarity(flag: str, text: str) -> float | None:
    """A threshold in (0, 1], or None for off."""
    if str(text).lower() in ("off", "none", "no"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise CorralError(f"{flag} takes a similarity in (0, 1] or 'off', got '{text}'")
    return value


def _options(args):
    from corral.curate import CurateOptions

    if args.ngram < 1 or args.decontam_ngram < 1:
        raise CorralError(f"--ngram {args.ngram} / --decontam-ngram {args.decontam_ngram}: "
                          "give a whole number of words ≥ 1")
    if not 0 < args.decontam_threshold <= 1:
        raise CorralError(f"--decontam-threshold {args.decontam_threshold}: give the share of "
                          "a test item's n-grams in (0, 1] at which a row is dropped")
    if args.select < 0:
        raise CorralError(f"--select {args.select}: give the number of rows to keep, ≥ 1")
    if args.select and args.select_method == "deita" and not (args.score_field or
                                                              args.score_model):
        raise CorralError("--select-method deita ranks rows by score: give --score-field KEY "
                          "or --score-model MODEL (IFD), or use --select-method kcenter|random")
    return CurateOptions(
        exact=args.exact, near=_similarity("--near", args.near), ngram=args.ngram,
        num_perm=args.num_perm, semantic=_similarity("--semantic", args.semantic),
        decontaminate=tuple(args.decontaminate), known_splits=args.known_splits,
        decontam_ngram=args.decontam_ngram, decontam_threshold=args.decontam_threshold,
        decontam_semantic=_similarity("--decontam-semantic", args.decontam_semantic),
        select=args.select, select_method=args.select_method, tau=args.tau,
        score_field=args.score_field, seed=args.seed)


def _ifd_scorer(model_name: str, batch_size: int):
    """deita's scores from a causal LM: IFD, with IFD ≥ 1 (the prompt does not help) last,
    as Cherry-LLM discards those rows."""
    from corral.core.sections import ModelConfig
    from corral.curate import ifd_scores
    from corral.model.policy import load_policy
    from corral.store.runs import run_model_path

    def scorer(rows):
        policy = load_policy(ModelConfig(name=run_model_path(model_name)), None,
                             for_training=False, key="--score-model")
        values = ifd_scores(policy.model, policy.tokenizer, rows, batch_size=batch_size)
        return [v if v < 1 else float("-inf") for v in values]  # NaN < 1 is False: last too
    scorer.name = f"ifd:{model_name}"
    return scorer


def cmd_curate(args) -> None:
    from corral.curate import curate_file

    options = _options(args)
    scorer = _ifd_scorer(args.score_model, args.batch_size) if args.score_model else None
    manifest = curate_file(args.file, args.out, options, report_path=args.report,
                           scorer=scorer)
    for step in manifest["steps"]:
        notes = "".join(f"; {note}" for note in step.get("notes", []))
        print(f"{step['step']}: removed {step['removed']}, kept {step['kept']}{notes}")
    print(f"wrote {args.out} ({manifest['rows_out']} of {manifest['rows_in']} rows), report "
          f"{manifest['report']['path']}, manifest {args.out}.manifest.json")


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
                   help="test sets: a task (gsm8k=DATA, arithmetic, NAME:SPLIT) or data file")
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
