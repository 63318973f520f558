"""Configuration: frozen dataclasses; defaults <- YAML file <- dotted CLI overrides.

    cfg = load_config(SFTConfig, "sft.yaml", ["train.lr=2e-5", "lora.r=16"])

Unknown or misspelt keys are rejected with a did-you-mean (stdlib + yaml only).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field

from corral.core.errors import CorralError


@dataclass(frozen=True)
class ModelConfig:
    name: str = "smollm2-135m-instruct"  # hub id, local HF dir, .gguf file, or embedded name
    dtype: str = "auto"  # auto (fp32 on CPU, bf16 on GPU) | float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    template: str = ""  # chat template: a .jinja file or inline Jinja; "" = the tokenizer's
    revision: str = ""  # hub revision
    trust_remote_code: bool = False


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = True  # false = full fine-tuning
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple = ("all-linear",)  # or names such as q_proj, v_proj


@dataclass(frozen=True)
class DataConfig:
    train: str = ""  # .jsonl | .json | .parquet | HF dataset id
    validation: str = ""
    max_length: int = 1024  # tokens; longer examples are truncated (reported before training)
    mask: str = "assistant"  # assistant | all | last: which tokens carry loss
    max_errors: int = 20  # bad rows reported before the run stops
    unseen: str = ""  # a split file whose rows must never be trained on


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_tokens: int = 4096  # token budget of one packed micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    schedule: str = "cosine"  # cosine | linear | constant
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    max_grad_norm: float = 1.0  # 0 = no clipping
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16
    seed: int = 0
    deterministic: bool = False
    log_every: int = 1
    eval_every: int = 0  # steps; 0 = only at the end
    save_every: int = 0  # steps; 0 = only at the end
    keep_checkpoints: int = 2
    report_to: str = "none"  # none | tensorboard | wandb | trackio
    progress: bool = True


@dataclass(frozen=True)
class RunConfig:
    name: str = ""  # "" = <command>-<timestamp>
    root: str = "runs"
    resume: bool = False
    parent: str = ""  # run this one starts from (lineage)


@dataclass(frozen=True)
class EvalConfig:
    """Graded evaluation inside training (every train.eval_every steps and at the end)."""
    task: str = ""  # gsm8k | arithmetic | ifeval-like | FILE.jsonl ("" = loss only)
    split: str = "dev"
    data: str = ""  # the task's local data file, when it has one
    grader: str = ""  # for a file task: grader JSON or a rule name
    n: int = 1  # samples per item
    k: tuple = (1,)  # pass@k / maj@k reported
    limit: int = 50  # items
    temperature: float = 0.0
    max_new_tokens: int = 256


@dataclass(frozen=True)
class SFTConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _fields(cls) -> dict:
    return {f.name: f for f in dataclasses.fields(cls)}


def _did_you_mean(key: str, options) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(options)}"


def _coerce(value, hint, key: str):
    """Turn YAML / CLI values into the field's declared type, or say what was expected."""
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise CorralError(f"config key '{key}' must be true or false, got {value!r}")
    if hint in (int, float):
        try:
            number = hint(value) if not isinstance(value, str) else hint(float(value))
        except (TypeError, ValueError):
            raise CorralError(f"config key '{key}' must be a number, got {value!r}") from None
        if hint is int and isinstance(value, (str, float)) and float(value) != number:
            raise CorralError(f"config key '{key}' must be a whole number, got {value!r}")
        if isinstance(number, float) and not math.isfinite(number):
            raise CorralError(f"config key '{key}' must be finite, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, (dict, list)):
            raise CorralError(f"config key '{key}' must be a string, got {value!r}")
        if isinstance(value, bool):  # YAML reads a bare no/yes as a bool
            return "no" if value is False else "yes"
        return "" if value is None else str(value)
    if hint is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.strip("[]()").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise CorralError(f"config key '{key}' must be a list, got {value!r}")
        return tuple(value)
    return value


def _build(cls, data: dict, prefix: str = ""):
    if not isinstance(data, dict):
        raise CorralError(f"config section '{prefix.rstrip('.') or 'top level'}' must be a mapping")
    fields = _fields(cls)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise CorralError(f"unknown config key '{prefix}{key}'{_did_you_mean(key, fields)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, prefix + key)
    return cls(**kwargs)


def _parse_scalar(text: str):
    import yaml

    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_override(data: dict, override: str) -> None:
    """Set `a.b.c=value` inside a nested dict (the value parsed as YAML)."""
    if "=" not in override:
        raise CorralError(f"override '{override}' must look like key=value, e.g. train.lr=2e-5")
    key, _, value = override.partition("=")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise CorralError(f"override '{override}': '{part}' is not a section")
    node[parts[-1]] = _parse_scalar(value)


def load_config(cls, path: str | None = None, overrides: list[str] = ()):
    """Defaults <- YAML file <- dotted overrides; unknown keys rejected with a did-you-mean."""
    import yaml

    data: dict = {}
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle) or {}
        except FileNotFoundError:
            raise CorralError(f"config file '{path}' does not exist; check the path") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else path
            raise CorralError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(data, dict):
            raise CorralError(f"config file '{path}' must hold a mapping of sections")
    for override in overrides:
        apply_override(data, override)
    return _build(cls, data)


def to_dict(cfg) -> dict:
    """A plain dict (tuples as lists) for saving as YAML / JSON."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(cfg))


def validate_choices(cfg) -> None:
    """Reject values outside the documented choices, naming the key."""
    checks = [
        ("model.dtype", cfg.model.dtype, ("auto", "float32", "bfloat16", "float16")),
        ("data.mask", cfg.data.mask, ("assistant", "all", "last")),
        ("train.schedule", cfg.train.schedule, ("cosine", "linear", "constant")),
        ("train.mixed_precision", cfg.train.mixed_precision, ("auto", "no", "bf16", "fp16")),
        ("train.report_to", cfg.train.report_to, ("none", "tensorboard", "wandb", "trackio")),
    ]
    for key, value, choices in checks:
        if value not in choices:
            raise CorralError(f"config key '{key}' is '{value}'{_did_you_mean(value, choices)}"
                              .replace("valid keys", "valid values"))
    if cfg.train.lr <= 0 or cfg.train.batch_tokens <= 0 or cfg.train.grad_accum <= 0:
        raise CorralError("train.lr, train.batch_tokens and train.grad_accum must be positive")
