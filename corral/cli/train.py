"""`corral <method> [config.yaml] [key=value ...] [--resume RUN]`: one command per registered
training method (sft, dpo, simpo, orpo, kto, rm, rft, grpo, ppo), its --help generated from
the method's config dataclasses."""
from __future__ import annotations

import argparse
from pathlib import Path

from corral.core.errors import CorralError


def config_and_overrides(args) -> tuple:
    """`corral CMD [config.yaml] [key=value ...] [--resume RUN]`: the file is optional;
    --resume RUN becomes run.name=RUN run.resume=true."""
    path, overrides = args.config, list(args.overrides)
    if path and "=" in path and not Path(path).exists():
        path, overrides = None, [path, *overrides]
    if getattr(args, "resume", None):
        overrides += [f"run.name={args.resume}", "run.resume=true"]
    return path, overrides


def load_method_config(method, args):
    """The method's config: defaults <- its forced keys <- file <- overrides; a file or
    override contradicting a forced key (corral simpo with dpo.loss=ipo) is an error."""
    from corral.core.config import load_config

    path, overrides = config_and_overrides(args)
    cfg = load_config(method.config, path, [*method.forced, *overrides])
    for forced in method.forced:
        key, _, value = forced.partition("=")
        section, _, name = key.partition(".")
        got = getattr(getattr(cfg, section), name)
        if str(got) != value:
            raise CorralError(f"corral {method.name} trains {forced}, but the config asks for "
                              f"{key}={got}; {_instead(method, key, got)}")
    return cfg


def _instead(method, key: str, value) -> str:
    from corral.methods import registry

    general = [m.name for _, m in registry().items() if m.config is method.config and not m.forced]
    return f"use corral {general[0]} {key}={value}" if general else f"drop {key}"


def cmd_train(args) -> None:
    from corral.methods import registry
    from corral.methods.runner import run

    method = registry().get(args.command)
    store = run(method, load_method_config(method, args))
    print(f"done: {store.path}/final")


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
        p.add_argument("--resume", metavar="RUN", help="continue RUN from its latest checkpoint")
        p.set_defaults(func=cmd_train)
