"""Preference tuning: `run_dpo` (DPO family, SimPO, ORPO) and `run_kto`, wired like SFT.

    store = run_dpo(load_config(DPOConfig, "dpo.yaml", ["dpo.beta=0.1"]))
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from corral.core.config import SFTConfig, validate_choices
from corral.data.readers import load_feedback_records, load_preference_records, read_rows
from corral.data.render import check_template
from corral.core.errors import CorralError
from corral.eval.evaluate import combine, task_evaluator
from corral.model.resolve import resolve_model
from corral.model.policy import load_policy
from corral.objectives.preference import (
    DPO,
    DPO_LOSSES,
    KTO,
    ORPO,
    SimPO,
    class_ratio,
    feedback_batches,
    pair_batches,
    render_feedback,
    render_pairs,
    sequence_logps,
    split_pairs,
)
from corral.methods.runner import fit, open_run
from corral.data.splits import refuse_unseen
from corral.store.runs import RunStore, atomic_write_bytes
from corral.train.loop import DatasetSource

LOSSES = DPO_LOSSES + ("simpo", "orpo")
DEFAULT_BETA = {"norm": 5.0, "simpo": 2.0}  # others 0.1 (open-instruct, SimPO paper)
REFERENCES = ("auto", "live", "cached")
REF_FILE = "reference_logps.pt"


@dataclass(frozen=True)
class DPOSection:
    loss: str = "sigmoid"  # sigmoid | ipo | hinge | robust | norm | simpo | orpo
    beta: float = 0.0  # 0 = the loss's usual value: 0.1; norm 5; simpo 2
    label_smoothing: float = 0.0  # ε in [0, 0.5): conservative (sigmoid) or robust DPO
    rpo_alpha: float = 0.0  # weight of an NLL term on chosen responses (RPO); 0 = off
    simpo_gamma: float = 1.0  # SimPO margin γ
    orpo_lambda: float = 0.1  # ORPO weight λ of the odds-ratio term
    reference: str = "auto"  # auto | live | cached (auto: live under new LoRA, else cached)


@dataclass(frozen=True)
class KTOSection:
    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    reference: str = "auto"  # auto | live | cached


@dataclass(frozen=True)
class DPOConfig(SFTConfig):
    """The shared sections (model, lora, data, train, run, eval) plus `dpo:`."""
    dpo: DPOSection = field(default_factory=DPOSection)


@dataclass(frozen=True)
class KTOConfig(SFTConfig):
    """The shared sections plus `kto:`."""
    kto: KTOSection = field(default_factory=KTOSection)


def make_objective(section: DPOSection):
    """The objective `dpo.loss` names, with its hyper-parameters."""
    if section.loss not in LOSSES:
        raise CorralError(f"dpo.loss={section.loss!r} is not one of {', '.join(LOSSES)}")
    beta = section.beta or DEFAULT_BETA.get(section.loss, 0.1)
    if section.loss == "simpo":
        return SimPO(beta, section.simpo_gamma)
    if section.loss == "orpo":
        return ORPO(section.orpo_lambda)
    return DPO(section.loss, beta, section.label_smoothing, section.rpo_alpha)


def load_feedback(path: str, max_errors: int = 20):
    """KTO rows: prompt/completion/label, or preference rows split into two rows each."""
    first = next((row for _, row in read_rows(path) if isinstance(row, dict)), {})
    if any(k in first for k in ("chosen", "rejected", "preferred_output", "input")):
        return split_pairs(load_preference_records(path, max_errors))
    return load_feedback_records(path, max_errors)


def _setup(cfg, policy):
    validate_choices(cfg)
    if not cfg.data.train:
        raise CorralError("no training data: set data.train=FILE (jsonl, json, parquet or HF id)")
    refuse_unseen(cfg.data.train, cfg.data.unseen)
    if policy is None:
        torch.manual_seed(cfg.train.seed)  # LoRA's initial A matrices come from this
        policy = load_policy(cfg.model, cfg.lora, fresh_adapter=True)
    return policy, check_template(policy.tokenizer, cfg.model.template or None)


def prepare_pairs(cfg: DPOConfig, policy=None):
    """Validate, load and render; returns (policy, train batches, validation batches, numbers)."""
    objective = make_objective(cfg.dpo)  # bad dpo.* values stop the run before loading
    records = load_preference_records(cfg.data.train, cfg.data.max_errors)
    val = load_preference_records(cfg.data.validation, cfg.data.max_errors) \
        if cfg.data.validation else []
    policy, template = _setup(cfg, policy)
    pairs, dropped = render_pairs(records, policy.tokenizer, cfg.data.max_length, template)
    if not pairs:
        raise CorralError(f"{cfg.data.train}: every pair lost its response to data.max_length="
                          f"{cfg.data.max_length}; raise data.max_length")
    val_pairs, _ = render_pairs(val, policy.tokenizer, cfg.data.max_length, template)
    numbers = {"pairs": len(pairs), "dropped_pairs": dropped, "loss": cfg.dpo.loss,
               **{k: v for k, v in vars(objective).items() if isinstance(v, (int, float))}}
    return (policy, objective, pair_batches(pairs, cfg.train.batch_tokens, cfg.train.seed),
            pair_batches(val_pairs, cfg.train.batch_tokens, None) if val_pairs else [], numbers)


def prepare_feedback(cfg: KTOConfig, policy=None):
    """As prepare_pairs for KTO rows; warns when the weighted class ratio leaves [1, 4/3]."""
    k = cfg.kto
    objective = KTO(k.beta, k.desirable_weight, k.undesirable_weight)
    records = load_feedback(cfg.data.train, cfg.data.max_errors)
    val = load_feedback(cfg.data.validation, cfg.data.max_errors) if cfg.data.validation else []
    policy, template = _setup(cfg, policy)
    examples, labels, dropped = render_feedback(records, policy.tokenizer, cfg.data.max_length,
                                                template)
    ratio = class_ratio(labels, k.desirable_weight, k.undesirable_weight)
    if not 1 <= ratio <= 4 / 3:
        warnings.warn(f"KTO: desirable_weight·n_desirable / (undesirable_weight·n_undesirable) "
                      f"= {ratio:.3g} with {sum(labels)} desirable and {len(labels) - sum(labels)} "
                      "undesirable rows; the KTO paper recommends [1, 4/3]: adjust "
                      "kto.desirable_weight or kto.undesirable_weight", stacklevel=2)
    val_ex, val_labels, _ = render_feedback(val, policy.tokenizer, cfg.data.max_length, template)
    val_batches = feedback_batches(val_ex, val_labels, cfg.train.batch_tokens, None) \
        if len(val_ex) >= 2 else []
    numbers = {"rows": len(examples), "desirable": sum(labels), "dropped_rows": dropped,
               "class_ratio": ratio, "beta": k.beta}
    return (policy, objective, feedback_batches(examples, labels, cfg.train.batch_tokens,
                                                cfg.train.seed), val_batches, numbers)


def reference_mode(requested: str, policy, cfg) -> str:
    """live (adapter off, or a frozen copy) or cached (computed once before training)."""
    if requested not in REFERENCES:
        raise CorralError(f"reference={requested!r} is not one of {', '.join(REFERENCES)}")
    adapter = (Path(resolve_model(cfg.model.name, cfg.model.revision))
               / "adapter_config.json").is_file() if cfg.model.name else False
    if requested == "live" and adapter:
        raise CorralError(f"model.name={cfg.model.name} is a saved adapter, so a live reference "
                          "(adapter disabled) would be the base model, not it; use reference=cached")
    if requested == "auto":
        return "live" if policy.is_lora and not adapter else "cached"
    return requested


def _fingerprint(policy, batches) -> str:
    h = hashlib.sha256(str(getattr(policy, "source", "")).encode())
    for batch in batches:
        for part in batch.parts():
            h.update(part.input_ids.numpy().tobytes() + part.labels.numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def attach_reference(policy, batches, path=None, log=print) -> None:
    """Reference log-probs of every sequence with the current weights (the policy before any
    update), computed once and kept in `path`; a later call with the same data reloads them."""
    key = _fingerprint(policy, batches)
    if path is not None and Path(path).is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            for batch, values in zip(batches, saved["values"]):
                for part, v in zip(batch.parts(), values):
                    part.ref_logps = v
            return
    was_training = policy.model.training
    policy.model.eval()  # no dropout: the reference is deterministic
    try:
        values = [[sequence_logps(policy, part.to(policy.device)).float().cpu()
                   for part in batch.parts()] for batch in batches]
    finally:
        policy.model.train(was_training)
    for batch, vals in zip(batches, values):
        for part, v in zip(batch.parts(), vals):
            part.ref_logps = v
    if path is not None:
        buffer = io.BytesIO()
        torch.save({"key": key, "values": values}, buffer)
        atomic_write_bytes(path, buffer.getvalue())
        log(f"reference log-probs of {sum(len(v) for v in values)} batch parts cached in {path}")


def _setup_reference(mode, policy, batches, val_batches, store, log) -> None:
    if mode == "cached":
        attach_reference(policy, batches, store.path / REF_FILE, log)
        if val_batches:
            attach_reference(policy, val_batches, store.path / f"validation_{REF_FILE}", log)
    elif not policy.is_lora:
        policy.prepare_reference()  # the frozen copy, before the first update


@torch.no_grad()
def heldout(objective, batches):
    """The objective's loss and metrics averaged over held-out batches."""
    def run(policy, step) -> dict:
        total_w, sums = 0.0, {}
        for batch in batches:
            loss, metrics = objective(policy, batch.to(policy.device))
            total_w += objective.weight(batch)
            for k, v in {"loss": loss, **metrics}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        return {k: v / max(total_w, 1e-9) for k, v in sums.items()}
    return run


