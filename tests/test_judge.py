"""Judge-model graders: score_model and label_model reply parsing, judge failures, http_judge."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from corral.core.errors import CorralError
from corral.graders import judge as judge_module
from corral.graders import openai
from corral.graders.base import Sample
from corral.graders.judge import http_judge, parse_score
from corral.graders.load import load_grader


def fixed_judge(reply):
    calls = []

    def judge(messages, sampling_params):
        calls.append((messages, sampling_params))
        return reply
    judge.calls = calls
    return judge



SCORE_SPEC = {"type": "score_model", "name": "judge",
              "input": [{"role": "user", "content": "Rate {{sample.output_text}} for {{item.q}}"}],
              "sampling_params": {"temperature": 0}}


@pytest.mark.parametrize("reply, expected", [
    ("0.7", 0.7), ('{"result": 0.25}', 0.25), ('```json\n{"result": 0.5}\n```', 0.5),
    ("Reasoning... final score: 0.4", 0.4), ("7", 1.0), ("-2", 0.0),
])
def test_score_model_parses_and_clips(reply, expected):
    judge = fixed_judge(reply)
    score = load_grader(SCORE_SPEC, judge=judge).grade({"q": "Q?"}, Sample.of("ans"))
    assert score.value == pytest.approx(expected)
    messages, params = judge.calls[0]
    assert messages[0]["role"] == "system" and "number from 0 to 1" in messages[0]["content"]
    assert messages[1] == {"role": "user", "content": "Rate ans for Q?"}
    assert params == {"temperature": 0}


@pytest.mark.parametrize("reply", ["no idea", "7/10", "", '{"result": "good"}'])
def test_score_model_unparseable_is_zero(reply):
    score = load_grader(SCORE_SPEC, judge=fixed_judge(reply)).grade({"q": "Q"}, Sample.of("a"))
    assert score.value == 0.0 and score.details["error_kind"] == "model_grader_parse_error"


def test_score_model_range_and_judge_failure():
    spec = dict(SCORE_SPEC, range=[0, 10], pass_threshold=5)
    score = load_grader(spec, judge=fixed_judge("7/10 -> 7")).grade({"q": "Q"}, Sample.of("a"))
    assert score.value == 7.0 and score.passed is True

    def broken(messages, params):
        raise ConnectionError("down")
    score = load_grader(SCORE_SPEC, judge=broken).grade({"q": "Q"}, Sample.of("a"))
    assert score.value == 0.0 and score.details["error_kind"] == "model_grader_server_error"


def test_default_judge_is_a_local_model_through_the_engine(tmp_path, monkeypatch):
    """No judge passed: the model named by CORRAL_JUDGE_MODEL (here the tiny random Llama)
    answers through the generation engine, greedily, so two gradings agree."""
    from corral.testing import save_tiny

    save_tiny(tmp_path / "judge")
    monkeypatch.delenv("CORRAL_JUDGE_BASE_URL", raising=False)
    monkeypatch.setenv("CORRAL_JUDGE_MODEL", str(tmp_path / "judge"))
    spec = dict(SCORE_SPEC, sampling_params={"temperature": 0, "max_completions_tokens": 6})
    first = load_grader(spec).grade({"q": "Q"}, Sample.of("a"))
    again = load_grader(spec).grade({"q": "Q"}, Sample.of("a"))
    assert "reply" in first.details or first.details["error_kind"] == "model_grader_parse_error"
    assert first.value == again.value and first.details == again.details


def test_local_judge_grades_a_batch_in_one_pass_like_one_by_one(tmp_path, monkeypatch):
    from corral.graders.judge import local_judge
    from corral.testing import save_tiny

    save_tiny(tmp_path / "judge")
    judge = local_judge(str(tmp_path / "judge"))
    calls = []
    batch = judge.batch
    judge.batch = lambda conversations, sp: calls.append(len(conversations)) or batch(
        conversations, sp)
    spec = dict(SCORE_SPEC, sampling_params={"temperature": 0, "max_completions_tokens": 5})
    grader = load_grader(spec, judge=judge)
    pairs = [({"q": q}, Sample.of(a)) for q, a in [("Q1", "a"), ("a longer Q2", "bb"), ("Q", "c")]]
    together = grader.grade_batch(pairs)
    assert calls == [3]  # one generation pass for the three samples
    alone = [grader.grade(item, sample) for item, sample in pairs]
    assert [(s.value, s.details) for s in together] == [(s.value, s.details) for s in alone]

    def short(conversations, sp):
        return ["0.5"]  # a judge that answers fewer prompts than asked: each scores 0
    grader = load_grader(spec, judge=judge)
    judge.batch = short
    scores = grader.grade_batch(pairs)
    assert [s.details["error_kind"] for s in scores] == ["model_grader_server_error"] * 3


def test_unloadable_judge_model_stops_with_what_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("CORRAL_JUDGE_BASE_URL", raising=False)
    monkeypatch.setenv("CORRAL_JUDGE_MODEL", str(tmp_path / "no-such-dir" / "x"))
    grader = load_grader(SCORE_SPEC)  # construction loads nothing
    with pytest.raises(CorralError, match="CORRAL_JUDGE_MODEL.*CORRAL_JUDGE_BASE_URL"):
        grader.grade({"q": "Q"}, Sample.of("a"))


LABEL_SPEC = {"type": "label_model",
              "input": [{"role": "user", "content": "{{sample.output_text}}"}],
              "labels": ["correct", "incorrect"], "passing_labels": ["correct"]}


@pytest.mark.parametrize("reply, label, value", [
    ("correct", "correct", 1.0), ("Incorrect.", "incorrect", 0.0),
    ('{"result": "correct"}', "correct", 1.0), ("The answer is correct", "correct", 1.0),
    ("maybe", None, 0.0), ("correct or incorrect", None, 0.0),
])
def test_label_model(reply, label, value):
    score = load_grader(LABEL_SPEC, judge=fixed_judge(reply)).grade({}, Sample.of("x"))
    assert score.value == value and score.answer == label
    assert score.passed is (value == 1.0)


class _ChatHandler(BaseHTTPRequestHandler):
    seen: ClassVar[list] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, self.headers.get("Authorization"), body))
        status = 500 if body["model"] == "broken" else 200
        message = {"content": None, "refusal": "I can't grade that."} \
            if body["model"] == "refuser" else {"content": "0.9"}
        reply = json.dumps({"choices": [{"message": message}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_http_judge_against_local_server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        spec = dict(SCORE_SPEC, sampling_params={"max_completions_tokens": 8})
        grader = load_grader(spec, judge=http_judge(base, "sk-test", "judge-model"))
        assert grader.grade({"q": "Q"}, Sample.of("a")).value == pytest.approx(0.9)
        path, auth, body = _ChatHandler.seen[-1]
        assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
        assert body["model"] == "judge-model" and body["max_tokens"] == 8
        assert body["messages"][-1]["content"] == "Rate a for Q"
        monkeypatch.setenv("CORRAL_JUDGE_BASE_URL", base)  # the default judge, from the env
        monkeypatch.setenv("CORRAL_JUDGE_API_KEY", "sk-env")
        monkeypatch.setenv("CORRAL_JUDGE_MODEL", "env-model")
        assert load_grader(SCORE_SPEC).grade({"q": "Q"}, Sample.of("a")).value == 0.9
        assert _ChatHandler.seen[-1][1:] == ("Bearer sk-env", _ChatHandler.seen[-1][2])
        assert _ChatHandler.seen[-1][2]["model"] == "env-model"
        broken = load_grader(SCORE_SPEC, judge=http_judge(base, None, "broken"))
        score = broken.grade({"q": "Q"}, Sample.of("a"))
        assert score.value == 0.0 and "HTTP 500" in score.details["error"]
        refused = load_grader(SCORE_SPEC, judge=http_judge(base, None, "refuser"))
        score = refused.grade({"q": "Q"}, Sample.of("a"))  # an answer: scored 0, not retried
        assert score.value == 0.0 and "can't grade" in score.details["error"]
        assert score.details["error_kind"] == "model_grader_refusal_error"
        assert sum(b["model"] == "refuser" for _, _, b in _ChatHandler.seen) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_parse_score_rejects_non_finite():
    assert parse_score("NaN") is None and parse_score("Infinity") is None



def test_openai_reexports_judge_names():
    for name in ("JudgeError", "ScoreModelGrader", "LabelModelGrader", "http_judge",
                 "parse_score", "parse_label"):
        assert getattr(openai, name) is getattr(judge_module, name)


class _SlowHandler(BaseHTTPRequestHandler):
    """Answers "0.9" after a pause, counting requests in flight; a prompt holding "flaky"
    gets one 503 first."""
    lock = threading.Lock()
    active, peak = 0, 0
    seen: ClassVar[list] = []
    failed: ClassVar[set] = set()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with cls.lock:
            cls.active += 1
            cls.peak = max(cls.peak, cls.active)
            cls.seen.append(body)
        time.sleep(0.2)
        with cls.lock:
            cls.active -= 1
        text = body["messages"][-1]["content"]
        if "flaky" in text and text not in cls.failed:
            cls.failed.add(text)
            status, reply = 503, b'{"error": {"message": "busy"}}'
        else:
            status, reply = 200, json.dumps({"choices": [{"message": {"content": "0.9"}}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        if status == 503:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_an_endpoint_judge_grades_a_batch_concurrently_and_retries(monkeypatch):
    """CORRAL_JUDGE_MODEL names an endpoint (URL#MODEL): a grade_batch goes out as one chat
    call whose requests overlap, and a request the server fails (503) is asked again."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("CORRAL_JUDGE_BASE_URL", raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("CORRAL_JUDGE_MODEL",
                           f"http://127.0.0.1:{server.server_address[1]}/v1#judge-model")
        grader = load_grader(SCORE_SPEC)
        answers = ["a", "b", "flaky", "c", "d", "e"]
        scores = grader.grade_batch([({"q": "Q"}, Sample.of(a)) for a in answers])
        assert [s.value for s in scores] == [pytest.approx(0.9)] * 6
        assert _SlowHandler.peak >= 2  # concurrent, not one request after another
        assert len(_SlowHandler.seen) == 7  # six samples, one retried
        usage = grader.judge.generator.usage
        assert usage.requests == 7 and usage.retries == 1
        assert {b["model"] for b in _SlowHandler.seen} == {"judge-model"}
    finally:
        server.shutdown()
        server.server_close()


