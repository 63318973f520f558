"""`corral feedback constitutional`: Constitutional AI data, SFT rows (SL-CAI) or preference
rows (RL-CAI), from a model's own responses and a constitution of principles.

    corral feedback constitutional --task ifeval-like --limit 100 --rounds 2 \\
        --out data/cai.sft.jsonl                                     # critique and revise
    corral feedback constitutional --mode rl --prompts prompts.jsonl --critic openai:gpt-4o-mini \\
        --constitution my.txt --out data/cai.dpo.jsonl               # compare two responses

The feedback group (cli/feedback.py) calls `add_parser` with its subparsers. This module only
parses: the command is `corral.api.feedback.constitutional`.
"""
from __future__ import annotations

DEFAULT_MODEL = "smollm2-135m-instruct"  # corral.feedback.commands.DEFAULT_MODEL


def cmd_constitutional(args) -> None:
    from corral.api.feedback import ConstitutionalOptions, constitutional
    from corral.cli.options import options

    constitutional(options(ConstitutionalOptions, args), log=print)


def add_parser(subparsers):
    """Add `constitutional` to a subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "constitutional", help="Constitutional AI: critique-and-revise SFT rows (sl) or "
        "principle-judged preference rows (rl)")
    p.add_argument("--mode", choices=["sl", "rl"], default="sl",
                   help="sl: sample, critique, revise -> SFT rows; rl: two responses "
                   "compared under a principle -> preference rows")
    p.add_argument("--task", default="", help="built-in task (ifeval-like, gsm8k, arithmetic) "
                   "or a prompts file")
    p.add_argument("--split", default="train")
    p.add_argument("--data", default="", help="local data file for the task (e.g. GSM8K)")
    p.add_argument("--limit", type=int, default=0, help="first N prompts only")
    p.add_argument("--prompts", default="", help="prompts file: rows with 'messages' or "
                   "'prompt' (rl: optional 'responses': [a, b] to compare instead of sampling)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="the policy: model name, run, model "
                   "dir, or openai:MODEL / http://HOST/v1#MODEL")
    p.add_argument("--critic", default="", help="critic (sl) or feedback model (rl); default "
                   "the --model itself, loaded once")
    p.add_argument("--constitution", default="", help="principles file (.txt/.md one per line, "
                   "or .jsonl); default the shipped one")
    p.add_argument("--rounds", type=int, default=2,
                   help="sl: critique-and-revise rounds at most (a satisfied critic stops early)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--critic-max-new-tokens", type=int, default=0,
                   help="for critiques and verdicts (default --max-new-tokens)")
    p.add_argument("--temperature", type=float, default=0.7, help="the policy's sampling "
                   "temperature (critiques and verdicts are greedy)")
    p.add_argument("--seed", type=int, default=0, help="seeds sampling and the principles drawn")
    p.add_argument("--no-judge-reasoning", action="store_true",
                   help="rl: the feedback model gives only its verdict, without an explanation")
    p.add_argument("--keep-truncated", action="store_true",
                   help="keep responses cut at --max-new-tokens (left out by default)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="prompts per job batch (each batch is saved when done)")
    p.add_argument("--engine-batch", type=int, default=64,
                   help="sequences a local model decodes at once")
    p.add_argument("--retry-failed", action="store_true",
                   help="redo rows that failed in an earlier run (an endpoint error)")
    p.add_argument("--out", required=True, help="output .jsonl (a manifest is written beside)")
    p.add_argument("--root", default="runs")
    p.set_defaults(func=cmd_constitutional)
    return p
