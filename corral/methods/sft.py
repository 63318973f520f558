"""Supervised fine-tuning: wires data, policy, objective and the one training loop.

    from corral.core.config import SFTConfig, load_config
    store = run_sft(load_config(SFTConfig, "sft.yaml", ["train.lr=2e-5"]))
"""
from __future__ import annotations

import torch

from corral.core.config import SFTConfig, validate_choices
from corral.data.batching import pack
from corral.data.readers import load_sft_records
from corral.data.render import check_template, render
from corral.core.errors import CorralError
from corral.eval.evaluate import combine, task_evaluator
from corral.objectives.sft import SFT
from corral.model.policy import load_policy
from corral.methods.runner import fit, open_run
from corral.data.splits import refuse_unseen
from corral.store.runs import RunStore
from corral.train.loop import DatasetSource


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
    refuse_unseen(cfg.data.train, cfg.data.unseen)
    val_records = load_sft_records(cfg.data.validation, cfg.data.max_errors) \
        if cfg.data.validation else []
    if policy is None:
        torch.manual_seed(cfg.train.seed)  # LoRA's initial A matrices come from this
        policy = load_policy(cfg.model, cfg.lora)
    template = check_template(policy.tokenizer, cfg.model.template or None)
    train_examples = render_all(records, policy, cfg, template)
    val_examples = render_all(val_records, policy, cfg, template)
    return policy, train_examples, val_examples


def data_numbers(examples) -> dict:
    return {"examples": len(examples), "truncated": sum(e.truncated for e in examples),
            "target_tokens_per_epoch": sum(sum(e.loss_mask) for e in examples)}


def run_sft(cfg: SFTConfig, policy=None, log=print) -> RunStore:
    """Train and return the run's store; `final/` holds the model or adapter."""
    policy, train_examples, val_examples = prepare(cfg, policy)
    batches = pack(train_examples, cfg.train.batch_tokens, shuffle_seed=cfg.train.seed)
    if not batches:
        raise CorralError(f"{cfg.data.train}: no example has a target token; check data.mask")
    val_batches = pack(val_examples, cfg.train.batch_tokens) if val_examples else []
    source = DatasetSource(batches, cfg.train.grad_accum, cfg.train.seed)
    store = open_run(cfg, "sft")
    loss_eval = (lambda pol, step: heldout_loss(pol, val_batches)) if val_batches else None
    evaluator = combine(loss_eval, task_evaluator(cfg.eval))
    fit(policy, SFT(), source, cfg, store, "sft", [cfg.data.train, cfg.data.validation],
        evaluator=evaluator, log=log, extra=data_numbers(train_examples))
    return store
