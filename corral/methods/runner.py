"""The method contract and the one runner every training method goes through.

A method module declares its config (the shared sections + its own) and one `build` function;
`run(method, cfg)` does the rest, in this order, once for every method:

    validate config (resuming: compare it with the saved run) -> read + validate data
    -> refuse sealed unseen rows -> seed -> load model
    -> check chat template -> build (objective, batch source, evaluators) -> open the run
    -> before_fit (reference cache, signal check) -> the loop -> final eval -> report
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from corral.core.config import to_dict, validate_config
from corral.core.errors import CorralError
from corral.core.sections import data_files as mixture
from corral.data.render import check_template
from corral.data.splits import refuse_unseen
from corral.eval.evaluate import combine, task_evaluator
from corral.methods.resume import check_resume, record_resume
from corral.model.policy import load_policy
from corral.store.runs import RunStore, new_run_name
from corral.train.loop import check_resumable, plan, train


@dataclass
class Setup:
    """What the runner hands `build`: the validated data, the loaded model and its template."""
    data: object
    policy: object
    template: str | None
    resumed: dict | None = None  # on resume: the changes run.allow_change let through


@dataclass
class Built:
    """What the loop needs, from a method's `build`."""
    objective: object
    source: object  # a BatchSource (DatasetSource, RolloutSource)
    val_batches: list = field(default_factory=list)  # held-out: the objective's loss + metrics
    evaluator: Callable | None = None  # extra (policy, step) -> metrics, e.g. graded dev
    numbers: dict = field(default_factory=dict)  # printed in the plan, kept in lineage
    before_fit: Callable | None = None  # (store, log) once the run is open, before step 1
    eval_before: bool = False  # evaluate at step 0 too (a learning curve's first point)
    policy: object = None  # set when build wraps the policy (PPO's actor-critic)


@dataclass(frozen=True)
class Method:
    """One training method: a command name, its config class and its builder."""
    name: str
    config: type
    build: Callable  # (cfg, Setup) -> Built
    read: Callable  # (cfg) -> validated data, before any model loads
    summary: str
    data_hint: str = "set data.train=FILE (jsonl, json, parquet or HF id)"
    reads_task: bool = False  # trains on data.task's items (SFT on solutions, RL on prompts)
    fresh_adapter: bool = False  # methods with a reference train a new adapter on a saved one
    load: Callable | None = None  # (cfg) -> model; default: the policy of model.* and lora.*
    forced: tuple = ()  # overrides the command always applies (simpo: dpo.loss=simpo)
    report: Callable | None = None  # (store, log) after training
    chat_template: bool = True  # refuse a model without one (reward models may read text)
    doc: str = ""  # the docs page of the method


def prepare(method: Method, cfg, policy=None) -> tuple[Setup, Built]:
    """Everything before the run folder exists: any mistake stops here, leaving nothing."""
    validate_config(cfg)
    resumed = check_resume(cfg) if cfg.run.resume else None
    data = cfg.data
    if not (data.train or getattr(data, "task", "")):
        raise CorralError(f"no training data: {method.data_hint}")
    if getattr(data, "task", "") and not method.reads_task:
        raise CorralError(f"corral {method.name} does not train on data.task={data.task} (a "
                          f"task gives prompts and reference answers, not the rows this method "
                          f"learns from); drop data.task and {method.data_hint}, e.g. made by "
                          f"`corral pairs --task {data.task} --out pairs`")
    if data.train:
        refuse_unseen(data.train, data.unseen)
    records = method.read(cfg)
    if policy is None:
        torch.manual_seed(cfg.train.seed)  # LoRA's (and heads') initial weights come from this
        policy = method.load(cfg) if method.load else \
            load_policy(cfg.model, cfg.lora, fresh_adapter=method.fresh_adapter)
    template = check_template(policy.tokenizer, cfg.model.template or None) \
        if method.chat_template else (cfg.model.template or None)
    setup = Setup(records, policy, template, resumed)
    built = method.build(cfg, setup)
    if built.policy is None:
        built.policy = policy
    return setup, built


def launch(method: Method, cfg, setup: Setup, built: Built, log=print) -> RunStore:
    """Open the run, run `before_fit`, train with the one loop, report."""
    store = open_run(cfg, method.name)
    if setup.resumed is not None:
        check_resumable(store, built.source)
        record_resume(store, setup.resumed)
    if built.before_fit is not None:
        built.before_fit(store, log)
    evaluator = combine(heldout(built.objective, built.val_batches) if built.val_batches
                        else None, built.evaluator, task_evaluator(cfg.eval, setup.template))
    if evaluator is not None and built.eval_before and not cfg.run.resume:
        with torch.no_grad():
            metrics = evaluator(built.policy, 0)
        store.append_metrics(0, {f"eval/{k}": v for k, v in metrics.items()})
    fit(built.policy, built.objective, built.source, cfg, store, method.name,
        [cfg.data.train, getattr(cfg.data, "validation", "")], evaluator=evaluator, log=log,
        extra=built.numbers)
    if method.report is not None:
        method.report(store, log)
    return store


def run(method: Method, cfg, policy=None, log=print) -> RunStore:
    """Train `cfg` with `method`; returns the run's store (`final/` holds the model)."""
    setup, built = prepare(method, cfg, policy)
    return launch(method, cfg, setup, built, log)


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
    store.write_lineage(cfg.model.name, lineage_files(data_files), cfg.run.parent,
                        {"method": method, "lora": lora, "plan": numbers})
    try:
        return train(policy, objective, source, cfg.train, store, evaluator=evaluator,
                     resume=cfg.run.resume)
    finally:
        store.close()


def lineage_files(specs) -> list:
    """The data files for lineage.json: a path as given, or each file of a data.train
    mixture with its weight (lineage hashes each, and resume checks each hash)."""
    out = []
    for spec in specs:
        if isinstance(spec, (list, tuple)):
            out += [{"path": f.path, "weight": f.weight} for f in mixture(spec)]
        elif spec:
            out.append(spec)
    return out


def heldout(objective, batches):
    """An evaluator: the objective's loss and metrics over held-out batches, each divided by
    the summed weight (per target token for SFT, per pair for DPO and reward models)."""
    @torch.no_grad()
    def evaluate(policy, step) -> dict:
        was_training = policy.model.training
        policy.model.eval()  # no dropout
        total_w, sums = 0.0, {}
        try:
            for batch in batches:
                loss, metrics = objective(policy, batch.to(policy.device))
                total_w += objective.weight(batch)
                for k, v in {"loss": loss, **metrics}.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
        finally:
            policy.model.train(was_training)
        return {k: v / total_w for k, v in sums.items()} if total_w > 0 else {}
    return evaluate


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) and not math.isnan(value) else value
