"""`corral synth rejection|distill|self-instruct`: training data made by models.

    corral synth rejection --model smollm2-135m-instruct --task gsm8k \\
        --data ../shared/data/gsm8k/train.jsonl -n 8 --limit 200 --out data/rs.jsonl
    corral synth distill --model TEACHER --task arithmetic --few-shot 4 -n 8 \\
        --rule majority --out data/distill.jsonl
    corral synth self-instruct --seeds seeds.jsonl --model MODEL --num 50 --out data/si.jsonl
"""
from __future__ import annotations

from corral.core.errors import CorralError


def _task(args):
    from corral.data.readers import load_items
    from corral.tasks import Task, get_task

    if args.split == "unseen":
        raise CorralError("--split unseen: training data made from the unseen split would leak "
                          "it into training; use --split train")
    if args.task.endswith((".jsonl", ".json", ".parquet")) and not args.task_grader:
        if args.kind == "rejection":
            raise CorralError(f"rejection sampling on {args.task} needs --task-grader GRADER to "
                              "tell passing samples from failing ones")
        items = load_items(args.task)[:args.limit or None]  # prompts only: distillation
        if not items:
            raise CorralError(f"{args.task}: no prompts")
        return Task(name=args.task, items=items, grader=None)
    return get_task(args.task, split=args.split, data=args.data, grader=args.task_grader,
                    limit=args.limit, few_shot=args.few_shot, grader_flag="--task-grader")


def cmd_sample(args) -> None:
    from corral.graders.load import load_grader
    from corral.infer.engine import SamplingParams
    from corral.infer.generators import generator_for
    from corral.synth.recipes import ORCA_SYSTEM, Recipe, synthesize
    from corral.synth.sampling import Teacher

    task = _task(args)
    grader = load_grader(args.grader, root=args.root) if args.grader else task.grader
    params = SamplingParams(n=args.n, temperature=args.temperature, top_p=args.top_p,
                            max_new_tokens=args.max_new_tokens, seed=args.seed)
    system = args.system or (ORCA_SYSTEM if args.orca else "")
    recipe = Recipe(kind=args.kind, rule=args.rule if args.kind == "distill" else "pass",
                    keep=args.keep, min_votes=args.min_votes, require_pass=args.require_pass,
                    star=args.star, round=args.round,
                    teacher=Teacher(system_prompt=system, few_shot=tuple(task.few_shot)))
    if args.kind == "rejection" and args.rounds:
        return _rest_em(args, task, grader, params, recipe)
    if getattr(args, "strategy", "") and args.n != 1:
        raise CorralError(f"--strategy {args.strategy} gives one answer per prompt; drop -n "
                          "(or use -n 1) and let the strategy spend the samples")
    generator = generator_for(args.model, root=args.root, batch_size=args.engine_batch,
                              key="--model")
    if getattr(args, "strategy", ""):
        generator = _strategy_teacher(args, generator)
    synthesize(generator, task, args.out, params, recipe, grader=grader,
               batch_size=args.batch_size, samples=args.samples)


def _strategy_teacher(args, generator):
    """The teacher as an inference strategy over the loaded model (a judge scorer is the
    model itself; other scorers need reference fields a new prompt does not have)."""
    from corral.cli.strategies import JudgeScorer
    from corral.strategies import parse_strategy
    from corral.strategies.generator import StrategyGenerator

    strategy = parse_strategy(args.strategy, max_new_tokens=args.max_new_tokens,
                              temperature=args.temperature or 0.8, seed=args.seed)
    if strategy.scorer_spec == "judge":
        strategy.scorer = JudgeScorer(generator, args.max_new_tokens)
    elif strategy.scorer_spec or strategy.kind == "best-of-n":
        raise CorralError(f"--strategy {args.strategy}: a teacher's best-of-n picks with the "
                          "model as judge; write best-of-n:N:judge")
    return StrategyGenerator(strategy, generator)


def _rest_em(args, task, grader, params, recipe) -> None:
    """--rounds K: sample from the latest student, keep what passes, SFT, measure dev."""
    from dataclasses import replace
    from pathlib import Path

    from corral.core.config import load_config
    from corral.core.sections import SFTConfig
    from corral.eval.evaluate import compare_models
    from corral.infer.engine import SamplingParams
    from corral.infer.generators import generator_for
    from corral.methods.rest_em import RestEM
    from corral.methods.runner import run
    from corral.methods.sft import METHOD
    from corral.store.runs import run_model_path
    from corral.synth.recipes import synthesize
    from corral.tasks import get_task

    dev = get_task(args.task, split="dev", data=args.dev_data or args.data,
                   grader=args.task_grader, limit=args.dev_limit, grader_flag="--task-grader")
    greedy = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
    stem, prefix = str(Path(args.out).with_suffix("")), args.run_prefix or Path(args.out).stem

    def sample(model, r):
        out = f"{stem}.round{r}.jsonl"
        generator = generator_for(model, root=args.root, batch_size=args.engine_batch,
                                  key="--model")
        synthesize(generator, task, out, params, replace(recipe, round=r), grader=grader,
                   batch_size=args.batch_size)
        return out

    def train(data, start, r):
        name = f"{prefix}-round{r}"
        folder = Path(args.root) / name
        if (folder / "final").is_dir():  # a rerun of a killed loop: this round is trained
            return name
        resume = ["run.resume=true"] if (folder / "checkpoints").is_dir() else []
        cfg = load_config(SFTConfig, None, [f"model.name={start}", f"data.train={data}",
                                            f"run.name={name}", f"run.root={args.root}",
                                            *args.train, *resume])
        run(METHOD, cfg)
        return name

    def evaluate(model):
        path = run_model_path(model, args.root)
        return compare_models([path], dev, greedy, (1,))[path]["mean"]

    loop = RestEM(args.rounds, args.model, from_last=args.from_last, min_gain=args.min_gain)
    loop.run(sample, train, evaluate, record=f"{stem}.rounds.json")
    best = loop.best()
    print(f"rest-em: best round {best.round} ({best.model}), dev {best.dev:.3f}; "
          f"rounds in {stem}.rounds.json")


def cmd_self_instruct(args) -> None:
    from corral.infer.engine import SamplingParams
    from corral.infer.generators import generator_for
    from corral.synth.self_instruct import Filters, self_instruct

    filters = Filters(max_rouge=args.max_rouge, min_words=args.min_words,
                      max_words=args.max_words, blocklist=tuple(args.block or ()))
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p,
                            max_new_tokens=args.max_new_tokens, seed=args.seed)
    generator = generator_for(args.model, root=args.root, batch_size=args.engine_batch,
                              key="--model")
    self_instruct(generator, args.seeds, args.out, args.num, params, filters,
                  in_context=args.in_context, evolve=args.evolve, seed=args.seed)


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
    p.add_argument("--task-grader", default="", help="grader of a file task")
    p.add_argument("--grader", default="", help="grade with this instead of the task's grader")
    p.add_argument("--limit", type=int, default=0, help="first N prompts only")
    p.add_argument("--few-shot", type=int, default=0,
                   help="worked examples the generator sees (the records keep the plain prompt)")
    p.add_argument("--system", default="", help="system prompt the generator sees")
    p.add_argument("--keep", type=int, default=1, help="samples kept per prompt at most")
    p.add_argument("--round", type=int, default=1, help="round number, recorded in lineage")
    p.add_argument("--samples", default="", help="graded samples file (the resumable job; "
                   "default OUT.samples.jsonl): reuse one to select again without sampling")
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
