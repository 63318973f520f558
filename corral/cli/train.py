"""`corral <method> [config.yaml] [key=value ...] [--resume RUN]`: one command per registered
training method (sft, dpo, simpo, orpo, kto, rm, rft, grpo, ppo), its --help generated from
the method's config dataclasses with the defaults a run really gets (after the keys the
command forces and the presets they pick: `corral ppo` shows rl.n=1, rl.kl_coef=0.05)."""
from __future__ import annotations

import argparse

from corral.cli.options import options


def cmd_train(args) -> None:
    from corral.methods.commands import TrainOptions, train

    result = train(options(TrainOptions, args, overrides=tuple(args.overrides),
                           allow_change=tuple(args.allow_change)))
    print(f"done: {result.run_dir}/final")


class OverridesAnywhere(argparse.ArgumentParser):
    """A training command's parser: key=value overrides may stand before and after its flags
    (`corral rft data.task=arithmetic --allow-unsandboxed-graders rl.n=4`), which argparse
    alone refuses once a `*` positional has been matched."""
    _inner = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inner:  # parse_known_intermixed_args calls back here on older Pythons
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def default_config(method):
    """The config `corral <method>` runs with when nothing is set: the class defaults, then the
    method's forced keys, then the preset those pick (what --help and docs/config.md show)."""
    from corral.methods.commands import TrainOptions, load_method_config

    return load_method_config(method, TrainOptions(method.name))


def method_help(method) -> str:
    """The epilog of `corral <method> --help`: every key with its effective default."""
    from corral.core.config import help_text

    forced = "".join(f"\n`corral {method.name}` always sets {f}." for f in method.forced)
    return (f"config keys ({method.doc or 'docs/config.md'}), with the defaults this command "
            f"runs with:{forced}\n" + help_text(method.config, default_config(method)))


def register(subparsers, names=None) -> None:
    """One subcommand per training method (`names`: these, in this order; default all)."""
    from corral.methods import registry

    for name in names if names is not None else registry().names():
        method = registry().get(name)
        p = subparsers.add_parser(
            name, help=method.summary, formatter_class=argparse.RawDescriptionHelpFormatter,
            description=f"{method.summary}.", epilog=method_help(method))
        p.add_argument("config", nargs="?", help="YAML config file (optional; examples/ has "
                       "one per method family)")
        p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=2e-5")
        p.add_argument("--resume", metavar="RUN", help="continue RUN from its latest "
                       "checkpoint with its saved config (other keys given here must match it)")
        p.add_argument("--allow-change", metavar="KEY", action="append", default=[],
                       help="with --resume: let KEY differ from the saved config (repeat for "
                       "several; data.train also allows new contents); recorded in the run")
        p.set_defaults(func=cmd_train)
        p.__class__ = OverridesAnywhere  # add_parser builds every subparser of one class
