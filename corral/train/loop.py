"""THE training loop: AdamW, lr schedule, exact accumulation, clipping, mixed precision,
eval hooks, atomic checkpoints and exact resume. It does not know which method it runs."""
from __future__ import annotations

import contextlib
import math
import random
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from corral.core.errors import BudgetSpent, CorralError
from corral.core.sections import TrainConfig
from corral.store.runs import RunStore
from corral.train.stop import check_stop


def plan(cfg: TrainConfig, source) -> dict:
    """The derived numbers of a run (steps, warmup, effective batch) for the CLI to print."""
    cfg.validate()  # the section's own checks (a library caller may skip load_config)
    spe = int(source.steps_per_epoch)
    if spe < 1:
        raise CorralError("the batch source has no steps; check data.train is not empty")
    # round() first: 0.3 * 10 is 3.0000000000000004 in floating point, not 4 steps.
    total = cfg.max_steps if cfg.max_steps > 0 else math.ceil(round(cfg.epochs * spe, 6))
    numbers = {
        "steps_per_epoch": spe, "total_steps": total, "epochs": total / spe,
        "warmup_steps": math.ceil(round(cfg.warmup_ratio * total, 6)),
        "grad_accum": getattr(source, "grad_accum", cfg.grad_accum),
    }
    for what in ("tokens", "sequences"):
        per_epoch = getattr(source, f"{what}_per_epoch", None)
        if per_epoch:
            numbers[f"{what}_per_epoch"] = per_epoch
            numbers[f"{what}_per_step"] = per_epoch / spe  # the effective batch
            numbers[f"{what}_total"] = round(per_epoch * total / spe)
    return numbers


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of train.lr for optimizer step `step` (0-based): linear warmup reaching 1 at
    step warmup-1 (the first step is not wasted at lr 0), then cosine/linear decay towards 0."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def trainable_parameters(policy) -> tuple[list, list[str]]:
    """The policy's trainable parameters (tied ones once) and their names in policy.model."""
    params = list({id(p): p for p in policy.trainable_parameters()}.values())
    if not params:
        raise CorralError("the policy has no trainable parameters; enable lora or full "
                          "fine-tuning (lora.enabled=false)")
    model = getattr(policy, "model", None)
    name_of = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
    return params, [name_of.get(id(p), f"param.{i}") for i, p in enumerate(params)]


