"""KTO (`corral kto`): rows labelled desirable or undesirable (thumbs up/down), or preference
pairs split into one row each; the reference is live or cached as in DPO.

    store = run_kto(load_config(KTOConfig, None, ["data.train=kto.jsonl", "kto.beta=0.1"]))
"""
from __future__ import annotations

from dataclasses import dataclass

from corral.core.config import ConfigNote, check_choice, opt, require
from corral.core.errors import CorralError
from corral.core.sections import MethodConfig
from corral.data.batching import feedback_batches
from corral.data.preference import render_feedback, split_pairs
from corral.data.readers import load_feedback_records, load_preference_records, read_rows
from corral.methods.dpo import REFERENCES, with_reference
from corral.methods.runner import Built, Method, Setup, run
from corral.objectives.preference import KTO, class_ratio
from corral.train.sources import DatasetSource


@dataclass(frozen=True)
class KTOSection:
    beta: float = opt(0.1, "β: scale of the implied reward")
    desirable_weight: float = opt(1.0, "λ_D: weight of desirable rows")
    undesirable_weight: float = opt(1.0, "λ_U: weight of undesirable rows")
    reference: str = opt("auto", "auto | live | cached")

    def validate(self) -> None:
        check_choice("kto.reference", self.reference, REFERENCES)
        require([(self.beta > 0, f"kto.beta={self.beta} must be > 0"),
                 (self.desirable_weight > 0 and self.undesirable_weight > 0,
                  "kto.desirable_weight and kto.undesirable_weight must be > 0")])


@dataclass(frozen=True)
class KTOConfig(MethodConfig):
    """The shared sections plus `kto:`."""
    kto: KTOSection = opt(KTOSection(), "KTO hyper-parameters")


def load_feedback(path: str, max_errors: int = 20):
    """KTO rows: prompt/completion/label, or preference rows split into two rows each."""
    first = next((row for _, row in read_rows(path) if isinstance(row, dict)), {})
    if any(k in first for k in ("chosen", "rejected", "preferred_output", "input")):
        return split_pairs(load_preference_records(path, max_errors))
    return load_feedback_records(path, max_errors)


def read(cfg: KTOConfig) -> tuple[list, list]:
    d = cfg.data
    val = load_feedback(d.validation, d.max_errors) if d.validation else []
    rows = load_feedback(d.train, d.max_errors)[:d.limit or None]
    desirable = sum(bool(r.label) for r in rows)
    if rows and desirable in (0, len(rows)):  # no weight can balance a class that is absent
        have, lack = ("desirable", "undesirable") if desirable else ("undesirable", "desirable")
        raise CorralError(
            f"data.train {d.train!r} has {len(rows)} {have} rows and no {lack} one; KTO "
            f"contrasts the two, so add rows labelled {str(not desirable).lower()} (corral "
            "pairs makes both from graded samples)"
            + (", or train on these rows with corral sft" if desirable else ""))
    return rows, val


def build(cfg: KTOConfig, setup: Setup) -> Built:
    """As DPO's build for labelled rows; notes when the weighted class ratio leaves [1, 4/3]."""
    import warnings

    k, (records, val) = cfg.kto, setup.data
    tok, length = setup.policy.tokenizer, cfg.data.max_length
    examples, labels, dropped = render_feedback(records, tok, length, setup.template)
    ratio = class_ratio(labels, k.desirable_weight, k.undesirable_weight)
    if not 1 <= ratio <= 4 / 3:
        warnings.warn(ConfigNote(
            f"KTO: desirable_weight·n_desirable / (undesirable_weight·n_undesirable) = "
            f"{ratio:.3g} with {sum(labels)} desirable and {len(labels) - sum(labels)} "
            "undesirable rows; the KTO paper recommends [1, 4/3]: adjust "
            "kto.desirable_weight or kto.undesirable_weight"), stacklevel=2)
    val_ex, val_labels, _ = render_feedback(val, tok, length, setup.template)
    val_batches = feedback_batches(val_ex, val_labels, cfg.train.batch_tokens, None) \
        if len(val_ex) >= 2 else []
    batches = feedback_batches(examples, labels, cfg.train.batch_tokens, cfg.train.seed)
    numbers = {"rows": len(examples), "desirable": sum(labels), "dropped_rows": dropped,
               "class_ratio": ratio, "beta": k.beta}
    objective = KTO(k.beta, k.desirable_weight, k.undesirable_weight)
    return with_reference(cfg, setup.policy, k.reference, Built(
        objective, DatasetSource(batches, cfg.train.grad_accum, cfg.train.seed), val_batches,
        numbers=numbers))


METHOD = Method("kto", KTOConfig, build, read,
                "KTO on rows labelled good or bad (or on pairs, split)", fresh_adapter=True,
                data_hint="set data.train=FILE of prompt/completion/label rows (or pairs)",
                doc="docs/preference.md")
METHODS = [METHOD]


def run_kto(cfg: KTOConfig, policy=None, log=print):
    """Train with KTO on labelled rows (or pairs split into rows)."""
    return run(METHOD, cfg, policy, log)
