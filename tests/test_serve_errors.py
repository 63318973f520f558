"""Untrusted input to the service: each bad request is one OpenAI error object (message,
type, param, code) with the status the official client maps to its exceptions, and
`x-should-retry: false` where a retry cannot help; the server keeps serving. No job trains
here (the scheduler is off)."""
import httpx2 as httpx  # the HTTP client the openai SDK itself uses
import openai
import pytest
from test_serve_support import KEY, ThreadServer, chat_rows, jsonl

from corral.core.errors import CorralError
from corral.serve.app import create_app
from corral.serve.server import ServeOptions, check


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-errors")
    app = create_app(root, [KEY], scheduler=False, max_upload_bytes=1 << 16,
                     max_json_bytes=1 << 12)
    server = ThreadServer(app).start()
    client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=10)
    train = client.files.create(file=("t.jsonl", jsonl(chat_rows())), purpose="fine-tune")
    yield client, server, train.id
    server.stop()


def raw(server, method, path, key=KEY, headers=None, **kw):
    headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    return httpx.request(method, f"{server.url}{path}", headers=headers, **kw)


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if status not in (408, 429) and status < 500:
        assert response.headers["x-should-retry"] == "false"
    return error


def test_api_keys(served):
    client, server, _ = served
    assert error_of(raw(server, "GET", "/models", key=None), 401)["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url, api_key="sk-wrong", max_retries=0).models.list()
    assert client.models.list().data == []


def test_dashboard_guards_itself(served):
    """The dashboard at / takes a login cookie instead of the Bearer header; nothing else
    is let through without a key."""
    _, server, _ = served
    root = server.url.removesuffix("/v1")
    page = httpx.get(f"{root}/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
    assert httpx.get(f"{root}/dashboard/api/runs").status_code == 401
    assert httpx.get(f"{root}/dashboard/api/runs",
                     headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(f"{root}/dashboardx").status_code == 401
    assert httpx.get(f"{root}/v1/chat/serving").status_code == 401


def test_bad_job_requests(served):
    client, server, train = served
    create = client.fine_tuning.jobs.create
    cases = [
        (dict(model="m", training_file="file-nothere1234"), "training_file"),
        (dict(model="m", training_file=train, extra_body={"tools": []}), "tools"),
        (dict(model="m", training_file=train, seed="7"), "seed"),
        (dict(model="m", training_file=train, suffix="a:b"), "suffix"),
        (dict(model="m", training_file=train, metadata={"k": 1}), "metadata"),
        (dict(model="m", training_file=train, method={"type": "reinforcement"}),
         "method.type"),
        (dict(model="m", training_file=train, method={
            "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}),
         "method.supervised.hyperparameters.n_epochs"),
        (dict(model="m", training_file=train, method={
            "type": "supervised", "supervised": {"hyperparameters": {"beta": 0.1}}}),
         "method.supervised.hyperparameters.beta"),
        (dict(model="", training_file=train), "model"),
        (dict(model="m", training_file="../../serve.db"), "training_file"),
    ]
    for kwargs, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            create(**kwargs)
        assert caught.value.body["param"] == param, (kwargs, caught.value.body)
    assert "not available on this corral server yet" in str(_reinforcement(create, train))
    for body in (b"{not json", b"[1, 2]", b""):
        error_of(raw(server, "POST", "/fine_tuning/jobs", content=body), 400)
    assert client.fine_tuning.jobs.list().data == []  # nothing was made


def _reinforcement(create, train):
    try:
        create(model="m", training_file=train, method={"type": "reinforcement"})
    except openai.BadRequestError as exc:
        return exc.message


def test_unknown_ids_and_traversal(served):
    client, server, _ = served
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-doesnotexist")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-doesnotexist")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("ft:tiny:corral::abc/def")  # a slash, URL-encoded
    for path in ("/files/..%2F..%2Fserve.db/content", "/files/file-%00abcdefgh",
                 "/fine_tuning/jobs/..%2Fx/events", "/nowhere"):
        error_of(raw(server, "GET", path), 404)
    with pytest.raises(openai.NotFoundError):
        client.models.delete("ft:nothing-here")
    job = client.fine_tuning.jobs.create(model="m", training_file=served[2])
    with pytest.raises(openai.BadRequestError, match="only paused jobs can be resumed"):
        client.fine_tuning.jobs.resume(job.id)
    client.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.BadRequestError, match="only queued or running jobs"):
        client.fine_tuning.jobs.pause(job.id)


def test_bad_uploads(served):
    client, server, _ = served
    for name, data, purpose, param in [
            ("t.jsonl", jsonl(chat_rows()), "assistants", "purpose"),
            ("t.txt", jsonl(chat_rows()), "fine-tune", "file"),
            ("../../etc/t.jsonl", b"not json\n", "fine-tune", "file"),
            ("t.jsonl", b"\xff\xfe\n", "fine-tune", "file"),
            ("t.jsonl", b"", "fine-tune", "file")]:
        with pytest.raises(openai.BadRequestError) as caught:
            client.files.create(file=(name, data), purpose=purpose)
        assert caught.value.body["param"] == param
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.jsonl", b"{}\n" * 30000), purpose="fine-tune")
    assert caught.value.status_code == 413
    error_of(raw(server, "POST", "/fine_tuning/jobs", content=b" " * 5000,
                 headers={"content-type": "application/json"}), 413)
    chunked = iter([b" " * 3000, b" " * 3000])  # no Content-Length: counted as it streams
    error_of(raw(server, "POST", "/fine_tuning/jobs", content=chunked,
                 headers={"content-type": "application/json"}), 413)
    assert client.files.retrieve(served[2]).id == served[2]  # still serving


def test_file_in_use_and_lists(served):
    client, server, train = served
    job = client.fine_tuning.jobs.create(model="m", training_file=train)
    with pytest.raises(openai.BadRequestError, match="used by job"):
        client.files.delete(train)
    client.fine_tuning.jobs.cancel(job.id)
    assert error_of(raw(server, "GET", "/files", params={"limit": "0"}), 400)["param"] == \
        "limit"
    assert error_of(raw(server, "GET", "/files", params={"order": "up"}), 400)["param"] == \
        "order"


def test_serve_refuses_open_hosts_without_a_key(monkeypatch, tmp_path):
    monkeypatch.delenv("CORRAL_API_KEYS", raising=False)
    with pytest.raises(CorralError, match="refusing to listen on 0.0.0.0 without an API key"):
        check(ServeOptions(host="0.0.0.0"))
    assert check(ServeOptions(host="127.0.0.1")) == ([], {})
    monkeypatch.setenv("CORRAL_API_KEYS", "a, b")
    keys = tmp_path / "keys"
    keys.write_text("# ours\nc\n")
    assert check(ServeOptions(host="0.0.0.0", api_keys=str(keys)))[0] == ["a", "b", "c"]
    with pytest.raises(CorralError, match="--model"):
        check(ServeOptions(model=("nope",)))


def test_cli_parses_into_serve_options(monkeypatch):
    import argparse

    from corral.cli import serve as cli_serve

    monkeypatch.delenv("CORRAL_API_KEYS", raising=False)
    parser = argparse.ArgumentParser()
    cli_serve.register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "9", "--set",
                              "lora.r=4", "--model", "tiny=/m"])
    with pytest.raises(CorralError, match="without an API key"):
        args.func(args)  # refused before anything binds
