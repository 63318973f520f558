"""The config sections every method shares, each validating itself, and `MethodConfig`, the
base every method's config extends with its own section:

    @dataclass(frozen=True)
    class DPOConfig(MethodConfig):
        dpo: DPOSection = opt(DPOSection(), "DPO-family hyper-parameters")
"""
from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass

from corral.core.config import check_choice, opt, require
from corral.core.errors import CorralError

DTYPES = ("auto", "float32", "bfloat16", "float16")
MASKS = ("assistant", "all", "last")
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "no", "bf16", "fp16")
SINKS = ("none", "tensorboard", "wandb", "trackio")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class ModelConfig:
    name: str = opt("smollm2-135m-instruct",
                    "hub id, local HF dir, saved adapter, .gguf file, run, or embedded name")
    dtype: str = opt("auto", "auto (fp32 on CPU, bf16 on GPU) | float32 | bfloat16 | float16")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N | mps")
    template: str = opt("", "chat template: a .jinja file or inline Jinja; '' = the tokenizer's")
    revision: str = opt("", "hub revision")
    trust_remote_code: bool = opt(False, "allow the model's own Python code from the hub")

    def validate(self) -> None:
        check_choice("model.dtype", self.dtype, DTYPES)
        require([(bool(_DEVICE.match(self.device)),
                  f"model.device={self.device!r} must be auto, cpu, mps, cuda or cuda:N")])


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = opt(True, "false = full fine-tuning")
    r: int = opt(16, "adapter rank")
    alpha: int = opt(32, "scale alpha/r of the adapter's update")
    dropout: float = opt(0.0, "dropout on the adapter's input")
    target_modules: tuple = opt(("all-linear",), "all-linear, or module names (q_proj, v_proj)")

    def validate(self) -> None:
        require([(self.r >= 1, f"lora.r={self.r} must be a whole number >= 1"),
                  (self.alpha > 0, f"lora.alpha={self.alpha} must be > 0"),
                  (0 <= self.dropout < 1, f"lora.dropout={self.dropout} must be in [0, 1)"),
                  (len(self.target_modules) > 0,
                   "lora.target_modules is empty; use all-linear or module names")])


# data.train's type: a string (one file, kept as given) or a list (a mixture, kept as a tuple
# of 'PATH[:WEIGHT]'); named so the config reference and --help show it in words.
TrainData = typing.NewType("str or list", object)


@dataclass(frozen=True)
class DataFile:
    """One file of data.train and how many times each of its rows is drawn per epoch."""
    path: str
    weight: float = 1.0


def data_files(train) -> list[DataFile]:
    """data.train as files. A string is one file, exactly as given (weight 1). A list mixes
    several: each `PATH`, `PATH:WEIGHT` or {path, weight}. A weight is how many times each
    row of that file is drawn per epoch: 2 draws every row twice, 0.5 a fixed half of the
    rows (chosen by a seed from the file's path), 1.5 every row once and that half again."""
    if isinstance(train, str):
        return [DataFile(train)] if train else []
    files = [_data_file(entry, k) for k, entry in enumerate(train or (), 1)]
    paths = [f.path for f in files]
    twice = next((p for p in paths if paths.count(p) > 1), None)
    if twice:
        raise CorralError(f"data.train names {twice} twice; give it once, with a weight "
                          f"({twice}:2 draws each row twice)")
    return files


def describe_train(train) -> str:
    """data.train for a message: the file, or the mixture's files joined by '+'."""
    return train if isinstance(train, str) else " + ".join(str(f) for f in train or ())


def train_spec(value):
    """data.train as the config keeps it: a string as given, or a mixture as a tuple of
    'PATH' / 'PATH:WEIGHT' strings (hashable, and saved back as the same list)."""
    if isinstance(value, str) or value is None:
        return value or ""
    if not isinstance(value, (list, tuple)):
        raise CorralError(f"data.train must be a file or a list of files (PATH or "
                          f"PATH:WEIGHT); got {value!r}")
    return tuple(f.path if f.weight == 1 else f"{f.path}:{f.weight:g}"
                 for f in data_files(value))