def test_a_judge_grader_shares_the_judge_cache_and_budget(tmp_path):
    """A Judge given to a grader brings its cache (asked once, ever) and call budget."""
    from corral.core.errors import BudgetSpent
    from corral.graders.judge import as_judge
    from corral.graders.judging import Judge, JudgeCache

    calls = fixed_judge("0.5")
    judge = as_judge(calls, {})
    judge = Judge(judge.generator, retries=0, cache=JudgeCache(tmp_path / "c.jsonl"),
                  max_calls=2)
    grader = load_grader(SCORE_SPEC, judge=judge)
    pairs = [({"q": "Q"}, Sample.of(a)) for a in ("x", "y")]
    assert [s.value for s in grader.grade_batch(pairs)] == [0.5, 0.5]
    assert [s.value for s in grader.grade_batch(pairs)] == [0.5, 0.5] and len(calls.calls) == 2
    with pytest.raises(BudgetSpent, match="budget of 2 calls"):
        grader.grade({"q": "Q"}, Sample.of("z"))


def test_old_judge_variables_still_work_with_a_note(monkeypatch):
    from corral.core.config import ConfigNote
    from corral.graders.judge import default_judge

    monkeypatch.setenv("CORRAL_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("CORRAL_JUDGE_MODEL", "m")
    with pytest.warns(ConfigNote, match="CORRAL_JUDGE_MODEL=URL#MODEL"):
        judge = default_judge()
    assert judge.name == "http://127.0.0.1:9/v1#m"  # nothing is asked until the first grading


def test_a_generator_is_a_judge_and_hears_developer_as_system():
    from corral.infer.engine import Generation
    from corral.infer.generators import Generator
    from corral.infer.remote import Usage

    class Fixed(Generator):
        name, seen = "fixed", []

        def __init__(self):
            self.usage = Usage()

        def identity(self):
            return {"kind": "fixed"}

        def chat(self, conversations, params=None, *, return_errors=False):
            self.seen.append((conversations, params))
            return [[Generation('{"result": 0.75}', [], [], "stop", i, 0)]
                    for i, _ in enumerate(conversations)]

    gen = Fixed()
    spec = dict(SCORE_SPEC, input=[{"role": "developer", "content": "Be strict."},
                                   *SCORE_SPEC["input"]],
                sampling_params={"temperature": 0, "max_completions_tokens": 9})
    scores = load_grader(spec, judge=gen).grade_batch([({"q": "Q"}, Sample.of(a))
                                                       for a in ("x", "y", "z")])
    assert [s.value for s in scores] == [0.75] * 3 and len(gen.seen) == 1  # one chat call
    conversations, params = gen.seen[0]
    assert conversations[0][0]["role"] == "system" and params.max_new_tokens == 9
