"""Chat completions through the official client against a loopback server: a base model alias
and the ft: model of a finished tiny job, non-streaming and streaming (the streamed text is
the non-streamed text at temperature 0, the usage chunk counts the same), n, stop,
max_tokens -> finish_reason length, logprobs, bad parameters as OpenAI errors, concurrent
clients batched into fewer generate calls, a client leaving mid-stream, LRU eviction."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import SimpleNamespace

import httpx2 as httpx  # the HTTP client the openai SDK itself uses
import openai
import pytest
from test_serve_support import KEY, ThreadServer, chat_rows, jsonl, wait_for

from corral.serve.app import create_app
from corral.testing import save_tiny

HI = [{"role": "user", "content": "hi"}]
SAY = [{"role": "user", "content": "say 1"}]  # a training prompt: the ft model answers it


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tiny = save_tiny(tmp_path_factory.mktemp("tiny") / "tiny")
    other = save_tiny(tmp_path_factory.mktemp("tiny") / "other")
    app = create_app(tmp_path_factory.mktemp("root"), [KEY],
                     models={"tiny": tiny, "other": other}, overrides=("lora.r=4",),
                     max_models=1)
    server = ThreadServer(app).start()
    client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
    train = client.files.create(file=("t.jsonl", jsonl(chat_rows())), purpose="fine-tune")
    hyper = {"n_epochs": 3, "learning_rate_multiplier": 5}  # enough to move the logprobs
    job = client.fine_tuning.jobs.create(model="tiny", training_file=train.id,
                                         hyperparameters=hyper, suffix="chat")
    yield client, server, app.state.corral.pool, job.id
    server.stop()


def ask(client, model="tiny", messages=HI, **kw):
    return client.chat.completions.create(model=model, messages=messages, **kw)


def streamed(client, model="tiny", messages=HI, **kw) -> tuple[dict, object]:
    texts, usage = {}, None
    for chunk in client.chat.completions.create(model=model, messages=messages, stream=True,
                                                stream_options={"include_usage": True}, **kw):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    return texts, usage


def test_base_model_plain_and_streamed(served):
    client, _, pool, _ = served
    got = ask(client, temperature=0, max_tokens=8, logprobs=True)
    choice = got.choices[0]
    assert got.object == "chat.completion" and got.model == "tiny"
    assert choice.finish_reason == "length" and got.usage.completion_tokens == 8
    assert got.usage.total_tokens == got.usage.prompt_tokens + 8
    assert len(choice.logprobs.content) == 8
    assert all(t.logprob <= 0 for t in choice.logprobs.content)
    texts, usage = streamed(client, temperature=0, max_tokens=8)
    assert texts == {0: choice.message.content}
    assert usage.model_dump() == got.usage.model_dump()
    assert pool.snapshot()["loaded"]  # its parameters' bytes are measured
    assert max(pool.snapshot()["loaded"].values()) > 0


def test_streamed_logprobs_are_the_plain_ones(served):
    client, _, _, _ = served
    full = ask(client, temperature=0, max_tokens=10).choices[0].message.content
    kw = {"temperature": 0, "max_tokens": 10, "logprobs": True, "stop": full[2:4]}
    plain = ask(client, **kw).choices[0]
    tokens = []
    for chunk in client.chat.completions.create(model="tiny", messages=HI, stream=True, **kw):
        for choice in chunk.choices:
            tokens += choice.logprobs.content if choice.logprobs else []
    assert [t.model_dump() for t in tokens] == [t.model_dump() for t in
                                                 plain.logprobs.content]
    assert plain.finish_reason == "stop"


def test_n_stop_and_seed(served):
    client, _, _, _ = served
    two = ask(client, n=2, max_tokens=6, temperature=1.0, seed=5)
    assert [c.index for c in two.choices] == [0, 1]
    assert two.usage.completion_tokens == sum(6 for _ in two.choices)  # no eos in 6 here
    again = ask(client, n=2, max_tokens=6, temperature=1.0, seed=5)
    assert [c.message.content for c in again.choices] == [c.message.content
                                                         for c in two.choices]
    full = ask(client, temperature=0, max_tokens=12).choices[0].message.content
    stop = full[1:3]
    cut = ask(client, temperature=0, max_tokens=12, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop" and cut.message.content == full[:full.index(stop)]
    texts, _ = streamed(client, temperature=0, max_tokens=12, stop=stop, n=2)
    assert texts == {0: cut.message.content, 1: cut.message.content}


def test_ft_model_shares_its_base_then_evictions(served):
    client, _, pool, job_id = served
    job = wait_for(client, job_id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model in [m.id for m in client.models.list()]
    ft, tiny = job.fine_tuned_model, pool.resolve("tiny")[0]
    base = ask(client, messages=SAY, temperature=0, max_tokens=5, logprobs=True).choices[0]
    got = ask(client, ft, messages=SAY, temperature=0, max_tokens=5, logprobs=True)
    text, logprobs = got.choices[0].message.content, [t.logprob for t in
                                                      got.choices[0].logprobs.content]
    assert got.model == ft and text
    assert logprobs != pytest.approx([t.logprob for t in base.logprobs.content], abs=1e-3)
    shared = pool.snapshot()
    assert list(shared["adapters"].values()) == [tiny]  # on tiny's loaded weights
    final = pool.resolve(ft)[0]
    assert shared["loaded"][final] < shared["loaded"][tiny] / 4  # only the adapter added
    texts, usage = streamed(client, ft, messages=SAY, temperature=0, max_tokens=5)
    assert texts == {0: text} and usage.model_dump() == got.usage.model_dump()
    assert ask(client, job_id, messages=SAY, temperature=0,
               max_tokens=5).choices[0].message.content == text  # the job's run: the same
    again = ask(client, messages=SAY, temperature=0, max_tokens=5).choices[0].message.content
    assert again == base.message.content  # the base decodes with adapters disabled
    alone_text, alone_logprobs = _alone(final, SAY, 5)
    assert alone_text == text and alone_logprobs[:len(logprobs)] == pytest.approx(logprobs,
                                                                                 abs=1e-4)
    evictions = shared["evictions"]
    ask(client, "other", temperature=0, max_tokens=2)  # max_models=1: tiny and its adapter out
    assert set(pool.snapshot()["loaded"]) == {pool.resolve("other")[0]}
    assert pool.snapshot()["evictions"] == evictions + 2
    alone = ask(client, ft, messages=SAY, temperature=0, max_tokens=5)  # loaded whole now
    assert alone.choices[0].message.content == text
    assert set(pool.snapshot()["loaded"]) == {final} and not pool.snapshot()["adapters"]


def _alone(path, messages, tokens) -> tuple[str, list]:
    from corral.infer.engine import SamplingParams
    from corral.infer.generators import generator_for

    gen = generator_for(path)
    out = gen.chat([messages], SamplingParams(max_new_tokens=tokens, temperature=0))
    return out[0][0].text, out[0][0].logprobs


@pytest.mark.parametrize("kw,param,status", [
    ({"model": "no-such-model"}, "model", 404),
    ({"model": "ft:tiny:corral:x:nothing"}, "model", 404),
    ({"temperature": "hot"}, "temperature", 400),
    ({"temperature": 3}, "temperature", 400),
    ({"n": 0}, "n", 400),
    ({"max_tokens": 0}, "max_tokens", 400),
    ({"max_completion_tokens": 1.5}, "max_completion_tokens", 400),
    ({"top_p": 0}, "top_p", 400),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", 400),
    ({"top_logprobs": 2, "logprobs": True}, "top_logprobs", 400),
    ({"messages": []}, "messages", 400),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", 400),
    ({"extra_body": {"frobnicate": 1}}, "frobnicate", 400),
    ({"presence_penalty": 1.0}, "presence_penalty", 400),
    ({"stream_options": {"include_usage": True}}, "stream_options", 400),
])
def test_bad_parameters(served, kw, param, status):
    client, _, _, _ = served
    args = {"model": "tiny", "messages": HI, **kw}
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**args)
    assert caught.value.status_code == status
    assert caught.value.body["param"] == param
    assert caught.value.response.headers["x-should-retry"] == "false"


@contextmanager
def held(pool):
    """The generation thread stops before its next batch until the block ends, so the
    test decides what is waiting when it goes on (no timing races)."""
    gate, answer = threading.Event(), pool._answer

    def wait_then_answer(model, batch):
        gate.wait(30)
        return answer(model, batch)
    pool._answer = wait_then_answer
    try:
        yield
    finally:
        gate.set()
        del pool._answer  # the class's method again


def wait_until(check, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_concurrent_clients_are_batched(served):
    client, _, pool, _ = served
    ask(client, temperature=0, max_tokens=1)  # loaded
    before = pool.snapshot()
    with ThreadPoolExecutor(9) as ex:
        with held(pool):
            first = ex.submit(ask, client, temperature=0, max_tokens=4)  # holds the thread
            wait_until(lambda: pool.snapshot()["waiting"] == 0 and
                       pool.snapshot()["requests"] == before["requests"] + 1)
            t0 = time.monotonic()
            assert client.models.list().data  # other routes answer while it is busy
            assert time.monotonic() - t0 < 5
            rest = [ex.submit(ask, client, temperature=0, max_tokens=4) for _ in range(8)]
            wait_until(lambda: pool.snapshot()["waiting"] == 8)
        answers = [f.result() for f in [first, *rest]]
    after = pool.snapshot()
    assert all(a.usage.completion_tokens == 4 for a in answers)
    assert len({a.choices[0].message.content for a in answers}) == 1
    assert after["generate_calls"] - before["generate_calls"] == 2, after  # 1, then 8 at once
    assert after["batches"] - before["batches"] == 2


def test_a_client_leaving_mid_stream(served):
    client, server, pool, _ = served
    body = {"model": "tiny", "messages": HI, "stream": True, "n": 4, "max_tokens": 64,
            "temperature": 1.0}
    with httpx.Client(timeout=30) as raw:
        with raw.stream("POST", f"{server.url}/chat/completions", json=body,
                        headers={"Authorization": f"Bearer {KEY}"}) as response:
            assert response.status_code == 200
            first = next(response.iter_lines())
            assert first.startswith("data: {")
        # left after one line; the server carries on
    assert ask(client, temperature=0, max_tokens=3).usage.completion_tokens == 3
    assert pool.snapshot()["waiting"] == 0


def test_memory_budget_evicts_least_recently_used():
    import torch

    from corral.serve.pool import Pool

    def load(path):  # a stand-in generator: only its model's bytes matter here
        model = torch.nn.Linear(int(path), int(path), bias=False)
        return SimpleNamespace(engine=SimpleNamespace(backend=SimpleNamespace(model=model)))
    pool = Pool(lambda m: (m, m), max_models=5, memory_bytes=2 * 100 * 100 * 4 + 10, load=load)
    for model in ("100", "99", "100", "50"):  # 40000 + 39204 + 10000 bytes: over the budget
        pool._generator(model)
    assert list(pool.loaded) == ["100", "50"]  # 99 was the least recently used
    assert pool.snapshot()["loaded"] == {"100": 40000, "50": 10000}


def test_a_client_leaving_before_its_batch_is_not_generated(served):
    client, server, pool, _ = served
    ask(client, temperature=0, max_tokens=1)  # loaded
    before = pool.snapshot()
    body = {"model": "tiny", "messages": HI, "max_tokens": 3, "temperature": 0.5}
    with ThreadPoolExecutor(1) as ex:
        with held(pool):
            first = ex.submit(ask, client, temperature=0, max_tokens=2)
            wait_until(lambda: pool.snapshot()["requests"] == before["requests"] + 1 and
                       pool.snapshot()["waiting"] == 0)
            with pytest.raises(httpx.TimeoutException):  # it leaves while it waits
                httpx.post(f"{server.url}/chat/completions", json=body, timeout=0.3,
                           headers={"Authorization": f"Bearer {KEY}"})
            time.sleep(1.0)  # the server notices within its 0.25 s poll
        first.result()
    wait_until(lambda: pool.snapshot()["skipped"] == before["skipped"] + 1)
    assert pool.snapshot()["generate_calls"] == before["generate_calls"] + 1  # only the first