def _data_file(entry, k: int) -> DataFile:
    where = f"data.train entry {k}"
    if isinstance(entry, dict):
        unknown = set(entry) - {"path", "weight"}
        if unknown or not isinstance(entry.get("path"), str) or not entry["path"]:
            raise CorralError(f"{where} {entry!r}: give {{path: FILE, weight: W}} "
                              "(weight optional, default 1)")
        return DataFile(entry["path"], _weight(entry.get("weight", 1), where))
    if not isinstance(entry, str) or not entry.strip():
        raise CorralError(f"{where} {entry!r}: give a file, as PATH or PATH:WEIGHT")
    path, _, tail = entry.strip().rpartition(":")
    try:
        float(tail)
    except ValueError:  # no weight: a colon of the path itself (owner/name:split, C:\...)
        return DataFile(entry.strip())
    return DataFile(path, _weight(tail, where)) if path else DataFile(entry.strip())


def _weight(value, where: str) -> float:
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = math.nan
    if isinstance(value, bool) or not math.isfinite(weight) or weight <= 0:
        raise CorralError(f"{where}: weight {value!r} must be a number > 0 (2 draws each row "
                          "twice, 0.5 half of the rows); drop the file to leave it out")
    return weight


@dataclass(frozen=True)
class DataConfig:
    train: TrainData = opt("", ".jsonl | .json | .parquet | HF dataset id; or a list mixing "
                             "several, [a.jsonl,b.jsonl:0.5], each PATH or PATH:WEIGHT "
                             "(weight = draws of each row per epoch: 2 twice, 0.5 a fixed "
                             "half)")
    validation: str = opt("", "held-out rows of the same format (loss and metrics)")
    task: str = opt("", "train on a built-in task's training items, rendered as eval renders "
                    "them (arithmetic, gsm8k) instead of data.train")
    task_data: str = opt("", "the task's local data file, when it has one (gsm8k)")
    limit: int = opt(0, "training rows/prompts used (0 = all)")
    max_length: int = opt(1024, "tokens; longer examples are truncated (reported first)")
    mask: str = opt("assistant", "assistant | all | last: which tokens carry loss")
    max_errors: int = opt(20, "bad rows reported before the run stops")
    unseen: str = opt("", "a split file whose rows must never be trained on")

    def __post_init__(self):
        object.__setattr__(self, "train", train_spec(self.train))

    def validate(self) -> None:
        check_choice("data.mask", self.mask, MASKS)
        require([(self.max_length >= 1, f"data.max_length={self.max_length} must be >= 1"),
                  (self.max_errors >= 1, f"data.max_errors={self.max_errors} must be >= 1"),
                  (self.limit >= 0, f"data.limit={self.limit} must be >= 0 (0 = all)"),
                  (not (self.task and self.train),
                   "set data.train or data.task, not both")])