def make_optimizer(params: list, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (biases and norm gains are not shrunk to 0)."""
    decay, no_decay = [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]
    groups = [g for g in ({"params": decay, "weight_decay": cfg.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    fused = all(p.is_cuda for p in params)  # one kernel per step instead of one per tensor
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused or None)


def _precision(mode: str, device: torch.device, params: list):
    """(autocast context factory, GradScaler or None) for train.mixed_precision."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": None}.get(mode)
    if mode == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if cuda_bf16 else None
    if dtype is None:
        return contextlib.nullcontext, None
    if dtype == torch.float16 and any(p.dtype == torch.float16 for p in params):
        raise CorralError("train.mixed_precision=fp16 needs float32 trainable weights; set "
                          "model.dtype=float32 or train.mixed_precision=bf16")
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def _seed(cfg: TrainConfig) -> Callable[[], None]:
    """Seed python and torch; returns a function that restores the determinism flags."""
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    was = (torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return lambda: torch.use_deterministic_algorithms(was[0], warn_only=was[1])


def _rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_trainable_state(policy, ckpt_dir) -> None:
    """Copy `trainable.pt` (the trainable tensors, LoRA or full) back into the live model."""
    params, names = trainable_parameters(policy)
    saved = torch.load(Path(ckpt_dir) / "trainable.pt", map_location="cpu", weights_only=True)
    shapes = [tuple(t.shape) for t in saved["tensors"]]
    if saved["names"] != names or shapes != [tuple(p.shape) for p in params]:
        raise CorralError(f"checkpoint {ckpt_dir} holds other trainable parameters than this "
                          "model (lora or model settings changed); start a new run.name")
    with torch.no_grad():
        for p, t in zip(params, saved["tensors"]):
            p.copy_(t)


def _new_totals() -> dict:
    return {"tokens": 0, "elapsed_s": 0.0, "last": {}, "eval": {},
            "window": {"steps": 0, "loss": 0.0, "grad_norm": 0.0, "tokens": 0,
                       "seconds": 0.0, "metrics": {}}}


@dataclass
class LoopState:
    """One run of `train`: what it trains, with what, and its running totals. The loop's
    helpers take this one object (and the step) instead of a dozen positional arguments."""
    policy: object
    objective: object
    source: object  # a BatchSource
    cfg: TrainConfig
    store: RunStore
    params: list  # the trainable parameters, in `names` order (what checkpoints hold)
    names: list
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    autocast: Callable  # () -> a context manager (mixed precision or nothing)
    scaler: torch.amp.GradScaler | None
    max_norm: float
    total: int  # optimizer steps of the whole run
    steps_per_epoch: int
    evaluator: Callable | None = None
    on_log: Callable | None = None
    bar: object = None  # the progress bar, once the loop starts
    totals: dict = field(default_factory=_new_totals)  # checkpointed: tokens, time, windows


def _window_metrics(totals: dict, lr: float, epoch: float) -> dict:
    """Means over the steps since the last log (objective metrics first: ours win a clash)."""
    w = totals["window"]
    n = max(1, w["steps"])
    metrics = {k: v / n for k, v in w["metrics"].items()}
    metrics.update(loss=w["loss"] / n, lr=lr, grad_norm=w["grad_norm"] / n,
                   tokens_per_s=w["tokens"] / max(w["seconds"], 1e-9), tokens=totals["tokens"],
                   epoch=epoch, elapsed_s=totals["elapsed_s"])
    totals["window"], totals["last"] = _new_totals()["window"], dict(metrics)
    return metrics


def _evaluate(run: LoopState, step: int) -> dict:
    run.policy.model.eval()
    try:
        with torch.no_grad():
            metrics = run.evaluator(run.policy, step) or {}
    finally:
        run.policy.model.train()
    return {k if k.startswith("eval/") else f"eval/{k}": v for k, v in metrics.items()}


def _backward(run: LoopState, micro: list):
    """Backpropagate one optimizer step's micro-batches, each as loss_sum / W; returns
    (loss_sum / W as a tensor, {metric: sum / W}, n_tokens)."""
    objective, scaler = run.objective, run.scaler
    weight = sum(float(objective.weight(b)) for b in micro)
    weight = weight if weight > 0 else 1.0  # nothing to learn from: avoid 0/0
    loss_sum, metric_sums, n_tokens = torch.zeros((), device=run.device), {}, 0
    for batch in micro:
        n_tokens += int(getattr(batch, "n_tokens", 0))
        with run.autocast():
            part, part_metrics = objective(run.policy, batch.to(run.device))
        scaled = part / weight
        (scaler.scale(scaled) if scaler else scaled).backward()
        loss_sum += part.detach().float()
        for k, v in part_metrics.items():  # tensors stay on the device: no sync per batch
            v = v.detach().float() if torch.is_tensor(v) else float(v)
            metric_sums[k] = metric_sums.get(k, 0.0) + v
    return loss_sum / weight, {k: v / weight for k, v in metric_sums.items()}, n_tokens


def _record(totals: dict, loss: float, norm: float, metrics: dict, n_tokens: int,
            seconds: float) -> None:
    w = totals["window"]
    w["steps"] += 1
    w["loss"] += loss
    w["grad_norm"] += norm if math.isfinite(norm) else 0.0  # an fp16 overflow step
    w["tokens"] += n_tokens
    w["seconds"] += seconds
    for k, v in metrics.items():
        w["metrics"][k] = w["metrics"].get(k, 0.0) + v
    totals["tokens"] += n_tokens


def _save(run: LoopState, step: int) -> None:
    scaler = run.scaler
    state = {"step": step, "optimizer": run.optimizer.state_dict(),
             "scheduler": run.scheduler.state_dict(),
             "scaler": scaler.state_dict() if scaler else None,
             "rng": _rng_state(), "source": run.source.state_dict(), "totals": run.totals}

    def writer(d: Path) -> None:
        run.policy.save(d / "model")  # so every checkpoint is also a loadable model
        torch.save({"names": run.names, "tensors": [p.detach().cpu() for p in run.params]},
                   d / "trainable.pt")
        torch.save(state, d / "trainer.pt")
    run.store.save_checkpoint(step, writer)


def check_resumable(store, source) -> None:
    """Refuse, before anything is written, a resume whose batch source no longer matches its
    latest checkpoint (the same check `_restore` makes, on a memory-mapped read)."""
    latest = store.latest_checkpoint()
    if latest is not None:
        state = torch.load(latest[1] / "trainer.pt", map_location="cpu", weights_only=True,
                           mmap=True)
        source.load_state_dict(state["source"])


def _restore(run: LoopState, load_model_state) -> int:
    """Load the latest checkpoint into the live objects and `run.totals`; returns its step."""
    latest = run.store.latest_checkpoint()
    if latest is None:  # died before its first checkpoint: start over
        run.totals = _new_totals()
        return 0
    step, ckpt = latest
    (load_model_state or load_trainable_state)(run.policy, ckpt)
    state = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=True)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler is not None and state["scaler"]:
        run.scaler.load_state_dict(state["scaler"])
    run.source.load_state_dict(state["source"])
    _set_rng_state(state["rng"])
    run.totals = state["totals"]
    return step


