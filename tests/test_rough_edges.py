"""Rough edges found in review, each pinned: an unreachable endpoint says so; report_to takes
a list; the two grader flags of `synth rejection` explain themselves; decontamination says
what it checked; data.train mixes several files with weights."""
from __future__ import annotations

import json
import socket

import pytest

from corral.core.errors import CorralError
from corral.infer import remote


def closed_port() -> int:
    with socket.socket() as s:  # a port nothing listens on once the socket closes
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_sleep(monkeypatch):
    waits = []
    monkeypatch.setattr(remote.time, "sleep", waits.append)
    return waits


# ------------------------------------------------------------ an unreachable endpoint
def test_an_unreachable_endpoint_is_the_message_not_an_empty_selection(
        tmp_path, monkeypatch, capsys, no_sleep):
    from corral.cli.app import main

    monkeypatch.chdir(tmp_path)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    code = main(["synth", "rejection", "--model", f"{url}#m", "--task", "arithmetic",
                 "--limit", "6", "-n", "2", "--out", "rs.jsonl"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{url}/chat/completions could not be reached" in err and "refused" in err.lower()
    assert "no sample was kept" not in err
    # one request tried (1 + 5 retries, the default), then the client stopped: not 6 x 6
    assert len(no_sleep) == 5
    assert not (tmp_path / "rs.samples.jsonl.partial").read_text()  # no row marked failed


def test_a_job_where_every_prompt_failed_names_the_first_error(tmp_path):
    from corral.core.records import Item, Message
    from corral.graders.rules import NumericAnswer
    from corral.infer.engine import SamplingParams
    from corral.infer.remote import Usage
    from corral.synth.recipes import Recipe, synthesize
    from corral.tasks import Task

    class Down:  # a server that answers, but every request of it fails
        name, usage = "down", Usage()

        def identity(self):
            return {"kind": "test"}

        def chat(self, convs, params, return_errors=False):
            return [remote.RequestError("HTTP 503: overloaded") for _ in convs]

    items = [Item([Message("user", f"{i}+1?")], {"answer": str(i + 1)}, f"t:{i}")
             for i in range(3)]
    task = Task("t", items, NumericAnswer())
    with pytest.raises(CorralError) as info:
        synthesize(Down(), task, str(tmp_path / "o.jsonl"), SamplingParams(n=2),
                   Recipe("rejection"), grader=NumericAnswer(), log=lambda _: None)
    message = str(info.value)
    assert "every prompt failed (3 of 3" in message and "HTTP 503: overloaded" in message
    assert "--retry-failed" in message and "no sample was kept" not in message


# ------------------------------------------------------------ train.report_to lists
def test_report_to_takes_the_comma_separated_list_it_advertises(monkeypatch):
    from corral.core.config import load_config
    from corral.core.sections import SFTConfig
    from corral.store import runs

    cfg = load_config(SFTConfig, None, ["train.report_to=tensorboard,wandb"])
    assert cfg.train.report_to == "tensorboard,wandb"
    assert load_config(SFTConfig, None, ["train.report_to= wandb , trackio"]).train.report_to
    with pytest.raises(CorralError, match="train.report_to.*wandbb.*wandb"):
        load_config(SFTConfig, None, ["train.report_to=tensorboard,wandbb"])
    # the metric sinks read the same list (packages found: each name becomes one sink)
    monkeypatch.setattr(runs.importlib.util, "find_spec", lambda name: object())
    assert runs._parse_report_to("tensorboard, wandb") == ["tensorboard", "wandb"]
    assert runs._parse_report_to("none") == []


# ------------------------------------------------------------ --grader vs --task-grader
def _subparser_help(*path) -> str:
    import argparse

    from corral.cli.app import build_parser

    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return " ".join(parser.format_help().split())


@pytest.mark.parametrize("path", [("synth", "rejection"), ("synth", "distill"), ("pairs",)])
def test_help_tells_the_two_grader_flags_apart(path):
    text = _subparser_help(*path)
    assert "what grades the samples" in text and "default: the task's own grader" in text
    assert "the grader a FILE.jsonl task comes with" in text
    assert "a built-in task has its own and refuses this" in text


def test_a_file_task_takes_grader_alone_and_a_builtin_task_refuses_task_grader(
        tmp_path, monkeypatch):
    from corral.synth.commands import RejectionOptions, load_task, sample_grader

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(
        {"messages": [{"role": "user", "content": f"{i}+1?"}], "answer": str(i + 1)}) + "\n"
        for i in range(3)))
    opts = RejectionOptions(task="in.jsonl", grader="numeric", out="o.jsonl")
    task = load_task(opts, "rejection")  # was: "needs --task-grader"
    assert len(task.items) == 3 and task.grader is not None
    assert sample_grader(opts, task) is task.grader  # loaded once, not twice
    both = RejectionOptions(task="in.jsonl", task_grader="numeric", grader="exact",
                            out="o.jsonl")
    task = load_task(both, "rejection")
    assert sample_grader(both, task) is not task.grader  # --grader overrides the task's
    with pytest.raises(CorralError, match="needs a grader.*--grader GRADER"):
        load_task(RejectionOptions(task="in.jsonl", out="o.jsonl"), "rejection")
    with pytest.raises(CorralError, match="--task-grader is the grader of a FILE.jsonl task; "
                       "arithmetic grades with its own.*--grader numeric"):
        load_task(RejectionOptions(task="arithmetic", task_grader="numeric", out="o.jsonl"),
                  "rejection")


