"""Supervised fine-tuning: wires data, policy, objective and the one training loop.

    from corral.config import SFTConfig, load_config
    store = run_sft(load_config(SFTConfig, "sft.yaml", ["train.lr=2e-5"]))
"""
from __future__ import annotations

import math

import torch

from corral.config import SFTConfig, to_dict, validate_choices
from corral.data.batching import pack
from corral.data.readers import load_sft_records
from corral.data.render import check_template, render
from corral.errors import CorralError
from corral.objectives import SFT
from corral.policy import load_policy
from corral.store import RunStore, new_run_name
from corral.train import DatasetSource, plan, train


def render_all(records, policy, cfg: SFTConfig, template):
    return [render(r, policy.tokenizer, mask=cfg.data.mask, max_length=cfg.data.max_length,
                   template=template) for r in records]


@torch.no_grad()
def heldout_loss(policy, batches) -> dict:
    """Mean NLL and token accuracy over target tokens of the given batches."""
    was_training = policy.model.training
    policy.model.eval()
    total, correct, count = 0.0, 0.0, 0
    for batch in batches:
        logps, n_correct = policy.token_logps(batch.to(policy.device), with_accuracy=True)
        total += float(-logps.sum())
        correct += float(n_correct)
        count += batch.n_loss_tokens
    policy.model.train(was_training)
    if count == 0:
        return {}
    return {"loss": total / count, "token_accuracy": correct / count}


def prepare(cfg: SFTConfig, policy=None):
    """Validate and render everything before any training; returns (policy, train, val)."""
    validate_choices(cfg)
    if not cfg.data.train:
        raise CorralError("no training data: set data.train=FILE (jsonl, json, parquet or HF id)")
    records = load_sft_records(cfg.data.train, cfg.data.max_errors)
    val_records = load_sft_records(cfg.data.validation, cfg.data.max_errors) \
        if cfg.data.validation else []
    policy = policy or load_policy(cfg.model, cfg.lora)
    template = check_template(policy.tokenizer, cfg.model.template or None)
    train_examples = render_all(records, policy, cfg, template)
    val_examples = render_all(val_records, policy, cfg, template)
    return policy, train_examples, val_examples


def describe_plan(cfg: SFTConfig, examples, source) -> dict:
    numbers = plan(cfg.train, source)
    numbers.update({
        "examples": len(examples),
        "truncated": sum(e.truncated for e in examples),
        "train_tokens_per_epoch": sum(len(e.input_ids) for e in examples),
        "target_tokens_per_epoch": sum(sum(e.loss_mask) for e in examples),
    })
    return numbers


def run_sft(cfg: SFTConfig, policy=None, log=print) -> RunStore:
    """Train and return the run's store; `final/` holds the model or adapter."""
    policy, train_examples, val_examples = prepare(cfg, policy)
    batches = pack(train_examples, cfg.train.batch_tokens, shuffle_seed=cfg.train.seed)
    if not batches:
        raise CorralError(f"{cfg.data.train}: no example has a target token; check data.mask")
    val_batches = pack(val_examples, cfg.train.batch_tokens) if val_examples else []
    source = DatasetSource(batches, cfg.train.grad_accum, cfg.train.seed)
    name = cfg.run.name or new_run_name("sft")
    store = RunStore(cfg.run.root, name, keep=cfg.train.keep_checkpoints,
                     report_to=cfg.train.report_to)
    if store.exists() and not cfg.run.resume and store.latest_checkpoint():
        raise CorralError(f"run '{store.path}' already has checkpoints; pass run.resume=true "
                          "to continue it or choose another run.name")
    numbers = describe_plan(cfg, train_examples, source)
    log("plan: " + ", ".join(f"{k}={_fmt(v)}" for k, v in numbers.items()))
    store.write_config(to_dict(cfg))
    data_files = [p for p in (cfg.data.train, cfg.data.validation) if p]
    store.write_lineage(cfg.model.name, data_files, cfg.run.parent,
                        {"method": "sft", "lora": cfg.lora.enabled, "plan": numbers})
    evaluator = (lambda pol, step: heldout_loss(pol, val_batches)) if val_batches else None
    try:
        train(policy, SFT(), source, cfg.train, store, evaluator=evaluator,
              resume=cfg.run.resume)
    finally:
        store.close()
    return store


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) and not math.isnan(value) else value
