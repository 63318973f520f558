"""`corral dpo | simpo | orpo | kto | pairs`: preference commands (wired into corral/cli.py).

    corral dpo config.yaml dpo.loss=ipo dpo.beta=0.5
    corral kto data.train=kto.jsonl kto.beta=0.1
    corral pairs --model smollm2-135m-instruct --task arithmetic -n 4 --out pairs/
"""
from __future__ import annotations

from functools import partial

from corral.core.errors import CorralError

_KEYS = "Config keys: model.*, lora.*, data.*, train.*, run.*, eval.* and "


def _config(cls, args, forced: list[str]):
    from corral.cli.app import config_and_overrides
    from corral.core.config import load_config

    path, overrides = config_and_overrides(args)
    return load_config(cls, path, forced + overrides)


def cmd_dpo(args, loss: str = "") -> None:
    from corral.methods.dpo import DPOConfig, run_dpo

    cfg = _config(DPOConfig, args, [f"dpo.loss={loss}"] if loss else [])
    if loss and cfg.dpo.loss != loss:
        raise CorralError(f"corral {loss} trains dpo.loss={loss}, but the config asks for "
                          f"dpo.loss={cfg.dpo.loss}; use corral dpo dpo.loss={cfg.dpo.loss}")
    store = run_dpo(cfg)
    print(f"done: {store.path}/final")


def cmd_kto(args) -> None:
    from corral.methods.dpo import KTOConfig, run_kto

    store = run_kto(_config(KTOConfig, args, []))
    print(f"done: {store.path}/final")


def cmd_pairs(args) -> None:
    from pathlib import Path

    from corral.cli.app import run_model_path
    from corral.core.config import ModelConfig
    from corral.infer.engine import SamplingParams
    from corral.synth.pairs import make_pairs, write_pairs
    from corral.model.policy import load_policy
    from corral.tasks import get_task, load_any_grader

    task = get_task(args.task, split=args.split, data=args.data, grader=args.task_grader,
                    limit=args.limit)
    grader = load_any_grader(args.grader) if args.grader else None
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


def _trainer(sub, name: str, help_text: str, keys: str, func) -> None:
    p = sub.add_parser(name, help=help_text, description=f"{help_text}. {_KEYS}{keys} "
                       "(see docs/preference.md).")
    p.add_argument("config", nargs="?", help="YAML config file (optional)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. dpo.beta=0.1")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its latest checkpoint")
    p.set_defaults(func=func)


def register(subparsers) -> None:
    """Add dpo, simpo, orpo, kto and pairs to the `corral` command."""
    _trainer(subparsers, "dpo", "DPO-family preference tuning (sigmoid, ipo, hinge, robust, "
             "norm; simpo and orpo too)", "dpo.*", cmd_dpo)
    _trainer(subparsers, "simpo", "SimPO: reference-free preference tuning (dpo.beta, "
             "dpo.simpo_gamma)", "dpo.*", partial(cmd_dpo, loss="simpo"))
    _trainer(subparsers, "orpo", "ORPO: SFT plus an odds-ratio preference term "
             "(dpo.orpo_lambda)", "dpo.*", partial(cmd_dpo, loss="orpo"))
    _trainer(subparsers, "kto", "KTO on rows labelled good or bad (or on pairs, split)",
             "kto.*", cmd_kto)

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
