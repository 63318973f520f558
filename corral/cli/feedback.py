"""`corral judge audit` and `corral feedback label|constitutional`: AI feedback you can check.

    corral judge audit --judge smollm2-135m-instruct --task arithmetic --split dev --limit 50
    corral feedback label --judge JUDGE --task arithmetic --samples s.jsonl --out pairs.jsonl

Both read answers from a graded samples file (what `corral synth rejection --samples FILE`
writes; made here with --model and -n when the file does not exist yet). `label` runs the
audit on the same samples wherever they are graded and stores the report card in the
labelled file's manifest, so nobody uses the labels without seeing what the judge is worth.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from corral.core.errors import CorralError


def _judge(args, generator=None):
    from corral.feedback.judge import Judge, JudgeCache
    from corral.infer.generators import generator_for

    rubric = args.rubric
    if rubric not in ("additive", "correctness"):
        path = Path(rubric)
        if not path.is_file():
            raise CorralError(f"--rubric {rubric}: not a built-in (additive, correctness) and "
                              "no such file; give a template with {question} and {answer}")
        rubric = path.read_text(encoding="utf-8")
    gen = generator or generator_for(args.judge, root=args.root, key="--judge",
                                     batch_size=args.engine_batch)
    cache = JudgeCache(args.cache) if args.cache else None
    return Judge(gen, rubric=rubric, reasoning=args.reasoning, retries=args.retries,
                 max_new_tokens=args.judge_max_new_tokens, cache=cache,
                 max_calls=args.max_calls or None, verdict=args.verdict)


def _samples(args, task, path: str) -> dict:
    """source → graded samples, read from `path`, or sampled into it with --model first."""
    from corral.core.io import read_jsonl

    if not Path(path).is_file():
        if not args.model:
            raise CorralError(f"--samples {path} does not exist; give a samples file from "
                              "`corral synth rejection --samples FILE`, or --model MODEL to "
                              "sample one now")
        from corral.infer.engine import SamplingParams
        from corral.infer.generators import generator_for
        from corral.synth.sampling import sample_task

        params = SamplingParams(n=args.n, temperature=args.temperature,
                                max_new_tokens=args.max_new_tokens, seed=args.seed)
        gen = generator_for(args.model, root=args.root, key="--model",
                            batch_size=args.engine_batch)
        sample_task(gen, task, path, params, grader=task.grader)
    rows = read_jsonl(path)
    samples = {r["source"]: r["samples"] for r in rows
               if isinstance(r, dict) and isinstance(r.get("samples"), list) and "source" in r}
    known = {it.source for it in task.items}
    if not samples or not known & set(samples):
        raise CorralError(f"{path}: no samples for the questions of task {task.name} "
                          f"({args.split}); sample them with the same --task, --split and --data")
    return {k: v for k, v in samples.items() if k in known}


def _task(args):
    from corral.tasks import get_task

    return get_task(args.task, split=args.split, data=args.data, limit=args.limit)


def _conversations(task) -> dict:
    from corral.core.records import as_dicts

    return {it.source: as_dicts(it.messages) for it in task.items}


def cmd_audit(args) -> dict:
    from corral.core.io import atomic_write_text
    from corral.feedback.audit import audit, format_card

    task = _task(args)
    samples = _samples(args, task, args.samples or f"{args.out or 'judge-audit'}.samples.jsonl")
    other = _samples(args, task, args.other_samples) if args.other_samples else None
    card = audit(_judge(args), _conversations(task), samples, other=other,
                 max_items=args.max_items, seed=args.seed)
    card["task"] = {"name": task.name, "split": args.split, "items": len(task.items)}
    print(format_card(card))
    if args.out:
        atomic_write_text(args.out, json.dumps(card, indent=2, default=str) + "\n")
        print(f"report card: {args.out}")
    return card


def cmd_label(args) -> None:
    from corral.core.io import atomic_write_lines, file_sha256
    from corral.feedback.audit import audit, format_card
    from corral.feedback.label import label_pairs
    from corral.store.jobs import manifest_path, write_manifest

    task = _task(args)
    samples = _samples(args, task, args.samples)
    other = _samples(args, task, args.other) if args.other else None
    judge = _judge(args)
    conversations = _conversations(task)
    rows, kto, counts = label_pairs(judge, conversations, samples, other=other,
                                    per_prompt=args.per_prompt, seed=args.seed,
                                    calibrated=args.calibrate)
    card = None
    if args.audit and any(s.get("passed") is not None for v in samples.values() for s in v):
        card = audit(judge, conversations, samples, max_items=args.max_items, seed=args.seed)
        print(format_card(card))
    atomic_write_lines(args.out, [json.dumps(r, ensure_ascii=False) for r in rows])
    sources = [json.loads(manifest_path(p).read_text(encoding="utf-8"))
               for p in (args.samples, args.other) if p and manifest_path(p).is_file()]
    fields = dict(kind="feedback-label", judge=judge.identity(), counts=counts,
                  judge_stats=judge.stats.as_dict(), report_card=card, sources=sources,
                  inputs=[{"path": p, "sha256": file_sha256(p)}
                          for p in (args.samples, args.other) if p])
    write_manifest(args.out, **fields)
    if args.kto_out:
        atomic_write_lines(args.kto_out, [json.dumps(r, ensure_ascii=False) for r in kto])
        write_manifest(args.kto_out, **fields)
    agree = f", agrees with the grader on {counts['agrees_with_grader']}/" \
        f"{counts['graded_pairs']} graded pairs" if counts["graded_pairs"] else ""
    print(f"label: {counts['pairs']} pairs judged in both orders: {counts['consistent']} "
          f"consistent -> {args.out}; dropped {counts['tie']} ties, {counts['inconsistent']} "
          f"inconsistent, {counts['unparsed']} unparsed{agree}")


def _judge_args(p) -> None:
    p.add_argument("--judge", default="smollm2-135m-instruct",
                   help="judge model: a model name, run, directory, openai:MODEL or URL#MODEL")
    p.add_argument("--rubric", default="correctness",
                   help="pointwise rubric: correctness (0/1), additive (5 points) or a FILE")
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
