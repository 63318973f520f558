"""Shared pieces of the service's tests (tests/test_serve_*.py): a server on a free loopback
port in a thread, training files, and polling. No tests here."""
import json
import os
import signal
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager

import uvicorn

KEY = "sk-corral-test"
TERMINAL = ("succeeded", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """uvicorn serving `app` on 127.0.0.1 in a daemon thread; stop() runs the lifespan's
    shutdown (the scheduler stops its workers)."""

    def __init__(self, app):
        self.app, self.port = app, free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return self

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def chat_rows(n: int = 6) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"say {i}"},
                          {"role": "assistant", "content": f"{i} {i}"}]} for i in range(n)]


def dpo_rows(n: int = 4) -> list[dict]:
    return [{"input": {"messages": [{"role": "user", "content": f"add {i} and {i}"}]},
             "preferred_output": [{"role": "assistant", "content": str(2 * i)}],
             "non_preferred_output": [{"role": "assistant", "content": "no idea"}]}
            for i in range(n)]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def wait_for(client, job_id: str, statuses=TERMINAL, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck in {job.status}"
        time.sleep(0.2)


def logged_step(root, job_id: str) -> int:
    """The last training step JOB logged in its run's metrics.jsonl (0 before the first)."""
    path = root / "runs" / job_id / "metrics.jsonl"
    last = 0
    for line in path.read_text().splitlines() if path.exists() else ():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the line its worker is writing
        last = row["step"] if "loss" in row else last
    return last


def _db_free(root) -> bool:
    """Whether no process holds serve.db's write lock (a frozen worker must not hold it)."""
    db = sqlite3.connect(root / "serve.db", timeout=0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


@contextmanager
def frozen_between(pid_of, root, job_id: str, low: int, high: int, timeout_s: float = 120):
    """Yield with JOB's worker stopped (SIGSTOP) after a logged step in [LOW, HIGH] and
    holding no database lock, then let it go on (SIGCONT). What the test does meanwhile (a
    pause, a kill) lands mid-job however fast the machine trains; `pid_of()` is the worker's
    pid or None while it has none."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid = pid_of()
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)
            step = logged_step(root, job_id)
            if low <= step <= high and _db_free(root):
                try:
                    yield step
                finally:
                    _continue(pid)
                return
            _continue(pid)
            assert step <= high, f"job {job_id} passed step {high} between two looks"
        assert time.monotonic() < deadline, f"job {job_id} never reached step {low}"
        time.sleep(0.005)


def _continue(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass  # the test killed it


def worker_pid(root, job_id: str) -> int | None:
    """The pid of the process training JOB: its stdout is the job's log (serve/worker.py)."""
    log = str((root / "logs" / f"{job_id}.log").resolve())
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/fd/1") == log:
                return int(entry)
        except OSError:
            continue
    return None