# ------------------------------------------------------------ what decontamination checked
def _gsm8k_file(path, n=12):
    """n GSM8K-style rows of 15 distinct words each (3 distinct 13-grams a question); the
    index of one row in the task's train half and one in its held-out half."""
    from corral.core.io import content_hash
    from corral.data.splits import assign

    questions = [" ".join(f"q{i}w{j}" for j in range(15)) for i in range(n)]
    path.write_text("".join(json.dumps({"question": q, "answer": f"#### {i}"}) + "\n"
                            for i, q in enumerate(questions)))
    where = [assign(content_hash({"question": q}), 0.25, 0.25) for q in questions]
    return questions, where.index("train"), next(i for i, w in enumerate(where) if w != "train")


@pytest.mark.parametrize("form", ["task=file", "task:dev,unseen=file", "file"])
def test_decontamination_says_which_rows_of_which_file_it_checked(tmp_path, capsys, form):
    from corral.cli.app import main

    test = tmp_path / "gsm8k_test.jsonl"
    questions, in_train, held_out = _gsm8k_file(test)
    rows = [{"messages": [{"role": "user", "content": questions[k]},
                          {"role": "assistant", "content": "42"}]} for k in (in_train, held_out)]
    rows.append({"messages": [{"role": "user", "content": "an unrelated question"},
                              {"role": "assistant", "content": "fine"}]})
    data = tmp_path / "rs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"task=file": f"gsm8k={test}", "task:dev,unseen=file": f"gsm8k:dev,unseen={test}",
            "file": str(test)}[form]
    out = tmp_path / "clean.jsonl"
    assert main(["curate", str(data), "--out", str(out), "--near", "off",
                 "--decontaminate", spec]) == 0
    printed = capsys.readouterr().out
    kept = [json.loads(line)["messages"][0]["content"] for line in open(out)]
    step = next(s for s in json.load(open(f"{out}.manifest.json"))["steps"]
                if s["step"] == "decontaminate")
    [checked] = step["checked"]
    assert checked["spec"] == spec and checked["file"] == str(test)
    assert checked["file_rows"] == 12 and checked["ngram"] == 13
    if form == "task:dev,unseen=file":  # the held-out half only: the train half stays
        assert checked["splits"] == ["dev", "unseen"] and checked["items"] < 12
        assert checked["ngrams"] == 3 * checked["items"]
        assert kept == [questions[in_train], "an unrelated question"]
        assert f"gsm8k's dev+unseen splits of {test} ({checked['items']} items)" in printed
    else:  # the documented example: every row of the file
        assert checked["splits"] == "all" and checked["items"] == 12
        assert checked["ngrams"] == 36  # 12 questions x 3 distinct 13-grams
        assert kept == ["an unrelated question"]
        assert f"checked {spec}: all 12 rows of {test}, 36 distinct 13-grams" in printed
    assert step["targets"] == (["gsm8k"] if form != "file" else [str(test)])


def test_a_task_that_reads_no_file_refuses_one(tmp_path):
    from corral.curate.decontam import load_test_set

    (tmp_path / "x.jsonl").write_text('{"question": "a b c", "answer": "1"}\n')
    with pytest.raises(CorralError, match="arithmetic reads no data file"):
        load_test_set(f"arithmetic={tmp_path / 'x.jsonl'}")