@dataclass(frozen=True)
class TrainConfig:
    lr: float = opt(2e-4, "peak learning rate")
    epochs: float = opt(1.0, "passes over the data")
    max_steps: int = opt(-1, "> 0 overrides epochs")
    batch_tokens: int = opt(4096, "token budget of one packed micro-batch")
    grad_accum: int = opt(1, "micro-batches per optimizer step")
    schedule: str = opt("cosine", "cosine | linear | constant")
    warmup_ratio: float = opt(0.03, "share of steps warming up linearly")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    betas: tuple = opt((0.9, 0.999), "AdamW betas")
    max_grad_norm: float = opt(1.0, "gradient clipping; 0 = no clipping")
    mixed_precision: str = opt("auto", "auto | no | bf16 | fp16")
    seed: int = opt(0, "seed of data order, LoRA init and sampling")
    deterministic: bool = opt(False, "deterministic kernels (slower)")
    log_every: int = opt(1, "steps between metric rows")
    eval_every: int = opt(0, "steps; 0 = only at the end")
    save_every: int = opt(0, "steps; 0 = only at the end")
    keep_checkpoints: int = opt(2, "checkpoints kept (older ones pruned)")
    report_to: str = opt("none", "none | tensorboard | wandb | trackio, or several "
                         "comma-separated (tensorboard,wandb)")
    progress: bool = opt(True, "progress bar")

    def validate(self) -> None:
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_choice("train.mixed_precision", self.mixed_precision, PRECISIONS)
        for sink in sinks(self.report_to):
            check_choice("train.report_to", sink, SINKS)
        require([
            (self.lr > 0, f"train.lr={self.lr} must be > 0"),
            (self.batch_tokens > 0, f"train.batch_tokens={self.batch_tokens} must be > 0"),
            (self.grad_accum > 0, f"train.grad_accum={self.grad_accum} must be > 0"),
            (self.max_steps > 0 or self.epochs > 0,
             "train.epochs must be > 0 (or train.max_steps)"),
            (0 <= self.warmup_ratio <= 1,
             f"train.warmup_ratio={self.warmup_ratio} must be in [0, 1]"),
            (self.max_grad_norm >= 0, "train.max_grad_norm must be >= 0"),
            (self.log_every >= 1 and min(self.eval_every, self.save_every) >= 0,
             "train.log_every must be >= 1, train.eval_every and save_every >= 0"),
            (self.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1"),
            (_betas_ok(self.betas), f"train.betas={list(self.betas)} must be two numbers in "
             "[0, 1), e.g. [0.9, 0.999]"),
        ])


def sinks(report_to: str) -> list[str]:
    """train.report_to as names: one, or several comma-separated ('none' for none)."""
    return [name.strip() for name in str(report_to).split(",") if name.strip()] or ["none"]


def _betas_ok(betas) -> bool:
    try:
        return len(betas) == 2 and all(0 <= float(b) < 1 for b in betas)
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class RunConfig:
    name: str = opt("", "'' = <command>-<timestamp>")
    root: str = opt("runs", "folder holding the runs")
    resume: bool = opt(False, "continue run.name from its latest checkpoint, with its saved "
                       "config")
    allow_change: tuple = opt((), "keys a resume may change (e.g. train.lr, data.train for new "
                              "contents); recorded in the run's resumes.jsonl")
    parent: str = opt("", "run this one starts from (lineage)")


@dataclass(frozen=True)
class EvalConfig:
    """Graded evaluation inside training (every train.eval_every steps and at the end)."""
    task: str = opt("", "gsm8k | arithmetic | ifeval-like | FILE.jsonl ('' = loss only)")
    split: str = opt("dev", "the task's split")
    data: str = opt("", "the task's local data file, when it has one")
    grader: str = opt("", "for a file task: grader JSON or a rule name", inline_json=True)
    n: int = opt(1, "samples per item")
    k: tuple = opt((1,), "pass@k / maj@k reported")
    limit: int = opt(50, "items")
    temperature: float = opt(0.0, "sampling temperature (0 = greedy)")
    max_new_tokens: int = opt(256, "tokens generated per sample")

    def validate(self) -> None:
        require([(self.n >= 1, f"eval.n={self.n} must be >= 1"),
                  (self.limit >= 0, f"eval.limit={self.limit} must be >= 0"),
                  (self.temperature >= 0, f"eval.temperature={self.temperature} must be >= 0"),
                  (self.max_new_tokens >= 1, "eval.max_new_tokens must be >= 1"),
                  (all(str(k).isdigit() and int(k) >= 1 for k in self.k),
                   f"eval.k={list(self.k)} must be whole numbers >= 1")])


@dataclass(frozen=True)
class MethodConfig:
    """The shared sections; a method's config adds its own section (dpo, kto, rm, rl, ppo)."""
    model: ModelConfig = opt(ModelConfig(), "the model to train")
    lora: LoraConfig = opt(LoraConfig(), "LoRA adapter (or full fine-tuning)")
    data: DataConfig = opt(DataConfig(), "training data")
    train: TrainConfig = opt(TrainConfig(), "the optimisation loop")
    run: RunConfig = opt(RunConfig(), "the run directory")
    eval: EvalConfig = opt(EvalConfig(), "graded evaluation during training")


@dataclass(frozen=True)
class SFTConfig(MethodConfig):
    """Supervised fine-tuning uses the shared sections only."""
