"""`corral <method> [config.yaml] [key=value ...] [--resume RUN]`: one command per registered
training method (sft, dpo, simpo, orpo, kto, rm, rft, grpo, ppo), its --help generated from
the method's config dataclasses."""
from __future__ import annotations

import argparse
from pathlib import Path

from corral.core.errors import CorralError


def config_and_overrides(args) -> tuple:
    """`corral CMD [config.yaml] [key=value ...] [--resume RUN] [--allow-change KEY]`: the
    file is optional; --resume RUN becomes run.name/run.root of RUN and run.resume=true."""
    path, overrides = args.config, list(args.overrides)
    if path and "=" in path and not Path(path).exists():
        path, overrides = None, [path, *overrides]
    if getattr(args, "resume", None):
        run = _resume_target(args.resume, path, overrides)
        overrides += [f"run.root={run.parent}", f"run.name={run.name}", "run.resume=true"]
    if getattr(args, "allow_change", None):
        overrides.append(f"run.allow_change=[{','.join(args.allow_change)}]")
    return path, overrides


def _resume_target(name: str, path, overrides) -> Path:
    """The run --resume names: under run.root (from the overrides or the file) or a run dir."""
    from corral.core.config import read_yaml
    from corral.methods.resume import find_run

    root = next((o.partition("=")[2] for o in reversed(overrides)
                 if o.startswith("run.root=")), None)
    if root is None:
        root = str((read_yaml(path).get("run") or {}).get("root", "runs")) if path else "runs"
    return find_run(name, root)


def load_method_config(method, args):
    """The method's config: defaults <- its forced keys <- the resumed run's saved config <-
    file <- overrides; a file or override contradicting a forced key (corral simpo with
    dpo.loss=ipo) is an error."""
    from corral.core.config import load_config
    from corral.methods.resume import saved_config

    path, overrides = config_and_overrides(args)
    base = saved_config(_resume_target(args.resume, path, overrides)) \
        if getattr(args, "resume", None) else None
    cfg = load_config(method.config, path, [*method.forced, *overrides], base=base)
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
        p.add_argument("--resume", metavar="RUN", help="continue RUN from its latest "
                       "checkpoint with its saved config (other keys given here must match it)")
        p.add_argument("--allow-change", metavar="KEY", action="append", default=[],
                       help="with --resume: let KEY differ from the saved config (repeat for "
                       "several; data.train also allows new contents); recorded in the run")
        p.set_defaults(func=cmd_train)