def train(policy, objective, source, cfg: TrainConfig, store: RunStore, *, evaluator=None,
          resume: bool = False, on_log=None, load_model_state=None) -> dict:
    """Run `plan(cfg, source)["total_steps"]` optimizer steps; returns the final metrics.

    Per step, W = sum of objective.weight(b) over its micro-batches and each micro-batch
    backpropagates loss_sum / W, so splitting a step into micro-batches changes nothing.
    `evaluator(policy, step) -> dict` runs every eval_every steps and at the end;
    `on_log(step, metrics)` sees every metrics row; `load_model_state(policy, ckpt_dir)`
    replaces the default weight restore (`load_trainable_state`) on resume.
    """
    numbers = plan(cfg, source)
    total, warmup = numbers["total_steps"], numbers["warmup_steps"]
    params, names = trainable_parameters(policy)
    device = torch.device(getattr(policy, "device", None) or params[0].device)
    restore_flags = _seed(cfg)
    optimizer = make_optimizer(params, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, warmup, cfg.schedule))
    autocast, scaler = _precision(cfg.mixed_precision, device, params)
    run = LoopState(policy, objective, source, cfg, store, params, names, device, optimizer,
                    scheduler, autocast, scaler,
                    cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"),
                    total, numbers["steps_per_epoch"], evaluator, on_log)
    start = 0
    if resume:
        start = _restore(run, load_model_state)
        store.truncate_metrics(after_step=start)  # rows logged after the checkpoint are redone

    policy.model.train()
    run.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and sys.stderr.isatty()))
    session_start, elapsed_before = time.perf_counter(), run.totals["elapsed_s"]
    stopped, done = "", start
    try:
        for step in range(start + 1, total + 1):  # `step` = optimizer steps done after this one
            try:  # a stop asked from outside (train/stop.py) or a spent budget: no update made
                check_stop()
                lr = _step(run, step)
            except BudgetSpent as exc:
                stopped = str(exc)
                break
            run.totals["elapsed_s"] = elapsed_before + time.perf_counter() - session_start
            _log_step(run, step, lr)
            run.bar.update(1)
            # Saved last, so the RNG state in it is the one the next step starts from.
            if step == total or (cfg.save_every and step % cfg.save_every == 0):
                _save(run, step)
            done = step
        if stopped:
            _stop_cleanly(run, done, stopped)
    finally:
        run.bar.close()
        restore_flags()
    store.save_final(lambda d: policy.save(d))
    totals = run.totals
    out = {**totals["last"], **totals["eval"], "step": done if stopped else max(start, total),
           "tokens": totals["tokens"], "elapsed_s": totals["elapsed_s"]}
    return {**out, "stopped": stopped} if stopped else out


