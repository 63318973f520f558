"""`corral <method> [config.yaml] [key=value ...] [--resume RUN]` as a library call: the one
way to start (or resume) a training run of any registered method, for the CLI and the service.

    from corral.methods.commands import TrainOptions, train
    result = train(TrainOptions("sft", overrides=("data.train=chat.jsonl", "train.epochs=1")))
    result.run_dir  # runs/<name>; result.run_dir / "final" is the trained model
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.core.errors import CorralError


@dataclass(frozen=True)
class TrainOptions:
    """command: the method's name (sft, dpo, simpo, orpo, kto, rm, rft, grpo, ppo); config: an
    optional YAML file; overrides: key=value strings, applied after the file; resume: a run
    name or directory to continue; allow_change: keys that may differ from the resumed run's
    saved config."""
    command: str
    config: str | None = None
    overrides: tuple = ()
    resume: str | None = None
    allow_change: tuple = ()


@dataclass(frozen=True)
class TrainResult:
    method: str
    run_dir: Path  # the run folder; its `final/` holds the model


def config_and_overrides(opts: TrainOptions) -> tuple:
    """The file is optional (a first argument holding `=` that is not a file is an override);
    `resume` becomes run.name/run.root of that run and run.resume=true."""
    path, overrides = opts.config, list(opts.overrides)
    if path and "=" in path and not Path(path).exists():
        path, overrides = None, [path, *overrides]
    if opts.resume:
        run = _resume_target(opts.resume, path, overrides)
        overrides += [f"run.root={run.parent}", f"run.name={run.name}", "run.resume=true"]
    if opts.allow_change:
        overrides.append(f"run.allow_change=[{','.join(opts.allow_change)}]")
    return path, overrides


def _resume_target(name: str, path, overrides) -> Path:
    """The run `resume` names: under run.root (from the overrides or the file) or a run dir."""
    from corral.core.config import read_yaml
    from corral.methods.resume import find_run

    root = next((o.partition("=")[2] for o in reversed(overrides)
                 if o.startswith("run.root=")), None)
    if root is None:
        root = str((read_yaml(path).get("run") or {}).get("root", "runs")) if path else "runs"
    return find_run(name, root)


def load_method_config(method, opts: TrainOptions):
    """The method's config: defaults <- its forced keys <- the resumed run's saved config <-
    file <- overrides; a file or override contradicting a forced key (corral simpo with
    dpo.loss=ipo) is an error."""
    from corral.core.config import load_config
    from corral.methods.resume import saved_config

    path, overrides = config_and_overrides(opts)
    base = saved_config(_resume_target(opts.resume, path, overrides)) if opts.resume else None
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


def train(opts: TrainOptions) -> TrainResult:
    """Validate the config, then run the method through the one run chain (runner.run)."""
    from corral.methods import registry
    from corral.methods.runner import run

    method = registry().get(opts.command)
    store = run(method, load_method_config(method, opts))
    return TrainResult(method.name, Path(store.path))
