"""Every command of cli/app.py is a library call (issue 19): the CLI and the library function
with the same options write the same files (modulo run times), `corral eval` evaluates an
OpenAI-compatible endpoint through the same path as a local model, and each options
dataclass mirrors its command's flags (names and defaults)."""
import json
import threading
from dataclasses import MISSING, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from corral.api.eval import (
    EvalOptions,
    GradeOptions,
    ValidateGraderOptions,
    grade_sample,
    run_eval,
    validate_grader,
)
from corral.cli.app import build_parser, main
from corral.data.commands import SplitOptions, split_data
from corral.methods.quickstart import QuickstartOptions
from corral.model.commands import ExportOptions, InspectOptions, export_model, inspect_data
from corral.store.commands import LineageOptions, lineage
from corral.strategies.chat import ChatOptions, chat
from corral.testing import save_tiny

TIMES = {"time", "duration_s", "execution_time", "started", "finished", "from_step"}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(
        {"messages": [{"role": "user", "content": f"what is {i}+1?"}], "answer": str(i + 1)})
        + "\n" for i in range(4)))
    return str(save_tiny(tmp_path / "tiny"))


def untimed(value):
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def contents(folder: Path) -> dict:
    """Every file under `folder` by relative name: JSONL rows and YAML as data without
    times, anything else as bytes."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if path.suffix == ".jsonl":
            out[name] = [untimed(json.loads(x)) for x in path.read_text().splitlines()]
        elif path.suffix in (".yaml", ".json"):
            text = path.read_text()
            out[name] = untimed(yaml.safe_load(text) if path.suffix == ".yaml"
                                else json.loads(text))
        else:
            out[name] = path.read_bytes()
    return out


def same_files(a: Path, b: Path) -> dict:
    left, right = contents(a), contents(b)
    assert left and left == right
    return left


# ---------------------------------------------------------------- options mirror the flags
def subparser(*path):
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if a.dest in ("command", "data_command",
                                                                  "grade_command"))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize("cls, path", [
    (EvalOptions, ["eval"]), (SplitOptions, ["split"]), (LineageOptions, ["lineage"]),
    (InspectOptions, ["data", "inspect"]), (ExportOptions, ["export"]),
    (ChatOptions, ["chat"]), (QuickstartOptions, ["quickstart"]),
    (ValidateGraderOptions, ["grade", "validate"]), (GradeOptions, ["grade", "run"]),
], ids=lambda x: x.__name__ if isinstance(x, type) else None)
def test_options_mirror_the_commands_flags(cls, path):
    defaults = {a.dest: a.default for a in subparser(*path)._actions if a.dest != "help"}
    for f in fields(cls):
        if f.name not in defaults:  # a library-only option (chat's template, root)
            continue
        given = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        if given is not MISSING and defaults[f.name] is not None:
            assert given == defaults[f.name], f"{cls.__name__}.{f.name}"
    flags = set(defaults) - {"func", "allow_unsandboxed_graders"}  # global, not an option
    assert flags <= {f.name for f in fields(cls)}, flags - {f.name for f in fields(cls)}


# ---------------------------------------------------------------- eval
def test_eval_cli_and_library_write_the_same_run(tiny, tmp_path, capsys):
    argv = ["--model", tiny, "--task", "arithmetic", "--limit", "3", "-n", "2", "-k", "1,2",
            "--max-new-tokens", "4", "--name", "e"]
    assert main(["eval", *argv, "--root", "cli"]) == 0
    printed = capsys.readouterr().out
    report = run_eval(EvalOptions(model=[tiny], task="arithmetic", limit=3, n=2, k="1,2",
                                  max_new_tokens=4, name="e", root="lib"))
    files = same_files(tmp_path / "cli" / "e", tmp_path / "lib" / "e")
    assert len(files["samples.jsonl"]) == 3 * 2
    assert report.run == Path("lib") / "e" and report.n_items == 3
    assert f"{report.table[tiny]['pass@2']:.3f}" in printed


def test_eval_strategies_cli_and_library_write_the_same_run(tiny, tmp_path, capsys):
    argv = ["--model", tiny, "--task", "arithmetic", "--limit", "2", "--max-new-tokens", "4",
            "--name", "s", "--strategy", "greedy,majority:2"]
    assert main(["eval", *argv, "--root", "cli", "--plot", "cli.svg"]) == 0
    report = run_eval(EvalOptions(model=tiny, task="arithmetic", limit=2, max_new_tokens=4,
                                  name="s", strategy="greedy,majority:2", root="lib",
                                  plot="lib.svg"))
    files = same_files(tmp_path / "cli" / "s", tmp_path / "lib" / "s")
    assert {r["strategy"] for r in files["samples.jsonl"]} == {"greedy", "majority:2"}
    assert (tmp_path / "cli.svg").read_bytes() == (tmp_path / "lib.svg").read_bytes()
    assert [r["strategy"] for r in report.rows] == ["greedy", "majority:2"]


class _Endpoint(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint: 'what is I+1?' is answered right for even I,
    wrong for odd I, in every choice."""

    def do_POST(self):  # noqa: N802  (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        i = int(body["messages"][-1]["content"].split()[-1].split("+")[0])
        answer = i + 1 if i % 2 == 0 else i + 7
        n = body.get("n", 1)
        data = json.dumps({"choices": [{"message": {"role": "assistant",
                                                    "content": f"#### {answer}"},
                                        "finish_reason": "stop"} for _ in range(n)],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 3 * n}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    server.bodies = []
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1#fake-model", server
    server.shutdown()
    server.server_close()


def test_eval_reaches_an_endpoint_through_the_same_path(tiny, tmp_path, endpoint, capsys):
    spec, server = endpoint
    common = ["--task", "items.jsonl", "--grader", "numeric", "-n", "2", "-k", "1,2",
              "--temperature", "0.5", "--max-new-tokens", "4"]
    assert main(["eval", "--model", spec, *common, "--name", "remote"]) == 0
    assert main(["eval", "--model", tiny, *common, "--name", "local"]) == 0
    remote = contents(tmp_path / "runs" / "remote")
    local = contents(tmp_path / "runs" / "local")
    assert set(remote) == set(local)  # config, samples and metrics, like a local model's
    assert [set(r) for r in remote["samples.jsonl"]] == [set(r) for r in local["samples.jsonl"]]
    assert {r["model"] for r in remote["samples.jsonl"]} == {spec}
    assert [r["passed"] for r in remote["samples.jsonl"]] == [True, True, False, False] * 2
    [metrics] = remote["metrics.jsonl"]
    assert metrics[f"{spec}/pass@2"] == 0.5 and metrics[f"{spec}/mean"] == 0.5
    assert len(server.bodies) == 4 and all(b["n"] == 2 for b in server.bodies)
    assert server.bodies[0]["model"] == "fake-model"
    report = run_eval(EvalOptions(model=[spec], task="items.jsonl", grader="numeric", n=2,
                                  k="1,2", temperature=0.5, max_new_tokens=4, name="remote",
                                  root="lib"))
    same_files(tmp_path / "runs" / "remote", tmp_path / "lib" / "remote")
    assert report.table[spec]["pass@1"] == 0.5


def test_strategies_on_an_endpoint(tiny, tmp_path, endpoint):
    spec, _ = endpoint
    report = run_eval(EvalOptions(model=spec, task="items.jsonl", grader="numeric",
                                  strategy="greedy,majority:3", name="s"))
    assert [r["pass"] for r in report.rows] == [0.5, 0.5]
    assert all(r["calls"] == 1 and r["completion_tokens"] > 0 for r in report.rows)


# ---------------------------------------------------------------- the other commands
def test_split_cli_and_library_write_the_same_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i % 30}"}]})
                            + "\n" for i in range(40)))
    assert main(["split", str(data), "--dev", "0.2", "--unseen", "0.2", "--out", "cli"]) == 0
    printed = capsys.readouterr().out
    result = split_data(SplitOptions(str(data), dev=0.2, unseen=0.2, out="lib"))
    same_files(tmp_path / "cli", tmp_path / "lib")
    assert f"train: {result.counts['train']}" in printed
    assert result.duplicates == 10 and f"note: {result.duplicates} rows repeat" in printed


