"""Preference tuning on pairs (`corral dpo | simpo | orpo`): the DPO family (sigmoid, ipo,
hinge, robust, norm; RPO), SimPO and ORPO, with the reference live or cached.

    store = run_dpo(load_config(DPOConfig, "dpo.yaml", ["dpo.beta=0.1"]))
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch

from corral.core.config import check_choice, opt, require
from corral.core.errors import CorralError
from corral.core.sections import MethodConfig, describe_train
from corral.data.batching import pair_batches
from corral.data.preference import render_pairs
from corral.data.readers import load_preference_records
from corral.methods.runner import Built, Method, Setup, run
from corral.model.resolve import resolve_model
from corral.objectives.preference import DPO, DPO_LOSSES, ORPO, SimPO, sequence_logps
from corral.train.sources import DatasetSource

LOSSES = DPO_LOSSES + ("simpo", "orpo")
DEFAULT_BETA = {"norm": 5.0, "simpo": 2.0}  # others 0.1 (open-instruct, SimPO paper)
REFERENCES = ("auto", "live", "cached")
REF_FILE = "reference_logps.pt"


@dataclass(frozen=True)
class DPOSection:
    loss: str = opt("sigmoid", "sigmoid | ipo | hinge | robust | norm | simpo | orpo")
    beta: float = opt(0.0, "0 = the loss's usual value: 0.1; norm 5; simpo 2")
    label_smoothing: float = opt(0.0, "ε in [0, 0.5): conservative (sigmoid) or robust DPO")
    rpo_alpha: float = opt(0.0, "weight of an NLL term on chosen responses (RPO); 0 = off")
    simpo_gamma: float = opt(1.0, "SimPO margin γ")
    orpo_lambda: float = opt(0.1, "ORPO weight λ of the odds-ratio term")
    reference: str = opt("auto", "auto | live | cached (auto: live under new LoRA, else cached)")

    def validate(self) -> None:
        check_choice("dpo.loss", self.loss, LOSSES)
        check_choice("dpo.reference", self.reference, REFERENCES)
        require([(self.beta >= 0, f"dpo.beta={self.beta} must be > 0 (or 0 for the default)"),
                 (0 <= self.label_smoothing < 0.5,
                  f"dpo.label_smoothing={self.label_smoothing} must be in [0, 0.5)"),
                 (self.rpo_alpha >= 0, f"dpo.rpo_alpha={self.rpo_alpha} must be >= 0"),
                 (self.orpo_lambda >= 0, f"dpo.orpo_lambda={self.orpo_lambda} must be >= 0")])


@dataclass(frozen=True)
class DPOConfig(MethodConfig):
    """The shared sections (model, lora, data, train, run, eval) plus `dpo:`."""
    dpo: DPOSection = opt(DPOSection(), "DPO-family hyper-parameters")


def make_objective(section: DPOSection):
    """The objective `dpo.loss` names, with its hyper-parameters."""
    section.validate()
    beta = section.beta or DEFAULT_BETA.get(section.loss, 0.1)
    if section.loss == "simpo":
        return SimPO(beta, section.simpo_gamma)
    if section.loss == "orpo":
        return ORPO(section.orpo_lambda)
    return DPO(section.loss, beta, section.label_smoothing, section.rpo_alpha)


def read(cfg: DPOConfig) -> tuple[list, list]:
    d = cfg.data
    train = load_preference_records(d.train, d.max_errors)
    val = load_preference_records(d.validation, d.max_errors) if d.validation else []
    return train[:d.limit or None], val


def build(cfg: DPOConfig, setup: Setup) -> Built:
    objective = make_objective(cfg.dpo)
    records, val = setup.data
    tok, length = setup.policy.tokenizer, cfg.data.max_length
    pairs, dropped = render_pairs(records, tok, length, setup.template)
    if not pairs:
        raise CorralError(f"{describe_train(cfg.data.train)}: every pair lost its response to "
                          f"data.max_length={length}; raise data.max_length")
    val_pairs, _ = render_pairs(val, tok, length, setup.template)
    batches = pair_batches(pairs, cfg.train.batch_tokens, cfg.train.seed)
    val_batches = pair_batches(val_pairs, cfg.train.batch_tokens) if val_pairs else []
    numbers = {"pairs": len(pairs), "dropped_pairs": dropped, "loss": cfg.dpo.loss,
               **{k: v for k, v in vars(objective).items() if isinstance(v, (int, float))}}
    return with_reference(cfg, setup.policy, cfg.dpo.reference, Built(
        objective, DatasetSource(batches, cfg.train.grad_accum, cfg.train.seed),
        val_batches, numbers=numbers))


# ---------------------------------------------------------------- the reference
def with_reference(cfg, policy, requested: str, built: Built) -> Built:
    """Objectives with a reference get it before step 1: live, or cached in the run."""
    if not built.objective.needs_reference:
        return built
    mode = reference_mode(requested, policy, cfg)
    built.numbers["reference"] = mode
    batches, val_batches = built.source.batches, built.val_batches

    def before_fit(store, log) -> None:
        if mode == "cached":
            attach_reference(policy, batches, store, REF_FILE, log)
            if val_batches:
                attach_reference(policy, val_batches, store, f"validation_{REF_FILE}", log)
        elif not policy.is_lora:
            policy.prepare_reference()  # the frozen copy, before the first update
    built.before_fit = before_fit
    return built


def reference_mode(requested: str, policy, cfg) -> str:
    """live (adapter off, or a frozen copy) or cached (computed once before training)."""
    check_choice("reference", requested, REFERENCES)
    adapter = (Path(resolve_model(cfg.model.name, cfg.model.revision))
               / "adapter_config.json").is_file() if cfg.model.name else False
    if requested == "live" and adapter:
        raise CorralError(f"model.name={cfg.model.name} is a saved adapter, so a live reference "
                          "(adapter disabled) would be the base model, not it; "
                          "use reference=cached")
    if requested == "auto":
        return "live" if policy.is_lora and not adapter else "cached"
    return requested


def _fingerprint(policy, batches) -> str:
    h = hashlib.sha256(str(getattr(policy, "source", "")).encode())
    for batch in batches:
        for part in batch.parts():
            h.update(part.input_ids.numpy().tobytes() + part.labels.numpy().tobytes())
    return h.hexdigest()


def _assign(batches, values) -> None:
    for batch, vals in zip(batches, values):
        for part, v in zip(batch.parts(), vals):
            part.ref_logps = v


@torch.no_grad()
def attach_reference(policy, batches, store=None, name: str = REF_FILE, log=print) -> None:
    """Reference log-probs of every sequence with the current weights (the policy before any
    update), computed once and kept in the run (`store`) as `name`; a later call with the
    same data (a resumed run) reloads them."""
    key = _fingerprint(policy, batches)
    saved = store.read_artifact(name) if store is not None else None
    if saved is not None:
        saved = torch.load(io.BytesIO(saved), map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            return _assign(batches, saved["values"])
    was_training = policy.model.training
    policy.model.eval()  # no dropout: the reference is deterministic
    try:
        values = [[sequence_logps(policy, part.to(policy.device)).float().cpu()
                   for part in batch.parts()] for batch in batches]
    finally:
        policy.model.train(was_training)
    _assign(batches, values)
    if store is not None:
        buffer = io.BytesIO()
        torch.save({"key": key, "values": values}, buffer)
        path = store.write_artifact(name, buffer.getvalue())
        log(f"reference log-probs of {sum(len(v) for v in values)} batch parts cached in {path}")


def _method(name: str, summary: str, forced: tuple = ()) -> Method:
    return Method(name, DPOConfig, build, read, summary, fresh_adapter=True, forced=forced,
                  data_hint="set data.train=FILE of preference pairs (prompt/chosen/rejected "
                  "or OpenAI DPO rows)", doc="docs/preference.md")


METHODS = [
    _method("dpo", "DPO-family preference tuning (sigmoid, ipo, hinge, robust, norm; simpo "
            "and orpo too)"),
    _method("simpo", "SimPO: reference-free preference tuning (dpo.beta, dpo.simpo_gamma)",
            ("dpo.loss=simpo",)),
    _method("orpo", "ORPO: SFT plus an odds-ratio preference term (dpo.orpo_lambda)",
            ("dpo.loss=orpo",)),
]


def run_dpo(cfg: DPOConfig, policy=None, log=print):
    """Train with `dpo.loss` (DPO family, simpo or orpo); `final/` holds the model or adapter."""
    method = {m.name: m for m in METHODS}.get(cfg.dpo.loss, METHODS[0])
    return run(method, cfg, policy, log)
