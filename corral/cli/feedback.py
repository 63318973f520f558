"""`corral judge audit` and `corral feedback label|constitutional`: AI feedback you can check.

    corral judge audit --judge smollm2-135m-instruct --task arithmetic --split dev --limit 50
    corral feedback label --judge JUDGE --task arithmetic --samples s.jsonl --out pairs.jsonl

Both read answers from a graded samples file (what `corral synth rejection --samples FILE`
writes; made here with --model and -n when the file does not exist yet). `label` runs the
audit on the same samples wherever they are graded and stores the report card in the
labelled file's manifest, so nobody uses the labels without seeing what the judge is worth.

This module only parses and prints: the commands are `corral.api.feedback.judge_audit`,
`label` and `constitutional`.
"""
from __future__ import annotations

import argparse


def cmd_audit(args) -> dict:
    from corral.api.feedback import AuditOptions, judge_audit
    from corral.cli.options import options

    result = judge_audit(options(AuditOptions, args), log=print)
    print(result.text)
    if result.out:
        print(f"report card: {result.out}")
    return result.card


def cmd_label(args) -> None:
    from corral.api.feedback import LabelOptions, label
    from corral.cli.options import options

    result = label(options(LabelOptions, args), log=print)
    if result.card is not None:
        print(result.card_text)
    print(result.summary)


def _judge_args(p) -> None:
    p.add_argument("--judge", default="smollm2-135m-instruct",
                   help="judge model: a model name, run, directory, openai:MODEL or URL#MODEL")
    p.add_argument("--rubric", default="correctness",
                   help="pointwise rubric: correctness (0/1), additive (5 points), pal (the judge "
                   "writes and runs a program to check the answer; docs/pal.md) or a FILE")
    p.add_argument("--reasoning", action=argparse.BooleanOptionalAction, default=True,
                   help="let the judge explain before its verdict")
    p.add_argument("--verdict", default="generate", choices=["generate", "logprob"],
                   help="generate: the judge writes its verdict; logprob: the likeliest "
                        "verdict token (Yes/No, a digit, A/B) — a local judge only, never "
                        "unparsed, what a small model manages")
    p.add_argument("--retries", type=int, default=2, help="re-asks of an unparsable reply")
    p.add_argument("--judge-max-new-tokens", type=int, default=256)
    p.add_argument("--cache", default="", help="verdict cache (JSONL): a rerun asks nothing twice")
    p.add_argument("--max-calls", type=int, default=0, help="stop after this many judge calls")
    p.add_argument("--max-items", type=int, default=60,
                   help="audit: answers of each kind and pairs of each kind at most")


def _task_args(p) -> None:
    p.add_argument("--task", required=True, help="arithmetic | gsm8k | ...")
    p.add_argument("--split", default="dev")
    p.add_argument("--data", default="", help="the task's local data file (gsm8k)")
    p.add_argument("--limit", type=int, default=0, help="first N questions only")
    p.add_argument("--model", default="", help="sample answers with this model when "
                   "the samples file does not exist yet")
    p.add_argument("-n", type=int, default=4, help="answers per question when sampling")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--engine-batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default="runs")


def register(subparsers) -> None:
    judge = subparsers.add_parser("judge", help="judges: audit one before trusting it")
    jsub = judge.add_subparsers(dest="judge_command", required=True)
    p = jsub.add_parser("audit", help="the judge's report card on answers a grader scored")
    _task_args(p)
    _judge_args(p)
    p.add_argument("--samples", default="", help="graded samples (default OUT.samples.jsonl)")
    p.add_argument("--other-samples", default="",
                   help="another model's answers to the same questions (self-preference)")
    p.add_argument("--out", default="", help="the report card as JSON")
    p.set_defaults(func=cmd_audit)

    feedback = subparsers.add_parser("feedback", help="AI feedback: judge-labelled "
                                     "preferences, constitutional critique-and-revise")
    fsub = feedback.add_subparsers(dest="feedback_command", required=True)
    p = fsub.add_parser("label", help="pairs of answers judged (both orders) into DPO/KTO rows")
    _task_args(p)
    _judge_args(p)
    p.add_argument("--samples", required=True, help="graded samples file (made with --model "
                   "when it does not exist)")
    p.add_argument("--other", default="", help="a second configuration's samples: pairs take "
                   "one answer from each (stronger vs weaker)")
    p.add_argument("--per-prompt", type=int, default=1, help="pairs per question at most")
    p.add_argument("--audit", action=argparse.BooleanOptionalAction, default=True,
                   help="measure the judge on the graded samples; the card goes in the manifest")
    p.add_argument("--calibrate", action="store_true", help="--verdict logprob: decide each "
                   "pair by the mean log-prob margin of its two orders (cancels a position "
                   "bias) instead of requiring both orders to agree")
    p.add_argument("--kto-out", default="", help="also write KTO rows (chosen true, rejected "
                   "false)")
    p.add_argument("--out", required=True, help="preference rows (.jsonl) + manifest")
    p.set_defaults(func=cmd_label)
    from corral.cli.constitutional import add_parser

    add_parser(fsub)
