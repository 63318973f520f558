"""Shared pieces of the service's tests (tests/test_serve_*.py): a server on a free loopback
port in a thread, training files, and polling. No tests here."""
import json
import socket
import threading
import time

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
