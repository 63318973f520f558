"""`corral pairs`: preference + KTO rows from a model's graded samples (a resumable job).

    corral pairs --model smollm2-135m-instruct --task arithmetic -n 4 --out pairs/

The logic is the library's: `corral.synth.pairs.run(PairsOptions(...))`.
"""
from __future__ import annotations


def cmd_pairs(args) -> None:
    from corral.cli.options import options
    from corral.synth.pairs import PairsOptions, run

    result = run(options(PairsOptions, args), log=print)
    files = result.files
    print(f"wrote {files['pairs']} ({len(result.preference)} pairs) and {files['kto']} "
          f"({len(result.feedback)} KTO rows); samples {files['samples']} (resumable)")


def register(subparsers) -> None:
    p = subparsers.add_parser("pairs", help="preference + KTO rows from graded samples")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="generator: model name, run, model dir, or openai:MODEL / "
                   "http://HOST/v1#MODEL (key from OPENAI_API_KEY)")
    p.add_argument("--task", required=True, help="gsm8k | arithmetic | ifeval-like | FILE.jsonl")
    p.add_argument("--split", default="train")
    p.add_argument("--data", default="", help="local data file for the task (e.g. GSM8K)")
    p.add_argument("--grader", default="", help="what grades the samples (a judge makes "
                   "this RLAIF): a rule name, grader JSON, a judge or a reward model; default: "
                   "the task's own grader. A FILE.jsonl task given only --grader takes it as "
                   "its grader")
    p.add_argument("--task-grader", default="", help="the grader a FILE.jsonl task comes with "
                   "(a built-in task has its own and refuses this); it grades the samples "
                   "unless --grader overrides it")
    p.add_argument("-n", type=int, default=4, help="samples per prompt")
    p.add_argument("--limit", type=int, default=0, help="first N prompts only")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--threshold", type=float, default=1.0,
                   help="score that passes when the grader sets no pass/fail")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16,
                   help="prompts per job batch (each batch is saved when done)")
    p.add_argument("--engine-batch", type=int, default=64,
                   help="sequences a local model decodes at once (prompts x samples)")
    p.add_argument("--out", default="", help="output directory (default pairs-<task>)")
    p.add_argument("--root", default="runs")
    p.add_argument("--retry-failed", action="store_true",
                   help="sample again the prompts an earlier run of this job failed on (an "
                   "endpoint that was down); without it they stay failed")
    p.set_defaults(func=cmd_pairs)
