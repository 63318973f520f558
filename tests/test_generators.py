"""Generators: the OpenAI-compatible client against a local http.server playing the endpoint
(retries, Retry-After, bad keys, malformed replies, concurrency, n, usage), and local models
through the engine."""
import json
import socket
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from corral.core.errors import CorralError
from corral.infer import remote
from corral.infer.engine import Engine, SamplingParams
from corral.infer.generators import EndpointGenerator, Generator, LocalGenerator, generator_for
from corral.infer.remote import ChatClient, RequestError, parse_endpoint, retry_after_seconds
from corral.store.jobs import GenerationJob
from corral.testing import save_tiny, tiny_model, tiny_tokenizer

HI = [{"role": "user", "content": "hi"}]


def echo(i, body):
    """A well-behaved server: n choices echoing the last message, 3 prompt + 2 completion
    tokens per choice."""
    n = body.get("n", 1)
    text = body["messages"][-1]["content"]
    return 200, {}, {"choices": [{"message": {"role": "assistant", "content": f"{text}:{k}"},
                                  "finish_reason": "length" if k else "stop"}
                                 for k in range(n)],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 2 * n}}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802  (http.server's name)
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            i = len(srv.bodies)
            srv.bodies.append(body)
            srv.auth.append(self.headers.get("Authorization"))
            srv.active += 1
            srv.max_active = max(srv.max_active, srv.active)
        try:
            status, headers, payload = srv.respond(i, body)
            if srv.delay:
                time.sleep(srv.delay)
        finally:
            with srv.lock:
                srv.active -= 1
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(respond=echo, delay=0.0):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.respond, server.delay, server.lock = respond, delay, threading.Lock()
        server.bodies, server.auth, server.active, server.max_active = [], [], 0, 0
        threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def waits(monkeypatch):
    """Record the client's sleeps instead of sleeping."""
    recorded = []
    monkeypatch.setattr(remote.time, "sleep", recorded.append)
    return recorded


def client(base, **kw):
    return ChatClient(parse_endpoint(base + "#m", environ={}), **kw)


def script(*steps):
    """A server answering request i with steps[i] (the last step repeats); a step is a
    (status, headers, payload) or None for a good echo."""
    def respond(i, body):
        step = steps[min(i, len(steps) - 1)]
        return echo(i, body) if step is None else step
    return respond


# ---------------------------------------------------------------- specs
def test_endpoint_specs_and_environment():
    env = {"OPENAI_BASE_URL": "http://h:1/v1/", "OPENAI_API_KEY": "sk-a"}
    assert parse_endpoint("openai:gpt-x", env) == remote.Endpoint("http://h:1/v1", "gpt-x", "sk-a")
    env["CORRAL_OPENAI_BASE_URL"], env["CORRAL_OPENAI_API_KEY"] = "http://c:2/v1", "sk-c"
    assert parse_endpoint("openai:gpt-x", env).base_url == "http://c:2/v1"
    assert parse_endpoint("openai:gpt-x", env).api_key == "sk-c"
    ep = parse_endpoint("https://x.org/v1/chat/completions#org/model", {})
    assert (ep.base_url, ep.model, ep.api_key) == ("https://x.org/v1", "org/model", None)
    assert ep.identity() == {"kind": "endpoint", "url": "https://x.org/v1", "model": "org/model"}
    for bad, needle in [("http://x/v1", "names no model"), ("openai:", "names no model"),
                        ("openai:gpt-x", "needs an API key")]:
        with pytest.raises(CorralError, match=needle):
            parse_endpoint(bad, {})


def test_retry_after_reads_seconds_and_http_dates():
    now = time.time()
    assert retry_after_seconds("3") == 3.0
    in_ten = formatdate(now + 10, usegmt=True)
    assert retry_after_seconds(in_ten, now=now) == pytest.approx(10, abs=1)
    assert retry_after_seconds(formatdate(now - 10, usegmt=True), now=now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


# ---------------------------------------------------------------- retries and failures
def test_429_waits_at_least_retry_after_then_succeeds(serve, waits):
    base, server = serve(script((429, {"Retry-After": "2"}, {"error": {"message": "slow"}}),
                                None))
    c = client(base, backoff_s=0.01)
    [[gen]] = c.chat([HI], SamplingParams(max_new_tokens=5))
    assert gen.text == "hi:0" and gen.finish_reason == "stop"
    assert gen.token_ids == [] and gen.logprobs == []
    assert len(server.bodies) == 2 and waits and waits[0] >= 2
    assert c.usage.as_dict() == {"prompt_tokens": 3, "completion_tokens": 2, "requests": 2,
                                 "retries": 1}


def test_429_with_an_http_date_retry_after(serve, waits):
    later = formatdate(time.time() + 5, usegmt=True)
    base, _ = serve(script((429, {"Retry-After": later}, b""), None))
    client(base, backoff_s=0.01).chat([HI])
    assert 3.5 <= waits[0] <= 5.5


def test_500_twice_then_200_backs_off_exponentially(serve, waits):
    base, server = serve(script((500, {}, b"oops"), (503, {}, b"busy"), None))
    c = client(base, backoff_s=0.5)
    assert c.chat([HI])[0][0].text == "hi:0"
    assert len(server.bodies) == 3 and c.usage.retries == 2
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0  # equal jitter around 2**attempt


def test_retries_are_bounded(serve, waits):
    base, server = serve(script((500, {}, b"down")))
    c = client(base, max_retries=2, backoff_s=0.01)
    with pytest.raises(RequestError, match="gave up after 2 retries"):
        c.chat([HI])
    assert len(server.bodies) == 3 and len(waits) == 2


def test_connection_errors_are_retried(waits):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = client(f"http://127.0.0.1:{port}/v1", max_retries=1, backoff_s=0.01)
    # retried, then a server that never answered stops the client with the cause
    with pytest.raises(CorralError, match="could not be reached.*refused.*2 attempts"):
        c.chat([HI, HI], return_errors=True)
    assert len(waits) == 1
    with pytest.raises(CorralError, match="could not be reached"):  # stopped: no new tries
        c.chat([HI])
    assert len(waits) == 1


def test_a_server_that_answered_then_went_away_fails_only_those_rows(serve, waits):
    base, server = serve(echo)
    c = client(base, max_retries=1, backoff_s=0.01)
    assert c.chat([HI])[0][0].text == "hi:0"
    server.shutdown()
    server.server_close()
    [err] = c.chat([HI], return_errors=True)
    assert isinstance(err, RequestError) and "gave up after 1 retries" in str(err)


def test_bad_key_is_one_error_after_one_request(serve, waits):
    base, server = serve(script((401, {}, {"error": {"message": "Incorrect API key"}})))
    c = client(base)
    with pytest.raises(CorralError) as info:
        c.chat([HI] * 5)
    message = str(info.value)
    assert "\n" not in message and "OPENAI_API_KEY" in message and "401" in message
    assert len(server.bodies) == 1 and waits == []
    with pytest.raises(CorralError):  # the client stays stopped: no more requests
        c.chat([HI])
    assert len(server.bodies) == 1


def test_400_shows_the_servers_message_without_retrying(serve, waits):
    base, server = serve(script((400, {}, {"error": {"message": "max_tokens is too large"}})))
    with pytest.raises(RequestError, match="HTTP 400.*max_tokens is too large"):
        client(base).chat([HI])
    assert len(server.bodies) == 1 and waits == []


def test_malformed_replies_fail_only_their_conversation(serve):
    def respond(i, body):
        text = body["messages"][-1]["content"]
        return {"bad-json": (200, {}, b"<html>not json"),
                "no-choices": (200, {}, {"choices": []})}.get(text) or echo(i, body)
    base, _ = serve(respond)
    chats = [[{"role": "user", "content": t}] for t in ("a", "bad-json", "b", "no-choices")]
    out = client(base).chat(chats, return_errors=True)
    assert out[0][0].text == "a:0" and out[2][0].text == "b:0"
    assert isinstance(out[1], RequestError) and "malformed" in str(out[1])
    assert isinstance(out[3], RequestError) and "no choices" in str(out[3])
    with pytest.raises(RequestError, match="malformed"):
        client(base).chat(chats)


def test_a_job_records_malformed_replies_per_row(serve, tmp_path):
    def respond(i, body):
        text = body["messages"][-1]["content"]
        return (200, {}, b"{truncated") if text == "q2" else echo(i, body)
    base, _ = serve(respond)
    gen = generator_for(base + "#m")
    rows = [{"q": f"q{i}"} for i in range(4)]

    def answer(batch):
        chats = [[{"role": "user", "content": r["q"]}] for r in batch]
        out = gen.chat(chats, SamplingParams(max_new_tokens=4), return_errors=True)
        return [g if isinstance(g, Exception) else {"q": r["q"], "a": g[0].text}
                for r, g in zip(batch, out)]
    job = GenerationJob(tmp_path / "out.jsonl", model=gen.identity(), usage=gen.usage,
                        progress=False)
    report = job.run(rows, answer)
    assert (report.generated, report.failed) == (3, 1)
    assert report.failures[0]["index"] == 2 and "malformed" in report.failures[0]["error"]
    assert report.usage["requests"] == 4


# ---------------------------------------------------------------- concurrency, n, usage
def test_concurrency_limit_is_honoured(serve):
    base, server = serve(delay=0.05)
    out = client(base, concurrency=3).chat([[{"role": "user", "content": str(i)}]
                                            for i in range(12)])
    assert [g[0].text for g in out] == [f"{i}:0" for i in range(12)]  # in input order
    assert 2 <= server.max_active <= 3


def test_n_is_sent_once_when_the_server_honours_it(serve):
    base, server = serve()
    c = client(base)
    [gens] = c.chat([HI], SamplingParams(n=3, seed=7))
    assert [g.text for g in gens] == ["hi:0", "hi:1", "hi:2"]
    assert [g.sample_index for g in gens] == [0, 1, 2]
    assert [g.finish_reason for g in gens] == ["stop", "length", "length"]
    assert len(server.bodies) == 1 and server.bodies[0]["n"] == 3


def test_n_ignored_by_the_server_means_n_requests_with_distinct_seeds(serve):
    def one_choice(i, body):
        status, headers, reply = echo(i, dict(body, n=1))
        reply["choices"][0]["message"]["content"] = f"seed{body.get('seed')}"
        return status, headers, reply
    base, server = serve(one_choice)
    c = client(base)
    out = c.chat([HI, HI], SamplingParams(n=3, seed=10))
    assert [[g.text for g in gens] for gens in out] == [["seed10", "seed11", "seed12"]] * 2
    assert len(server.bodies) == 6
    assert c.usage.prompt_tokens == 18 and c.usage.completion_tokens == 12
    assert c.usage.requests == 6 and c.usage.retries == 0
    assert "n" not in server.bodies[-1]  # learnt: later samples are asked one at a time


def test_parameters_reach_the_server(serve, monkeypatch):
    base, server = serve()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("CORRAL_OPENAI_API_KEY", raising=False)
    gen = generator_for(base + "#served-model")
    assert isinstance(gen, EndpointGenerator) and gen.name == base + "#served-model"
    assert gen.identity() == {"kind": "endpoint", "url": base, "model": "served-model"}
    gen.chat([[{"role": "user", "content": "x", "weight": 0.0}]],
             SamplingParams(max_new_tokens=9, temperature=0.5, top_p=0.9, stop=("END",), seed=3))
    body = server.bodies[0]
    assert body == {"model": "served-model", "messages": [{"role": "user", "content": "x"}],
                    "max_tokens": 9, "temperature": 0.5, "top_p": 0.9, "stop": ["END"],
                    "seed": 3}
    assert server.auth == ["Bearer sk-test"]
    assert gen.usage.as_dict() == {"prompt_tokens": 3, "completion_tokens": 2, "requests": 1,
                                   "retries": 0}


# ---------------------------------------------------------------- local models
def test_local_generator_answers_chats_through_the_engine(tmp_path):
    path = save_tiny(tmp_path / "tiny")
    gen = generator_for(path)
    assert isinstance(gen, LocalGenerator) and gen.name == path
    chats = [HI, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2"}]]
    out = gen.chat(chats, SamplingParams(max_new_tokens=4, n=2, seed=0))
    assert [len(g) for g in out] == [2, 2]
    assert [(g.prompt_index, g.sample_index) for gens in out for g in gens] == [
        (0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(1 <= len(g.token_ids) <= 4 and isinstance(g.text, str) for gs in out for g in gs)
    tok = gen.engine.tokenizer
    prompt_ids = [tok(gen.engine.render_chat(c), add_special_tokens=False)["input_ids"]
                  for c in chats]
    assert gen.usage.prompt_tokens == sum(map(len, prompt_ids)) and gen.usage.requests == 2
    assert gen.usage.completion_tokens == sum(len(g.token_ids) for gs in out for g in gs)
    ident = gen.identity()
    assert ident["kind"] == "local" and ident["model"] == str((tmp_path / "tiny").resolve())
    assert len(ident["fingerprint"]) == 16 and "run" not in ident


def test_a_run_name_means_its_final_model_and_lineage(tmp_path):
    run = tmp_path / "runs" / "sft-a"
    save_tiny(run / "final")
    (run / "lineage.json").write_text("{}")
    gen = generator_for("sft-a", root=str(tmp_path / "runs"))
    ident = gen.identity()
    assert ident["model"] == str((run / "final").resolve())
    assert ident["run"] == str(run.resolve())
    assert ident["lineage"] == str((run / "lineage.json").resolve())
    assert len(gen.chat([HI], SamplingParams(max_new_tokens=2))[0]) == 1


def test_a_generator_over_an_existing_engine():
    engine = Engine.hf(tiny_model(), tiny_tokenizer())
    gen = Generator.from_engine(engine, "tiny", identity={"kind": "local", "model": "tiny"})
    params = SamplingParams(max_new_tokens=3, temperature=0)
    first = gen.chat([HI], params)
    assert [g.token_ids for g in first[0]] == [g.token_ids for g in gen.chat([HI], params)[0]]
    assert gen.identity() == {"kind": "local", "model": "tiny"}


def test_empty_spec_is_a_clear_error():
    with pytest.raises(CorralError, match="generator is empty"):
        generator_for(" ")
