"""A running job's progress, read from its run folder while the worker trains: each metrics
row of `metrics.jsonl` becomes a `metrics` event and each checkpoint a checkpoint object with
OpenAI's metric names. Events and checkpoints have fixed ids (job, step), so a resumed
worker that redoes steps after its last checkpoint writes nothing twice.

corral -> OpenAI metric names: loss -> train_loss, token_accuracy ->
train_mean_token_accuracy, eval/loss -> valid_loss, eval/token_accuracy ->
valid_mean_token_accuracy; at the last step the evaluation over the whole validation file is
also full_valid_loss / full_valid_mean_token_accuracy."""
from __future__ import annotations

import json
import threading

from corral.serve.db import Store, now
from corral.serve.jobspec import ft_name

NAMES = {"loss": "train_loss", "token_accuracy": "train_mean_token_accuracy",
         "eval/loss": "valid_loss", "eval/token_accuracy": "valid_mean_token_accuracy"}


def checkpoint_steps(run_dir) -> list[int]:
    """Steps of the run's published checkpoints (`checkpoints/step-N`; temp dirs are not)."""
    ckpts = run_dir / "checkpoints"
    names = [p.name for p in ckpts.iterdir() if p.is_dir()] if ckpts.is_dir() else []
    return sorted(int(n[5:]) for n in names if n.startswith("step-") and n[5:].isdigit())


def read_rows(path) -> list[dict]:
    """Metrics rows; a torn last line (a write in progress) is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


class Progress:
    def __init__(self, store: Store, row: dict, run_dir, every_s: float = 0.5):
        self.store, self.run_dir, self.every_s = store, run_dir, every_s
        self.job, self.spec = row["obj"], row["spec"]
        self.job_id = self.job["id"]
        self.key = self.job_id.removeprefix("ftjob-")
        self.model = ft_name(self.job["model"], self.spec["suffix"], self.job_id)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._steps: set[int] = set()
        self._ckpts: set[int] = set()

    def started(self, resume: bool, overrides: list[str]) -> None:
        if resume:
            steps = checkpoint_steps(self.run_dir)
            self.store.add_event(self.job_id, f"Resuming from the checkpoint at step "
                                 f"{steps[-1]}", data={"step": steps[-1]})
        else:
            self.store.add_event(self.job_id, "Fine-tuning job started",
                                 data={"corral_overrides": overrides,
                                       "run": str(self.run_dir)})

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sync()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.sync()
            except Exception:  # progress is best effort; the final sync runs after training
                continue

    def sync(self) -> None:
        """Record the steps and checkpoints not recorded yet, in one transaction."""
        by_step = {}
        for row in read_rows(self.run_dir / "metrics.jsonl"):
            by_step.setdefault(row.get("step"), {}).update(row)
        steps = [s for s, row in by_step.items()
                 if s and "loss" in row and s not in self._steps]
        saved = [s for s in checkpoint_steps(self.run_dir)
                 if s not in self._ckpts and s in by_step]
        if not steps and not saved:
            return
        with self.store.tx() as db:
            for step in sorted(steps):
                self._metric_event(db, step, by_step[step])
            for step in sorted(saved):
                self._checkpoint(db, step, by_step[step])
        self._steps.update(steps)
        self._ckpts.update(saved)

    def _metric_event(self, db, step: int, row: dict) -> None:
        data = {"step": step, **{NAMES[k]: row[k] for k in NAMES if k in row}}
        self.store.add_event(self.job_id, f"Step {step}: training loss={row['loss']:.4f}",
                             data=data, kind="metrics", event_id=f"ftevent-{self.key}-s{step}",
                             db=db)

    def _checkpoint(self, db, step: int, row: dict) -> None:
        metrics = {"step": float(step), **{NAMES[k]: row[k] for k in NAMES if k in row}}
        self.store.add_checkpoint(db, {
            "id": f"ftckpt-{self.key}-s{step}", "object": "fine_tuning.job.checkpoint",
            "created_at": now(), "fine_tuning_job_id": self.job_id, "step_number": step,
            "fine_tuned_model_checkpoint": f"{self.model}:ckpt-step-{step}",
            "metrics": metrics})
        self.store.add_event(self.job_id, f"Checkpoint created at step {step}",
                             event_id=f"ftevent-{self.key}-c{step}", db=db)

    def finished(self) -> None:
        rows = read_rows(self.run_dir / "metrics.jsonl")
        tokens = max((r.get("tokens", 0) for r in rows), default=0)
        last = rows[-1] if rows else {}
        full = {k.replace("valid_", "full_valid_"): v for k, v in
                ((NAMES[k], last[k]) for k in ("eval/loss", "eval/token_accuracy")
                 if k in last)}
        if full:
            self._update_last_checkpoint(full)
        with self.store.tx() as db:
            if self.store.transition_in(db, self.job_id, ("running", "pausing"),
                                        status="succeeded",
                                        finished_at=now(), fine_tuned_model=self.model,
                                        trained_tokens=int(tokens)):
                self.store.add_event(self.job_id, f"New fine-tuned model created: "
                                     f"{self.model}", db=db)
                self.store.add_event(self.job_id, "The job has successfully completed", db=db)

    def _update_last_checkpoint(self, full: dict) -> None:
        with self.store.tx() as db:
            row = db.execute("SELECT id, obj FROM checkpoints WHERE job_id=? ORDER BY step "
                             "DESC LIMIT 1", (self.job_id,)).fetchone()
            if row:
                obj = json.loads(row[1])
                obj["metrics"].update(full)
                db.execute("UPDATE checkpoints SET obj=? WHERE id=?", (json.dumps(obj), row[0]))