def _train(cfg, method, prepared, section, log) -> RunStore:
    policy, objective, batches, val_batches, numbers = prepared
    source = DatasetSource(batches, cfg.train.grad_accum, cfg.train.seed)
    store = open_run(cfg, method)
    if objective.needs_reference:
        mode = reference_mode(section.reference, policy, cfg)
        numbers["reference"] = mode
        _setup_reference(mode, policy, batches, val_batches, store, log)
    evaluator = combine(heldout(objective, val_batches) if val_batches else None,
                        task_evaluator(cfg.eval))
    fit(policy, objective, source, cfg, store, method, [cfg.data.train, cfg.data.validation],
        evaluator=evaluator, log=log, extra=numbers)
    return store


def run_dpo(cfg: DPOConfig, policy=None, log=print) -> RunStore:
    """Train with `dpo.loss` (DPO family, simpo or orpo); `final/` holds the model or adapter."""
    method = cfg.dpo.loss if cfg.dpo.loss in ("simpo", "orpo") else "dpo"
    return _train(cfg, method, prepare_pairs(cfg, policy), cfg.dpo, log)


def run_kto(cfg: KTOConfig, policy=None, log=print) -> RunStore:
    """Train with KTO on labelled rows (or pairs split into rows)."""
    return _train(cfg, "kto", prepare_feedback(cfg, policy), cfg.kto, log)
