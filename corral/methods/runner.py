"""What every training command shares: open the run, record lineage, print the plan, train.

    store = open_run(cfg, "dpo", data_files=[cfg.data.train])
    fit(policy, objective, source, cfg, store, evaluator, log=print, extra={"beta": 0.1})
"""
from __future__ import annotations

import math

from corral.core.config import to_dict
from corral.core.errors import CorralError
from corral.store.runs import RunStore, new_run_name
from corral.train.loop import plan, train


def open_run(cfg, method: str) -> RunStore:
    """The run's store; refuses to overwrite a run with checkpoints unless resuming."""
    store = RunStore(cfg.run.root, cfg.run.name or new_run_name(method),
                     keep=cfg.train.keep_checkpoints, report_to=cfg.train.report_to)
    if store.exists() and not cfg.run.resume and store.latest_checkpoint():
        raise CorralError(f"run '{store.path}' already has checkpoints; pass run.resume=true "
                          "to continue it or choose another run.name")
    return store


def fit(policy, objective, source, cfg, store: RunStore, method: str, data_files=(),
        evaluator=None, log=print, extra: dict | None = None) -> dict:
    """Print the derived numbers, save config + lineage, run the one loop, close the store."""
    numbers = {**plan(cfg.train, source), **(extra or {})}
    log("plan: " + ", ".join(f"{k}={_fmt(v)}" for k, v in numbers.items()))
    store.write_config(to_dict(cfg))
    lora = getattr(getattr(cfg, "lora", None), "enabled", False)
    store.write_lineage(cfg.model.name, [p for p in data_files if p], cfg.run.parent,
                        {"method": method, "lora": lora, "plan": numbers})
    try:
        return train(policy, objective, source, cfg.train, store, evaluator=evaluator,
                     resume=cfg.run.resume)
    finally:
        store.close()


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) and not math.isnan(value) else value