def _log_step(run: LoopState, step: int, lr: float) -> None:
    """The step's metrics row (every log_every steps and the last) and, when due, the
    evaluation; rows go to the store and to on_log."""
    cfg, totals, row = run.cfg, run.totals, {}
    if step % cfg.log_every == 0 or step == run.total:
        row = _window_metrics(totals, lr, epoch=step / run.steps_per_epoch)
        run.bar.set_postfix(loss=f"{row['loss']:.4g}", tok_s=f"{row['tokens_per_s']:.0f}")
    if run.evaluator is not None and (step == run.total or
                                      (cfg.eval_every and step % cfg.eval_every == 0)):
        totals["eval"] = _evaluate(run, step)
        row.update(totals["eval"])
    if row:
        run.store.append_metrics(step, row)
        if run.on_log is not None:
            run.on_log(step, row)


def _stop_cleanly(run: LoopState, done: int, why: str) -> None:
    """A budget ran out mid-run: save the last finished step (resumable with a larger
    budget), record why in the metrics and say so."""
    store = run.store
    if done > 0 and not store.checkpoint_dir(done).exists():
        _save(run, done)
    row = {"stopped": why}
    if run.evaluator is not None and done > 0:
        try:
            run.totals["eval"] = _evaluate(run, done)
            row.update(run.totals["eval"])
        except BudgetSpent:  # the dev grading shares the budget: keep the stop, skip the eval
            pass
    store.append_metrics(done, row)
    tqdm.write(f"stopped at step {done}: {why}")


def _step(run: LoopState, step: int) -> float:
    """One optimizer step: backward over its micro-batches, clip, check, update, record.
    Returns the learning rate the step used."""
    t0 = time.perf_counter()
    run.optimizer.zero_grad(set_to_none=True)
    loss, metrics, n_tokens = _backward(run, run.source.micro_batches(step - 1))
    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.params, run.max_norm)
    # One device sync per step for the loss, grad norm (the guard needs both) and metrics.
    keys = list(metrics)
    loss, norm, *values = torch.stack([loss, grad_norm.float()] + [
        torch.as_tensor(metrics[k], dtype=torch.float32, device=run.device) for k in keys
    ]).tolist()
    _check_finite(run, step, loss, norm)
    lr = run.scheduler.get_last_lr()[0]
    _update(run)
    _record(run.totals, loss, norm, dict(zip(keys, values)), n_tokens, time.perf_counter() - t0)
    return lr


def _update(run: LoopState) -> None:
    optimizer, scheduler, scaler = run.optimizer, run.scheduler, run.scaler
    if scaler is None:
        optimizer.step()
        scheduler.step()
        return
    scaler.step(optimizer)  # skips the update when the unscaled grads overflowed
    scaler.update()
    with warnings.catch_warnings():  # a skipped first step makes torch warn about the order
        warnings.simplefilter("ignore", UserWarning)
        scheduler.step()


def _check_finite(run: LoopState, step: int, loss: float, norm: float) -> None:
    """Stop before a non-finite update; fp16 overflows are routine and GradScaler skips them."""
    if math.isfinite(loss) and (math.isfinite(norm) or run.scaler is not None):
        return
    latest = run.store.latest_checkpoint()
    where = (f"the last good checkpoint is step {latest[0]} in {latest[1]}" if latest else
             "no checkpoint was saved yet (train.save_every keeps some along the way)")
    what = f"loss is {loss}" if not math.isfinite(loss) else f"grad norm is {norm}"
    raise CorralError(f"step {step}: {what}; {where}; lower train.lr or check the data")
