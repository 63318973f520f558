"""`corral <method> [config.yaml] [key=value ...] [--resume RUN]`: one command per registered
training method (sft, dpo, simpo, orpo, kto, rm, rft, grpo, ppo), its --help generated from
the method's config dataclasses."""
from __future__ import annotations

import argparse

from corral.cli.options import options


def cmd_train(args) -> None:
    from corral.methods.commands import TrainOptions, train

    result = train(options(TrainOptions, args, overrides=tuple(args.overrides),
                           allow_change=tuple(args.allow_change)))
    print(f"done: {result.run_dir}/final")


def register(subparsers) -> None:
    """One subcommand per training method."""
    from corral.core.config import help_text
    from corral.methods import registry

    for name, method in registry().items():
        p = subparsers.add_parser(
            name, help=method.summary, formatter_class=argparse.RawDescriptionHelpFormatter,
            description=f"{method.summary}.", epilog=f"config keys ({method.doc}):\n"
            + help_text(method.config))
        p.add_argument("config", nargs="?", help="YAML config file (optional)")
        p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=2e-5")
        p.add_argument("--resume", metavar="RUN", help="continue RUN from its latest "
                       "checkpoint with its saved config (other keys given here must match it)")
        p.add_argument("--allow-change", metavar="KEY", action="append", default=[],
                       help="with --resume: let KEY differ from the saved config (repeat for "
                       "several; data.train also allows new contents); recorded in the run")
        p.set_defaults(func=cmd_train)
