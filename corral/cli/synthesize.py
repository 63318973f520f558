"""`corral synth rejection|distill|self-instruct`: training data made by models.

    corral synth rejection --model smollm2-135m-instruct --task gsm8k \\
        --data ../shared/data/gsm8k/train.jsonl -n 8 --limit 200 --out data/rs.jsonl
    corral synth distill --model TEACHER --task arithmetic --few-shot 4 -n 8 \\
        --rule majority --out data/distill.jsonl
    corral synth self-instruct --seeds seeds.jsonl --model MODEL --num 50 --out data/si.jsonl

The logic is the library's: `corral.api.synth` (`rejection`, `distill`, `self_instruct`,
`rest_em`), each taking the typed options these flags fill.
"""
from __future__ import annotations


def cmd_sample(args) -> None:
    from corral.api import synth
    from corral.cli.options import options

    # The library logs its counts as it goes ("samples: ...", "KIND: ... -> OUT").
    if args.kind == "distill":
        synth.distill(options(synth.DistillOptions, args), log=print)
    elif not args.rounds:
        synth.rejection(options(synth.RejectionOptions, args), log=print)
    else:
        result = synth.rest_em(options(synth.RejectionOptions, args), log=print)
        print(f"rest-em: best round {result.best.round} ({result.best.model}), dev "
              f"{result.best.dev:.3f}; rounds in {result.record}")


def cmd_self_instruct(args) -> None:
    from corral.api import synth
    from corral.cli.options import options

    synth.self_instruct(options(synth.SelfInstructOptions, args), log=print)


def _sampling_args(p, n: int, temperature: float) -> None:
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="generator: model name, run, model dir, or openai:MODEL / "
                   "http://HOST/v1#MODEL (key from OPENAI_API_KEY)")
    p.add_argument("-n", type=int, default=n, help="samples per prompt")
    p.add_argument("--temperature", type=float, default=temperature)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16,
                   help="prompts per job batch (each batch is saved when done)")
    p.add_argument("--engine-batch", type=int, default=64,
                   help="sequences a local model decodes at once (prompts x samples)")
    p.add_argument("--out", required=True, help="output .jsonl (a manifest is written beside)")
    p.add_argument("--root", default="runs")


def _task_args(p, kind: str) -> None:
    p.add_argument("--task", required=True, help="gsm8k | arithmetic | ifeval-like | FILE.jsonl")
    p.add_argument("--split", default="train")
    p.add_argument("--data", default="", help="local data file for the task (e.g. GSM8K)")
    p.add_argument("--grader", default="", help="what grades the samples (which are kept): "
                   "a rule name, grader JSON, a judge or a reward model; default: "
                   "the task's own grader. A FILE.jsonl task given only --grader takes it as "
                   "its grader")
    p.add_argument("--task-grader", default="", help="the grader a FILE.jsonl task comes with "
                   "(a built-in task has its own and refuses this); it grades the samples "
                   "unless --grader overrides it, and, with --rounds, the dev split's grader too")
    p.add_argument("--limit", type=int, default=0, help="first N prompts only")
    p.add_argument("--few-shot", type=int, default=0,
                   help="worked examples the generator sees (the records keep the plain prompt)")
    p.add_argument("--system", default="", help="system prompt the generator sees")
    p.add_argument("--program", default="", help="a prompt program saved by `corral prompt "
                   "search` that the generator sees, instead of --system and --few-shot")
    p.add_argument("--keep", type=int, default=1, help="samples kept per prompt at most")
    p.add_argument("--round", type=int, default=1, help="round number, recorded in lineage")
    p.add_argument("--samples", default="", help="graded samples file (the resumable job; "
                   "default OUT.samples.jsonl): reuse one to select again without sampling")
    p.add_argument("--retry-failed", action="store_true",
                   help="sample again the prompts an earlier run of this job failed on (an "
                   "endpoint that was down); without it they stay failed")
    p.set_defaults(func=cmd_sample, kind=kind, rule="pass", min_votes=0.0, require_pass=False,
                   star=False, orca=False)


def register(subparsers) -> None:
    synth = subparsers.add_parser("synth", help="training data made by models")
    sub = synth.add_subparsers(dest="synth_command", required=True)

    p = sub.add_parser("rejection", help="a model's own samples that pass the grader "
                       "(rejection sampling, STaR, ReST-EM)")
    _task_args(p, "rejection")
    _sampling_args(p, n=8, temperature=0.8)
    p.add_argument("--star", action="store_true",
                   help="retry failed prompts with the reference answer as a hint")
    p.add_argument("--rounds", type=int, default=0,
                   help="ReST-EM: K rounds of sample -> keep -> SFT -> dev; stops when dev "
                   "stops improving (0 = only write the data)")
    p.add_argument("--from-last", action="store_true",
                   help="fine-tune each round from the last student (default: from the base)")
    p.add_argument("--min-gain", type=float, default=0.0, help="dev gain a round must beat")
    p.add_argument("--dev-limit", type=int, default=100, help="dev items graded per round")
    p.add_argument("--dev-data", default="", help="data file of the dev split (default --data)")
    p.add_argument("--run-prefix", default="", help="runs are PREFIX-roundR (default OUT stem)")
    p.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                   help="SFT setting for every round, e.g. --train train.epochs=2")

    p = sub.add_parser("distill", help="a teacher's answers as SFT records")
    _task_args(p, "distill")
    _sampling_args(p, n=1, temperature=0.0)
    p.add_argument("--rule", default="first", choices=["first", "majority"],
                   help="first: the teacher's answer; majority: an answer that wins the vote")
    p.add_argument("--min-votes", type=float, default=0.0,
                   help="majority: the winning answer's share must reach this")
    p.add_argument("--require-pass", action="store_true",
                   help="keep only answers the task's grader passes")
    p.add_argument("--orca", action="store_true",
                   help="ask for step-by-step explanations (Orca-style system prompt)")
    p.add_argument("--strategy", default="", help="the teacher answers through an "
                   "inference strategy (refine:1, debate:3x2, majority:8, best-of-n:4:judge; "
                   "docs/strategies.md); -n stays 1")

    p = sub.add_parser("self-instruct", help="new instructions grown from seed tasks")
    p.add_argument("--seeds", required=True, help="seed tasks: JSONL rows with an instruction")
    p.add_argument("--num", type=int, default=50, help="instructions to keep")
    p.add_argument("--in-context", type=int, default=8, help="example tasks per prompt")
    p.add_argument("--max-rouge", type=float, default=0.7,
                   help="drop a new instruction whose ROUGE-L with any in the pool reaches this")
    p.add_argument("--min-words", type=int, default=3)
    p.add_argument("--max-words", type=int, default=150)
    p.add_argument("--block", action="append", help="drop instructions with this keyword")
    p.add_argument("--evolve", action="store_true",
                   help="Evol-Instruct: also mutate kept instructions (deepen, constrain, ...)")
    _sampling_args(p, n=1, temperature=1.0)
    p.set_defaults(func=cmd_self_instruct)
