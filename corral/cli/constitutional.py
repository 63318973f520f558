"""`corral feedback constitutional`: Constitutional AI data, SFT rows (SL-CAI) or preference
rows (RL-CAI), from a model's own responses and a constitution of principles.

    corral feedback constitutional --task ifeval-like --limit 100 --rounds 2 \\
        --out data/cai.sft.jsonl                                     # critique and revise
    corral feedback constitutional --mode rl --prompts prompts.jsonl --critic openai:gpt-4o-mini \\
        --constitution my.txt --out data/cai.dpo.jsonl               # compare two responses

The feedback group (cli/feedback.py) calls `add_parser` with its subparsers.
"""
from __future__ import annotations

from pathlib import Path

from corral.core.errors import CorralError

DEFAULT_MODEL = "smollm2-135m-instruct"


def _rows(args) -> list[dict]:
    from corral.data.readers import load_items
    from corral.feedback.constitutional import prompt_rows
    from corral.tasks import get_task

    if bool(args.task) == bool(args.prompts):
        raise CorralError("give the prompts with exactly one of --task NAME (a built-in task) "
                          "or --prompts FILE (rows with 'messages' or 'prompt')")
    if args.split == "unseen":
        raise CorralError("--split unseen: training data made from the unseen split would leak "
                          "it into training; use --split train")
    if args.limit < 0:
        raise CorralError(f"--limit {args.limit}: give a positive number of prompts, or 0 for "
                          "all")
    path = args.prompts or (args.task if args.task.endswith((".jsonl", ".json", ".parquet"))
                            else "")
    if path:
        items = load_items(path)[:args.limit or None]
    else:
        items = get_task(args.task, split=args.split, data=args.data, limit=args.limit).items
    return prompt_rows(items)


def cmd_constitutional(args) -> None:
    from corral.feedback.constitution import load_constitution
    from corral.feedback.constitutional import rl_cai, sl_cai
    from corral.feedback.judge import Judge, JudgeCache
    from corral.infer.engine import SamplingParams
    from corral.infer.generators import generator_for

    if Path(args.out).suffix != ".jsonl":
        raise CorralError(f"--out {args.out}: give a .jsonl path for the rows")
    if args.rounds < 1:
        raise CorralError(f"--rounds {args.rounds}: give at least 1 critique-and-revise round")
    if args.mode == "rl" and args.temperature <= 0:
        raise CorralError(f"--temperature {args.temperature:g}: RL-CAI samples two responses "
                          "to compare, and greedy decoding makes them identical; give a "
                          "temperature above 0, such as 0.8")
    constitution = load_constitution(args.constitution)  # a mistake shows before models load
    rows = _rows(args)
    policy = generator_for(args.model, root=args.root, batch_size=args.engine_batch,
                           key="--model")
    critic = policy if args.critic in ("", args.model) else generator_for(
        args.critic, root=args.root, batch_size=args.engine_batch, key="--critic")
    params = SamplingParams(temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                            seed=args.seed)
    critic_tokens = args.critic_max_new_tokens or args.max_new_tokens
    if args.mode == "sl":
        critic_params = SamplingParams(temperature=0.0, max_new_tokens=critic_tokens)
        sl_cai(policy, critic, constitution, rows, args.out, rounds=args.rounds, params=params,
               critic_params=critic_params, seed=args.seed, batch_size=args.batch_size,
               retry_failed=args.retry_failed, keep_truncated=args.keep_truncated)
        return
    judge = Judge(critic, reasoning=not args.no_judge_reasoning, max_new_tokens=critic_tokens,
                  cache=JudgeCache(f"{args.out}.judge.jsonl"))
    rl_cai(policy, judge, constitution, rows, args.out, params=params, seed=args.seed,
           batch_size=args.batch_size, retry_failed=args.retry_failed,
           keep_truncated=args.keep_truncated)


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
