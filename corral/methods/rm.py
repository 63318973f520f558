"""Reward models (`corral rm`): a scalar head on a causal LM trained with Bradley–Terry on
preference pairs. The trained run is a grader: {"type": "reward_model", "model": RUN}.

    store = run_rm(load_config(RMConfig, None, ["data.train=pairs.jsonl"]))
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from corral.core.config import opt, require
from corral.core.records import Completion
from corral.core.sections import MethodConfig
from corral.data.batching import pair_batches
from corral.data.readers import load_preference_records
from corral.methods.runner import Built, Method, Setup, run
from corral.model.heads import META_FILE, RewardModel, _resolve, load_reward_model
from corral.model.policy import load_policy
from corral.objectives.reward import RewardObjective
from corral.train.sources import DatasetSource


@dataclass(frozen=True)
class RewardSection:
    margin: float = opt(0.0, "required reward gap: −log σ(r_c − r_r − margin)")
    center_coef: float = opt(0.0, "+ c·(r_c + r_r)²: keeps rewards near 0 (TRL suggests 0.01)")
    holdout: float = opt(0.0, "fraction of data.train held out for eval when no "
                         "data.validation")

    def validate(self) -> None:
        require([(self.margin >= 0 and self.center_coef >= 0,
                  "rm.margin and rm.center_coef must be >= 0"),
                 (0 <= self.holdout < 1, f"rm.holdout={self.holdout} must be in [0, 1)")])


@dataclass(frozen=True)
class RMConfig(MethodConfig):
    """The shared sections plus `rm:`."""
    rm: RewardSection = opt(RewardSection(), "reward-model hyper-parameters")

    def check(self) -> None:
        require([(not (self.rm.holdout and self.data.validation),
                  "set data.validation or rm.holdout, not both")])


def read(cfg: RMConfig) -> tuple[list, list]:
    """(train, validation) pairs; rm.holdout carves the validation pairs out of data.train."""
    d = cfg.data
    records = load_preference_records(d.train, d.max_errors)[:d.limit or None]
    val = load_preference_records(d.validation, d.max_errors) if d.validation else []
    if cfg.rm.holdout:
        order = list(range(len(records)))
        random.Random(cfg.train.seed).shuffle(order)
        n_val = max(1, round(cfg.rm.holdout * len(records)))
        require([(n_val < len(records), f"rm.holdout={cfg.rm.holdout} of {len(records)} pairs "
                  "leaves no pair to train on; lower rm.holdout or add pairs")])
        val = [records[i] for i in sorted(order[:n_val])]
        records = [records[i] for i in sorted(order[n_val:])]
    return records, val


def load(cfg: RMConfig) -> RewardModel:
    """Continue a saved reward model, or put a fresh head on model.name."""
    if (_resolve(cfg.model.name, cfg.run.root) / META_FILE).is_file():
        return load_reward_model(cfg.model, cfg.lora, for_training=True, root=cfg.run.root)
    return RewardModel(load_policy(cfg.model, cfg.lora))


def _pairs(rm: RewardModel, records) -> list:
    to_completions = [Completion(p.prompt, side, p.source)
                      for p in records for side in (p.chosen, p.rejected)]
    examples = rm.render(to_completions)
    return list(zip(examples[0::2], examples[1::2]))


def render_pairs(cfg: RMConfig, rm: RewardModel, records, val) -> tuple[list, list]:
    """(train, validation) example pairs; a plain-text prompt makes a plain-text reward model."""
    rm.chat = all(isinstance(p.prompt, tuple) for p in records)
    rm.max_length = cfg.data.max_length
    return _pairs(rm, records), _pairs(rm, val)


def build(cfg: RMConfig, setup: Setup) -> Built:
    train_pairs, val_pairs = render_pairs(cfg, setup.policy, *setup.data)
    batches = pair_batches(train_pairs, cfg.train.batch_tokens, cfg.train.seed)
    truncated = sum(c.truncated or r.truncated for c, r in train_pairs)
    return Built(RewardObjective(cfg.rm.margin, cfg.rm.center_coef),
                 DatasetSource(batches, cfg.train.grad_accum, cfg.train.seed),
                 pair_batches(val_pairs, cfg.train.batch_tokens) if val_pairs else [],
                 numbers={"pairs": len(train_pairs), "heldout_pairs": len(val_pairs),
                          "truncated_pairs": truncated})


def _report(store, log) -> None:
    log(f'as a grader: {{"type": "reward_model", "model": "{store.path}"}}')


METHOD = Method("rm", RMConfig, build, read,
                "train a reward model (Bradley–Terry) on preference pairs", load=load,
                chat_template=False, report=_report, doc="docs/reward.md",
                data_hint="set data.train=FILE of preference pairs (prompt/chosen/rejected "
                "or OpenAI DPO rows)")
METHODS = [METHOD]


def run_rm(cfg: RMConfig, rm: RewardModel | None = None, log=print):
    """Train a reward model; returns the run's store (`final/` is a loadable reward model)."""
    return run(METHOD, cfg, rm, log)
