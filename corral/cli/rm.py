"""`corral rm [config.yaml] [key=value ...]`: train a Bradley–Terry reward model on pairs."""
from __future__ import annotations


def cmd_rm(args) -> None:
    from corral.cli.app import config_and_overrides
    from corral.core.config import load_config
    from corral.methods.rm import RMConfig, run_rm

    args.config, overrides = config_and_overrides(args)
    cfg = load_config(RMConfig, args.config, overrides)
    store = run_rm(cfg)
    print(f"done: {store.path}/final (as a grader: "
          f'{{"type": "reward_model", "model": "{store.path}"}})')


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rm", help="train a reward model (Bradley–Terry) on preference pairs",
        description="Reward model training. Config keys: model.*, lora.*, data.*, train.*, "
        "run.*, rm.margin, rm.center_coef, rm.holdout (see docs/reward.md).")
    p.add_argument("config", nargs="?", help="YAML config file (optional)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. rm.center_coef=0.01")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its latest checkpoint")
    p.set_defaults(func=cmd_rm)
