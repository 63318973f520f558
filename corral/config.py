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

from corral.errors import CorralError


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
class SFTConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
