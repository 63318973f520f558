"""Pause and resume through the official client: a running job goes pausing -> paused (its
worker saves a checkpoint at the step it stopped after and exits), resume continues it from
that checkpoint exactly (each step trained once, the same final loss as a job never paused);
a queued job pauses at once; pausing or resuming a job in the wrong state is a 400."""
import json

import openai
import pytest
from test_serve_restart import final_loss, steps
from test_serve_support import KEY, ThreadServer, chat_rows, frozen_between, jsonl, wait_for

from corral.serve.app import create_app
from corral.testing import save_tiny

STEPS = 30
HYPER = {"n_epochs": STEPS}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "tiny")


def test_pause_and_resume_continue_exactly(tiny, tmp_path):
    root = tmp_path / "root"
    app = create_app(root, [KEY], models={"tiny": tiny}, save_every=7,
                     overrides=("lora.r=4",))
    server = ThreadServer(app).start()
    try:
        client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        train = client.files.create(file=("t.jsonl", jsonl(chat_rows())), purpose="fine-tune")
        first, second = (client.fine_tuning.jobs.create(
            model="tiny", training_file=train.id, seed=3, hyperparameters=HYPER).id
            for _ in range(2))
        wait_for(client, second, ("queued",))  # one worker: the second waits its turn
        assert client.fine_tuning.jobs.pause(second).status == "paused"
        with frozen_between(lambda: _pid(app, first), root, first, 8, STEPS - 4):
            assert client.fine_tuning.jobs.pause(first).status == "pausing"
        assert wait_for(client, first, ("paused", "succeeded")).status == "paused"
        with pytest.raises(openai.BadRequestError, match="only queued or running"):
            client.fine_tuning.jobs.pause(first)
        at = _paused_step(client, first)
        assert at in _checkpoint_steps(root, first)  # the pause saved where it stopped
        assert client.fine_tuning.jobs.resume(first).status == "queued"
        assert wait_for(client, first).status == "succeeded"
        with pytest.raises(openai.BadRequestError, match="only paused jobs"):
            client.fine_tuning.jobs.resume(first)
        with pytest.raises(openai.BadRequestError, match="only queued or running") as caught:
            client.fine_tuning.jobs.pause(first)
        assert caught.value.status_code == 400
        client.fine_tuning.jobs.resume(second)
        assert wait_for(client, second).status == "succeeded"
        messages = [e.message for e in client.fine_tuning.jobs.list_events(first, limit=200)]
    finally:
        server.stop()
    assert any(m.startswith(f"Resuming from the checkpoint at step {at}") for m in messages)
    assert steps(root, first) == list(range(1, STEPS + 1))  # each step once, none redone
    rows = [json.loads(r) for r in (root / "runs" / first / "metrics.jsonl").open()]
    assert {"step": at, "stopped": "paused by the server"}.items() <= \
        next(r for r in rows if "stopped" in r).items()  # stopped cleanly, not killed
    assert final_loss(root, first) == pytest.approx(final_loss(root, second), rel=1e-5)


def _pid(app, job_id) -> int | None:
    proc = app.state.corral.scheduler.procs.get(job_id)
    return proc.pid if proc is not None and proc.poll() is None else None


def _paused_step(client, job_id) -> int:
    for event in client.fine_tuning.jobs.list_events(job_id, limit=200):
        if event.message.startswith("Fine-tuning job paused"):
            return event.data["step"]
    raise AssertionError("no paused event")


def _checkpoint_steps(root, job_id) -> list[int]:
    ckpts = root / "runs" / job_id / "checkpoints"
    return [int(p.name[5:]) for p in ckpts.iterdir() if p.name.startswith("step-")]