def test_grade_cli_and_library_answer_the_same(capsys):
    grader = json.dumps({"type": "string_check", "name": "s", "input": "{{sample.output_text}}",
                         "reference": "{{item.answer}}", "operation": "eq"})
    assert main(["grade", "run", grader, "--item", '{"answer": "4"}', "--sample", "4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    reply = grade_sample(GradeOptions(grader, item='{"answer": "4"}', sample="4")).reply
    assert untimed(printed) == untimed(json.loads(json.dumps(reply, default=str)))
    assert reply["reward"] == 1.0
    rule = grade_sample(GradeOptions("numeric", item='{"answer": "4"}', sample="#### 4")).reply
    assert rule["reward"] == 1.0 and rule["answer"] == "4"
    assert main(["grade", "validate", "numeric"]) == 0
    assert json.loads(capsys.readouterr().out) == validate_grader(
        ValidateGraderOptions("numeric")).as_dict()
    assert not validate_grader(ValidateGraderOptions('{"type": "nope"}')).valid


def test_inspect_export_and_chat_as_library_calls(tiny, tmp_path, capsys):
    data = tmp_path / "c.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "q"},
                                             {"role": "assistant", "content": "a"}]}) + "\n")
    assert main(["data", "inspect", str(data), "--model", tiny]) == 0
    assert capsys.readouterr().out.strip() == inspect_data(
        InspectOptions(str(data), model=tiny)).report.strip()
    assert main(["export", tiny, "--out", "cli"]) == 0
    assert export_model(ExportOptions(tiny, out="lib")).path == "lib"
    same_files(tmp_path / "cli", tmp_path / "lib")
    capsys.readouterr()
    assert main(["chat", "--model", tiny, "--prompt", "hello", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.strip() == chat(
        ChatOptions(model=tiny, prompt="hello", max_new_tokens=4)).text.strip()
    reply = chat(ChatOptions(model=tiny, prompt="hello", max_new_tokens=4,
                             strategy="majority:2"))
    assert reply.compute.calls == 1 and reply.strategy == "majority:2"


def test_lineage_cli_and_library_say_the_same(tmp_path, monkeypatch, capsys):
    from corral.store.runs import RunStore

    monkeypatch.chdir(tmp_path)
    store = RunStore("runs", "r1")
    store.write_config({})
    store.write_lineage("smollm2-135m-instruct", [], extra={"method": "sft"})
    assert main(["lineage", "r1"]) == 0
    result = lineage(LineageOptions("r1"))
    assert capsys.readouterr().out.splitlines()[:len(result.lines)] == result.lines


def test_a_chat_session_renders_the_system_prompt_once(tiny):
    from corral.strategies.chat import open_chat

    session = open_chat(ChatOptions(model=tiny, system="Be brief.", max_new_tokens=2))
    first = session.reply("hi")
    session.reply("again")
    roles = [m["role"] for m in session.conversation]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert session.conversation[0]["content"] == "Be brief." and first.compute is None
