"""`corral advise`: measure a task on one or more starting models and print which rung to
climb next, each recommendation with the measurement behind it and the commands to run.

    corral advise --model smollm2-135m-instruct --task arithmetic
    corral advise --model my-sft --model Qwen/Qwen2.5-0.5B-Instruct --task my_task.dev.jsonl \\
        --grader numeric --sft demos.jsonl --json

The logic is the library's: `corral.api.advise(AdviseOptions(...))` (corral/advisor/).
"""
from __future__ import annotations


def cmd_advise(args) -> None:
    import json
    import sys

    from corral.advisor.commands import AdviseOptions, advise
    from corral.cli.options import options

    opts = options(AdviseOptions, args)
    log = (lambda line: print(line, file=sys.stderr)) if opts.json else print
    advice = advise(opts, log=log)
    print(json.dumps(advice.to_json(), indent=2, default=str) if opts.json else advice.text)


def register(subparsers) -> None:
    p = subparsers.add_parser("advise", help="measure the task on your models and rank what "
                              "to do next (prompt, inference compute, SFT, RL, preference "
                              "tuning, a judge), with the commands")
    p.add_argument("--model", action="append", required=True,
                   help="a starting model: name, run, directory or endpoint (repeat to "
                   "compare; the best on dev is advised)")
    p.add_argument("--task", required=True, help="arithmetic | gsm8k | ifeval-like | "
                   "DEV.jsonl (with --grader)")
    p.add_argument("--split", default="dev", help="where to measure (never unseen)")
    p.add_argument("--data", default="", help="the task's local data file (gsm8k)")
    p.add_argument("--grader", default="", help="a FILE task's grader (rule name or JSON)")
    p.add_argument("--train", default="", help="a FILE task's train items (default: "
                   "NAME.train.jsonl beside NAME.dev.jsonl)")
    p.add_argument("--limit", type=int, default=50, help="dev items measured (0 = all)")
    p.add_argument("-n", "--n", type=int, default=8, dest="n",
                   help="samples per item for pass@k and maj@k")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--few-shot", type=int, default=4,
                   help="worked examples for the few-shot score (built-in tasks; 0 = skip)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--sft", default="", help="your SFT rows (JSONL), counted")
    p.add_argument("--pairs", default="", help="your preference pairs (JSONL), counted")
    p.add_argument("--thumbs", default="", help="your thumbs-up/down rows (KTO), counted")
    p.add_argument("--memory-gb", type=float, default=0.0,
                   help="memory for training (default: free GPU memory, else total RAM)")
    p.add_argument("--no-audit", action="store_true",
                   help="skip auditing each model as a judge of its own answers (the "
                   "costliest measurement)")
    p.add_argument("--audit-items", type=int, default=20,
                   help="audit: right and wrong answers (and pairs) judged, at most")
    p.add_argument("--json", action="store_true", help="print the advice as JSON")
    p.add_argument("--root", default="runs", help="runs, and the measurement cache "
                   "ROOT/advise/")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_advise)
