"""A worker process: `python -m corral.serve.worker ROOT`. It imports the training stack,
then waits for one order on stdin (`{"job": ID, "config": {...}}`), runs that job through
the method contract (`corral.api.train` with `TrainOptions`) in the run store at
ROOT/runs/<job id>, and exits. It dies with the server (PR_SET_PDEATHSIG), holds the job's
lock file while it works (two workers never train one job) and resumes from the run's last
checkpoint when an earlier worker died mid-job."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from corral.serve import jobspec
from corral.serve.db import Store, now
from corral.serve.progress import Progress, checkpoint_steps, read_rows
from corral.train.stop import request_stop


def _die_with_parent() -> None:
    """SIGKILL this worker when the server dies (kill -9 included), so a restarted server
    never finds an orphan still training its job."""
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the server died before the call above took effect
        sys.exit(0)


def _lock(root: Path, job_id: str, wait_s: float = 60.0):
    """The job's lock (flock, released by the kernel when this process dies)."""
    (root / "locks").mkdir(exist_ok=True)
    handle = open(root / "locks" / f"{job_id}.lock", "w")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def model_path(store: Store, root: Path, model: str, aliases: dict) -> str:
    if model in aliases:
        return aliases[model]
    if model.startswith("ft:"):
        job = store.model_job(model)
        if job is None:
            raise ValueError(f"model {model} is not a fine-tuned model of this server")
        return str(root / "runs" / job["id"] / "final")
    return model


def job_overrides(store: Store, root: Path, row: dict, config: dict) -> list[str]:
    spec = row["spec"]
    files = root / "files"
    paths = {"model": model_path(store, root, spec["model"], config.get("models", {})),
             "train": str(files / f"{spec['training_file']}.jsonl"),
             "validation": str(files / f"{spec['validation_file']}.jsonl")
             if spec["validation_file"] else "",
             "run_root": str(root / "runs"), "run_name": row["obj"]["id"],
             "max_length": config.get("max_length", 1024)}
    out = jobspec.overrides(spec, paths, config.get("base_lr", 2e-4))
    every = int(config.get("save_every", 50))
    out += [f"train.save_every={every}", "train.keep_checkpoints=3"]
    if spec["validation_file"]:
        out.append(f"train.eval_every={every}")
    return out + list(config.get("overrides", ()))


def run_job(root: Path, job_id: str, config: dict) -> int:
    from corral.api import TrainOptions, train
    from corral.core.errors import CorralError

    store = Store(root)
    run_dir = root / "runs" / job_id
    resume = bool(checkpoint_steps(run_dir))
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # died before its first checkpoint: start over
    obj = store.transition(job_id, ("queued", "running"), status="running")
    if obj is None:
        return 0  # cancelled (or finished) meanwhile
    row = store.job_row(job_id)
    progress = Progress(store, row, run_dir)
    try:
        overrides = job_overrides(store, root, row, config)
        progress.started(resume, overrides)
        progress.start()
        train(TrainOptions(row["spec"]["method"], overrides=tuple(overrides),
                           resume=job_id if resume else None))
    except (CorralError, ValueError) as exc:
        progress.stop()
        return _fail(store, job_id, "invalid_request", str(exc))
    except Exception as exc:
        progress.stop()
        traceback.print_exc()
        return _fail(store, job_id, "server_error", f"training failed: {type(exc).__name__}: "
                     f"{exc}; see the server's logs/{job_id}.log", code_out=1)
    progress.stop()
    if _PAUSE.is_set() and "stopped" in (read_rows(run_dir / "metrics.jsonl") or [{}])[-1]:
        return 0  # paused at a checkpoint: the server marks the job paused when this exits
    progress.finished()
    return 0


_PAUSE = threading.Event()  # the server asked this worker to pause (SIGUSR1)


def _pause(*_) -> None:
    """The server's pause: the loop stops before its next step and checkpoints, as when a
    budget is spent (train/stop.py); `run.resume` later continues from that step exactly."""
    _PAUSE.set()
    request_stop("paused by the server")


def _fail(store: Store, job_id: str, code: str, message: str, code_out: int = 0) -> int:
    error = {"code": code, "message": message, "param": None}
    with store.tx() as db:
        if store.transition_in(db, job_id, ("running", "pausing"), status="failed",
                               finished_at=now(),
                               error=error):
            store.add_event(job_id, message, level="error", db=db)
    return code_out


def _warm_up() -> None:
    """Import the training stack before an order comes (a spare waits warm: ~5 s saved)."""
    import peft  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    from corral.methods import registry

    registry()


def main(argv: list[str]) -> int:
    _die_with_parent()
    signal.signal(signal.SIGUSR1, _pause)
    root = Path(argv[1])
    _warm_up()

    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the server stopped before giving this spare a job
    order = json.loads(line)
    job_id = order["job"]
    log = open(root / "logs" / f"{job_id}.log", "ab", buffering=0)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    with _lock(root, job_id):
        return run_job(root, job_id, order["config"])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
