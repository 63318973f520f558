"""The service end to end with the official `openai` client against a server on loopback:
upload, a supervised job on the tiny model (events, checkpoints, the ft: model), cancel, a
dpo job, a file that fails validation, and retried creates that make one job."""

import httpx2 as httpx  # the HTTP client the openai SDK itself uses
import openai
import pytest
from test_serve_support import KEY, ThreadServer, chat_rows, dpo_rows, jsonl, wait_for

from corral.serve.app import create_app
from corral.testing import save_tiny


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    tiny = save_tiny(base / "tiny")
    app = create_app(base / "root", [KEY], models={"tiny": tiny}, save_every=2,
                     overrides=("lora.r=4",), max_upload_bytes=1 << 20, max_json_bytes=1 << 16)
    server = ThreadServer(app).start()
    client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=30)
    yield client, server, base / "root"
    server.stop()


def upload(client, rows, name="train.jsonl"):
    return client.files.create(file=(name, jsonl(rows)), purpose="fine-tune")


def test_supervised_job_end_to_end(served):
    client, _, root = served
    train, val = upload(client, chat_rows()), upload(client, chat_rows(3), "val.jsonl")
    assert train.status == "processed" and train.filename == "train.jsonl"
    assert client.files.content(train.id).read() == jsonl(chat_rows())
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=train.id, validation_file=val.id, suffix="demo",
        seed=7, metadata={"team": "a"},
        integrations=[{"type": "wandb", "wandb": {"project": "p"}}],
        method={"type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": 4, "batch_size": 2}}})
    assert job.status == "validating_files" and job.seed == 7
    assert job.hyperparameters.n_epochs == 4 and job.hyperparameters.batch_size == 2
    done = wait_for(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model.startswith("ft:tiny:corral:demo:") and done.trained_tokens > 0
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=5))  # pages of 5
    messages = [e.message for e in events]
    assert any("ignored by corral: integrations" in m for m in messages)
    assert "Files validated, moving job to queued state" in messages
    assert any(e.type == "metrics" and "train_loss" in e.data for e in events)
    started = next(e for e in events if e.message == "Fine-tuning job started")
    assert "train.epochs=4" in started.data["corral_overrides"]
    assert f"train.batch_tokens={2 * 1024}" in started.data["corral_overrides"]
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [4, 2]  # newest first
    last = checkpoints[0]
    assert last.metrics.train_loss > 0 and last.metrics.valid_loss > 0
    assert last.metrics.full_valid_loss == last.metrics.valid_loss
    assert last.fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-4"
    assert (root / "runs" / job.id / "final").is_dir()  # a run like any CLI run
    from corral import api

    lines = api.lineage(api.LineageOptions(job.id, root=str(root / "runs"))).lines
    assert any(job.id in line for line in lines)
    reply = api.chat(api.ChatOptions(model=job.id, prompt="say 1", max_new_tokens=4,
                                     root=str(root / "runs")))
    assert isinstance(reply.text, str)

    assert done.fine_tuned_model in [m.id for m in client.models.list()]
    assert client.models.retrieve(done.fine_tuned_model).owned_by == "corral"
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "a"})] == [job.id]
    assert list(client.fine_tuning.jobs.list(metadata={"team": "b"})) == []
    assert client.models.delete(done.fine_tuned_model).deleted
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(done.fine_tuned_model)
    with pytest.raises(openai.BadRequestError, match="already succeeded"):
        client.fine_tuning.jobs.cancel(job.id)


def test_cancel_stops_the_worker(served):
    client, server, _ = served
    train = upload(client, chat_rows())
    job = client.fine_tuning.jobs.create(model="tiny", training_file=train.id,
                                         hyperparameters={"n_epochs": 1000})
    wait_for(client, job.id, ("running",))
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    scheduler = server.app.state.corral.scheduler
    proc = scheduler.procs.get(job.id)
    if proc is not None:
        assert proc.wait(timeout=20) is not None
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    events = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert "Fine-tuning job cancelled" in events
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        client.fine_tuning.jobs.cancel(job.id)


def test_dpo_job(served):
    client, _, _ = served
    train = upload(client, dpo_rows(), "prefs.jsonl")
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=train.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 2,
                                                           "learning_rate_multiplier": 2}}})
    done = wait_for(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.method.type == "dpo" and done.fine_tuned_model.startswith("ft:tiny:corral::")
    started = next(e for e in client.fine_tuning.jobs.list_events(job.id)
                   if e.message == "Fine-tuning job started")
    assert {"dpo.beta=0.2", "train.lr=0.0004"} <= set(started.data["corral_overrides"])


def test_bad_rows_fail_in_validating_files(served):
    client, _, _ = served
    bad = upload(client, [chat_rows(1)[0], {"messages": 3}])
    job = client.fine_tuning.jobs.create(model="tiny", training_file=bad.id)
    done = wait_for(client, job.id)
    assert done.status == "failed" and done.error.param == "training_file"
    assert f"{bad.id}:2: 'messages' must be a list of messages" in done.error.message
    # a dpo job given chat rows: the preference reader's file:line message
    job = client.fine_tuning.jobs.create(model="tiny", training_file=upload(
        client, chat_rows(2)).id, method={"type": "dpo"})
    assert wait_for(client, job.id).status == "failed"


def test_a_retried_create_makes_one_job(served):
    client, server, _ = served
    train = upload(client, chat_rows())
    body = {"model": "tiny", "training_file": train.id, "seed": 1,
            "hyperparameters": {"n_epochs": 1000}}
    headers = {"Authorization": f"Bearer {KEY}", "x-stainless-retry-count": "1"}
    first = httpx.post(f"{server.url}/fine_tuning/jobs", json=body, headers=headers).json()
    again = httpx.post(f"{server.url}/fine_tuning/jobs", json=body, headers=headers).json()
    assert first["id"] == again["id"]
    keyed = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": "k1"}
    one = httpx.post(f"{server.url}/fine_tuning/jobs", json=body, headers=keyed).json()
    two = httpx.post(f"{server.url}/fine_tuning/jobs", json=body, headers=keyed).json()
    assert one["id"] == two["id"] != first["id"]
    for ident in (first["id"], one["id"]):
        assert client.fine_tuning.jobs.cancel(ident).status == "cancelled"


def test_lists_page_like_openai(served):
    client, _, _ = served
    ids = [upload(client, chat_rows(1), f"p{i}.jsonl").id for i in range(3)]
    page = client.files.list(limit=2, order="asc")
    assert page.has_more and len(page.data) == 2
    every = [f.id for f in client.files.list(limit=2, order="desc")]  # auto-paging
    assert every[:3] == ids[::-1] and len(every) == len(set(every))
    assert client.files.delete(ids[0]).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(ids[0])
    raw = httpx.get(f"{client.base_url}files", params={"after": "file-nothere123"},
                    headers={"Authorization": f"Bearer {KEY}"})
    assert raw.status_code == 400 and raw.json()["error"]["param"] == "after"
