"""`corral pairs`: preference + KTO rows from a model's graded samples.

    corral pairs --model smollm2-135m-instruct --task arithmetic -n 4 --out pairs/
"""
from __future__ import annotations


def cmd_pairs(args) -> None:
    from pathlib import Path

    from corral.core.sections import ModelConfig
    from corral.graders.load import load_grader
    from corral.infer.engine import SamplingParams
    from corral.model.policy import load_policy
    from corral.store.runs import run_model_path
    from corral.synth.pairs import make_pairs, write_pairs
    from corral.tasks import get_task

    task = get_task(args.task, split=args.split, data=args.data, grader=args.task_grader,
                    limit=args.limit, grader_flag="--task-grader")
    grader = load_grader(args.grader, root=args.root) if args.grader else None
    policy = load_policy(ModelConfig(name=run_model_path(args.model, args.root)), None,
                         for_training=False)
    params = SamplingParams(n=args.n, temperature=args.temperature, top_p=args.top_p,
                            max_new_tokens=args.max_new_tokens, seed=args.seed)
    result = make_pairs(policy, task, args.n, params, grader=grader, threshold=args.threshold,
                        model_name=args.model, split=args.split)
    out = args.out or f"pairs-{Path(task.name).stem}"
    paths = write_pairs(result, out)
    print(f"wrote {paths['pairs']} ({len(result.preference)} pairs) and {paths['kto']} "
          f"({len(result.feedback)} KTO rows)")


def register(subparsers) -> None:
    p = subparsers.add_parser("pairs", help="preference + KTO rows from graded samples")
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name or run")
    p.add_argument("--task", required=True, help="gsm8k | arithmetic | ifeval-like | FILE.jsonl")
    p.add_argument("--split", default="train")
    p.add_argument("--data", default="", help="local data file for the task (e.g. GSM8K)")
    p.add_argument("--task-grader", default="", help="grader of a file task")
    p.add_argument("--grader", default="", help="grade with this instead of the task's "
                   "grader: rule name, grader JSON (a judge makes this RLAIF)")
    p.add_argument("-n", type=int, default=4, help="samples per prompt")
    p.add_argument("--limit", type=int, default=0, help="first N prompts only")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--threshold", type=float, default=1.0,
                   help="score that passes when the grader sets no pass/fail")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="output directory (default pairs-<task>)")
    p.add_argument("--root", default="runs")
    p.set_defaults(func=cmd_pairs)
