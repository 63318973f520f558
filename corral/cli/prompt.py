"""`corral prompt search`: prompt programs scored on dev under a budget of model calls, the
winner graded once on the sealed unseen split beside zero-shot; `corral prompt show FILE`
prints a saved program and what each item would see.

    corral prompt search --task arithmetic --budget 400 --out arith.prompt.json
    corral prompt show arith.prompt.json --task arithmetic --limit 1
    corral eval --model smollm2-135m-instruct --task arithmetic --split unseen \\
        --program arith.prompt.json

The logic is the library's: `corral.api.prompt_search(PromptSearchOptions(...))`.
"""
from __future__ import annotations


def cmd_search(args) -> None:
    from corral.cli.options import options
    from corral.prompt.commands import PromptSearchOptions, prompt_search
    from corral.prompt.report import format_search

    result = prompt_search(options(PromptSearchOptions, args), log=print)
    print(format_search(result))


def cmd_show(args) -> None:
    from corral.prompt.report import show_program

    print(show_program(args.file, task=args.task, data=args.data, grader=args.grader,
                       split=args.split, limit=args.limit))


def register(subparsers) -> None:
    prompt = subparsers.add_parser("prompt", help="search prompt programs (system prompt, "
                                   "template, chosen demonstrations) on dev; show one")
    sub = prompt.add_subparsers(dest="prompt_command", required=True)
    p = sub.add_parser("search", help="score prompt programs on dev under a call budget; "
                       "grade the winner on unseen")
    p.add_argument("--task", required=True, help="arithmetic | gsm8k | ifeval-like | "
                   "DEV.jsonl (with --grader, --train, --unseen)")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--data", default="", help="the task's local data file (gsm8k)")
    p.add_argument("--grader", default="", help="a FILE task's grader (rule name or JSON)")
    p.add_argument("--train", default="", help="a FILE task's train rows (ending with the "
                   "answer): the demonstration pool")
    p.add_argument("--unseen", default="", help="a FILE task's sealed unseen rows")
    p.add_argument("--k", default="0,2,4", help="demonstration counts to try")
    p.add_argument("--choose", default="first,random,similar,mmr,bootstrap",
                   help="how demonstrations are chosen: first, random, similar (kNN to the "
                   "query), mmr (similar and diverse), bootstrap (the model's own passed "
                   "answers)")
    p.add_argument("--layout", default="chat", help="chat (turns) and/or inline (in the "
                   "user message)")
    p.add_argument("--order", default="given", help="given and/or reverse")
    p.add_argument("--system", action="append", default=[],
                   help="a system prompt to try besides none (repeatable)")
    p.add_argument("--instruction", action="append", default=[],
                   help="an instruction template to try besides the bare input, with "
                   "{input} and item fields (repeatable)")
    p.add_argument("--budget", type=int, default=400, help="model calls for the search")
    p.add_argument("--bootstrap", type=int, default=48,
                   help="train items answered zero-shot, at most, to find bootstrapped "
                   "demonstrations (it stops once the largest --k passed)")
    p.add_argument("--orderings", type=int, default=4,
                   help="orders of the winner's demonstrations scored for the spread")
    p.add_argument("--limit", type=int, default=0, help="dev items (0 = all)")
    p.add_argument("--unseen-limit", type=int, default=0, help="unseen items (0 = all)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--engine-batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default="runs")
    p.add_argument("--name", default="", help="run name (default: from the options, so the "
                   "same command resumes)")
    p.add_argument("--out", default="", help="also save the winning program here")
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("show", help="a saved program, and what an item would see")
    p.add_argument("file")
    p.add_argument("--task", default="", help="render the first items of this task")
    p.add_argument("--data", default="")
    p.add_argument("--grader", default="")
    p.add_argument("--split", default="dev")
    p.add_argument("--limit", type=int, default=1)
    p.set_defaults(func=cmd_show)
