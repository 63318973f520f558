"""Durable jobs: a worker killed mid-job is replaced and the job resumes from its last
checkpoint (no step trained twice, the same final loss as an uninterrupted job); the server
killed with SIGKILL and restarted on the same root finds its queued job still queued and
its running job resumed; SIGTERM stops the server and its worker cleanly, leaving the job to
resume at the next start. Two workers never hold one job."""
import json
import os
import signal
import subprocess
import sys
import time

import openai
import pytest
from test_serve_support import (
    KEY,
    ThreadServer,
    chat_rows,
    free_port,
    frozen_between,
    jsonl,
    wait_for,
    worker_pid,
)

from corral.serve.app import create_app
from corral.serve.db import Store
from corral.testing import save_tiny

STEPS = 30
HYPER = {"n_epochs": STEPS}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "tiny")


def steps(root, job_id) -> list[int]:
    rows = (root / "runs" / job_id / "metrics.jsonl").read_text().splitlines()
    return [json.loads(r)["step"] for r in rows if "loss" in json.loads(r)]


def final_loss(root, job_id) -> float:
    rows = [json.loads(r) for r in
            (root / "runs" / job_id / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss" in r][-1]["loss"]


def test_a_killed_worker_resumes_from_its_checkpoint(tiny, tmp_path):
    root = tmp_path / "root"
    app = create_app(root, [KEY], models={"tiny": tiny}, save_every=5,
                     overrides=("lora.r=4",))
    server = ThreadServer(app).start()
    try:
        client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        train = client.files.create(file=("t.jsonl", jsonl(chat_rows())), purpose="fine-tune")
        jobs = [client.fine_tuning.jobs.create(model="tiny", training_file=train.id, seed=3,
                                               hyperparameters=HYPER) for _ in range(2)]
        first = jobs[0].id
        with frozen_between(lambda: worker_pid(root, first), root, first, 6, STEPS - 4):
            os.kill(worker_pid(root, first), signal.SIGKILL)  # after the checkpoint at 5
        for job in jobs:
            assert wait_for(client, job.id).status == "succeeded"
        messages = [e.message for e in client.fine_tuning.jobs.list_events(first, limit=100)]
    finally:
        server.stop()
    assert any(m.startswith("The worker process exited (code -9)") for m in messages)
    assert any(m.startswith("Resuming from the checkpoint at step") for m in messages)
    assert steps(root, first) == list(range(1, STEPS + 1))  # each step once
    uninterrupted = jobs[1].id
    assert final_loss(root, first) == pytest.approx(final_loss(root, uninterrupted),
                                                    rel=1e-5)


def start_server(root, port, tiny) -> subprocess.Popen:
    code = ("from corral.serve.server import ServeOptions, serve; "
            f"serve(ServeOptions(root={str(root)!r}, port={port}, save_every=5, "
            f"model=('tiny={tiny}',), set=('lora.r=4',)))")
    env = {**os.environ, "CORRAL_API_KEYS": KEY, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE,
                            text=True)


def connect(port, proc) -> openai.OpenAI:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY,
                           max_retries=0, timeout=10)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.models.list()
            return client
        except openai.APIConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)


def stop_gracefully(proc, said: str) -> None:
    """SIGTERM: requests finish, workers stop, running jobs stay running for the next start."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert f"corral serve: stopped; {said}" in proc.stderr.read()


def test_kill_9_the_server_and_restart(tiny, tmp_path):
    root, port = tmp_path / "root", free_port()
    proc = start_server(root, port, tiny)
    try:
        client = connect(port, proc)
        train = client.files.create(file=("t.jsonl", jsonl(chat_rows())), purpose="fine-tune")
        running = client.fine_tuning.jobs.create(model="tiny", training_file=train.id,
                                                 hyperparameters=HYPER).id
        queued = client.fine_tuning.jobs.create(model="tiny", training_file=train.id).id
        wait_for(client, queued, ("queued",))
        with frozen_between(lambda: worker_pid(root, running), root, running, 6, STEPS - 4):
            proc.kill()  # the server, mid-job, after the checkpoint at 5
        proc.wait()
        store = Store(root)
        assert [store.job(j)["status"] for j in (running, queued)] == ["running", "queued"]
        proc = start_server(root, port, tiny)
        connect(port, proc)
        stop_gracefully(proc, "1 running job(s) resume on the next start")
        assert store.job(running)["status"] == "running"
        proc = start_server(root, port, tiny)
        client = connect(port, proc)
        for job in (running, queued):
            assert wait_for(client, job).status == "succeeded"
        assert steps(root, running) == list(range(1, STEPS + 1))
        stop_gracefully(proc, "0 running job(s)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_two_workers_never_hold_one_job(tmp_path):
    from corral.serve.worker import _lock

    held = _lock(tmp_path, "ftjob-racing0001")
    with pytest.raises(BlockingIOError):
        _lock(tmp_path, "ftjob-racing0001", wait_s=0.3)
    held.close()  # the kernel drops the lock with the holder (a dead worker too)
    _lock(tmp_path, "ftjob-racing0001", wait_s=0.3).close()
