"""Runs jobs: a thread of the server that validates files (the `validating_files` state)
and hands queued jobs to worker processes, `workers` at a time (1 by default).

A worker is `python -m corral.serve.worker ROOT` started ahead of need while a slot is free
(a warm spare that has imported torch already) and given one job on its stdin; it runs the
job through `corral.api.train` and exits. A job whose worker dies (killed, crashed) stays
`running` and is handed to a new worker, which resumes it from the run's last checkpoint
(`run.resume`); after MAX_ATTEMPTS deaths it fails. On restart after `kill -9`, running jobs
resume the same way and queued jobs stay queued. Cancel marks the job cancelled in the
database first, then stops its worker (SIGTERM): the worker never overwrites a cancelled
job. On shutdown the workers are stopped and their jobs stay running, to resume later."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from corral.serve.db import now

MAX_ATTEMPTS = 3


class Scheduler:
    def __init__(self, state, workers: int = 1, poll_s: float = 0.5):
        self.state, self.workers, self.poll_s = state, max(1, workers), poll_s
        self.procs: dict[str, subprocess.Popen] = {}
        self.spare: subprocess.Popen | None = None
        self._wake, self._stop = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="corral-scheduler",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # a bad tick must not end scheduling
                print(f"corral serve: scheduler: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def tick(self) -> None:
        with self._lock:
            self._reap()
            for job_id in self.state.store.jobs_in(("pausing",)):
                if job_id not in self.procs:  # no worker holds it (a restart, say)
                    self._paused(job_id)
            self._validate()
            self._launch()
            self._keep_spare()

    # -- validation --------------------------------------------------------------------
    def _validate(self) -> None:
        from corral.serve.validate import validate_job

        store = self.state.store
        for job_id in store.jobs_in(("validating_files",)):
            if self._stop.is_set():
                return
            error = validate_job(self.state, store.job_row(job_id))
            with store.tx() as db:
                if error is None:
                    if store.transition_in(db, job_id, ("validating_files",), status="queued"):
                        store.add_event(job_id, "Files validated, moving job to queued state",
                                        db=db)
                elif store.transition_in(db, job_id, ("validating_files",), status="failed",
                                         finished_at=now(), error=error):
                    store.add_event(job_id, error["message"], level="error", db=db)

    # -- workers -----------------------------------------------------------------------
    def _spawn(self) -> subprocess.Popen:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.setdefault("OMP_NUM_THREADS", "1")
        logs = self.state.root / "logs"
        logs.mkdir(exist_ok=True)
        with open(logs / "workers.log", "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "corral.serve.worker",
                                     str(self.state.root)], stdin=subprocess.PIPE,
                                    stdout=log, stderr=subprocess.STDOUT, env=env)

    def _keep_spare(self) -> None:
        if self.spare is not None and self.spare.poll() is not None:
            self.spare = None
        free = len(self.procs) < self.workers  # no spare warming beside a full house
        if self.spare is None and free and not self._stop.is_set() and self.state.warm_spare:
            self.spare = self._spawn()

    def _launch(self) -> None:
        store = self.state.store
        waiting = [j for j in store.jobs_in(("running",)) + store.jobs_in(("queued",))
                   if j not in self.procs]
        while waiting and len(self.procs) < self.workers and not self._stop.is_set():
            job_id = waiting.pop(0)
            proc, self.spare = self.spare or self._spawn(), None
            if proc.poll() is not None:
                proc = self._spawn()
            order = {"job": job_id, "config": self.state.worker_config()}
            try:
                proc.stdin.write((json.dumps(order) + "\n").encode())
                proc.stdin.close()
            except OSError:  # the spare died meanwhile: next tick tries again
                continue
            self.procs[job_id] = proc

    def _reap(self) -> None:
        store = self.state.store
        for job_id, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.procs[job_id]
            job = store.job(job_id)
            if job is not None and job["status"] == "pausing":
                self._paused(job_id)
                continue
            if job is None or job["status"] not in ("queued", "running"):
                continue
            attempts = store.count_attempt(job_id)
            if attempts >= MAX_ATTEMPTS:
                error = {"code": "worker_died", "param": None,
                         "message": f"the worker process died {attempts} times (last exit "
                                    f"code {code}); see {self.state.root}/logs/{job_id}.log"}
                if store.transition(job_id, ("queued", "running"), status="failed",
                                    finished_at=now(), error=error):
                    store.add_event(job_id, error["message"], level="error")
            else:
                store.add_event(job_id, f"The worker process exited (code {code}); the job "
                                "resumes from its last checkpoint", level="warn")

    def _paused(self, job_id: str) -> None:
        from corral.serve.progress import checkpoint_steps

        steps = checkpoint_steps(self.state.root / "runs" / job_id)
        where = f"the checkpoint at step {steps[-1]}" if steps else "the start"
        with self.state.store.tx() as db:
            if self.state.store.transition_in(db, job_id, ("pausing",), status="paused"):
                self.state.store.add_event(job_id, f"Fine-tuning job paused; resume continues "
                                           f"from {where}", data={"step": steps[-1]
                                                                  if steps else 0}, db=db)

    # -- control -----------------------------------------------------------------------
    def pause(self, job_id: str) -> None:
        """Ask the job's worker to stop before its next step (SIGUSR1): it saves that step as
        a checkpoint and exits; the reaper then marks the job paused."""
        proc = self.procs.get(job_id)
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGUSR1)
            except OSError:
                pass
        self.wake()

    def cancel(self, job_id: str) -> None:
        proc = self.procs.get(job_id)  # no lock: a long validation must not delay a cancel
        if proc is not None and proc.poll() is None:
            proc.terminate()
        self.wake()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop scheduling and the workers; their jobs stay running, to resume on restart."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout_s)
        with self._lock:
            procs = [*self.procs.values(), *([self.spare] if self.spare else [])]
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + timeout_s
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
