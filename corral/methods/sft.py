"""Supervised fine-tuning (`corral sft`): chat, prompt/completion or text rows — or a task's
training items — rendered with the chat template, packed, trained on target tokens.

    from corral.methods import sft
    store = sft.run_sft(load_config(SFTConfig, "sft.yaml", ["train.lr=2e-5"]))
"""
from __future__ import annotations

from corral.core.errors import CorralError
from corral.core.sections import SFTConfig, describe_train
from corral.data.batching import pack
from corral.data.readers import load_sft_records
from corral.data.render import render, truncate
from corral.methods.runner import Built, Method, Setup, run
from corral.objectives.sft import SFT
from corral.train.sources import DatasetSource


def read(cfg: SFTConfig) -> tuple[list, list]:
    """(train records, validation records), validated before any model loads."""
    d = cfg.data
    if d.task:
        from corral.tasks import get_task

        records = get_task(d.task, split="train", data=d.task_data,
                           seed=cfg.train.seed).sft_records()
    else:
        records = load_sft_records(d.train, d.max_errors)
    validation = load_sft_records(d.validation, d.max_errors) if d.validation else []
    return records[:d.limit or None], validation


def render_all(records, policy, cfg: SFTConfig, template):
    """Examples of the records; a row that truncation leaves with no trained token stops the
    run (training on its prompt alone would teach nothing and the plan would only say
    truncated=1)."""
    full = [render(r, policy.tokenizer, mask=cfg.data.mask, template=template) for r in records]
    length = cfg.data.max_length
    lost = [ex for ex in full if sum(ex.loss_mask) and not sum(ex.loss_mask[:length])]
    if lost:
        first = lost[0]
        need = first.loss_mask.index(1) + 1
        more = f" and {len(lost) - 1} more rows" if len(lost) > 1 else ""
        raise CorralError(f"{first.source}{more}: data.max_length={length} cuts every trained "
                          f"token (the first answer starts at token {need}); raise "
                          "data.max_length or shorten those rows")
    return [truncate(ex, length) for ex in full]


def data_numbers(examples) -> dict:
    return {"examples": len(examples), "truncated": sum(e.truncated for e in examples),
            "target_tokens_per_epoch": sum(sum(e.loss_mask) for e in examples)}


def build(cfg: SFTConfig, setup: Setup) -> Built:
    records, val_records = setup.data
    examples = render_all(records, setup.policy, cfg, setup.template)
    batches = pack(examples, cfg.train.batch_tokens, shuffle_seed=cfg.train.seed)
    if not batches:
        raise CorralError(f"{describe_train(cfg.data.train) or cfg.data.task}: no example has "
                          f"a target token with data.mask={cfg.data.mask}; use data.mask=all "
                          "or rows with assistant turns")
    val = render_all(val_records, setup.policy, cfg, setup.template)
    return Built(objective=SFT(), source=DatasetSource(batches, cfg.train.grad_accum,
                                                       cfg.train.seed),
                 val_batches=pack(val, cfg.train.batch_tokens) if val else [],
                 numbers=data_numbers(examples))


METHOD = Method("sft", SFTConfig, build, read, "supervised fine-tuning (full or LoRA)",
                data_hint="set data.train=FILE (jsonl, json, parquet or HF id) or data.task=NAME",
                reads_task=True,
                doc="docs/config.md")
METHODS = [METHOD]


def run_sft(cfg: SFTConfig, policy=None, log=print):
    """Train and return the run's store; `final/` holds the model or adapter."""
    return run(METHOD, cfg, policy, log)
