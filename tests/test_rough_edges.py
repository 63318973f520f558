"""Rough edges found in review, each pinned: an unreachable endpoint says so; report_to takes
a list; the two grader flags of `synth rejection` explain themselves; decontamination says
what it checked; data.train mixes several files with weights."""
from __future__ import annotations

import json
import re
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


# ------------------------------------------------------------ data.train mixtures
def chat_rows(path, prefix, n, bad_line=0):
    lines = [json.dumps({"messages": [{"role": "user", "content": f"{prefix}{i}"},
                                      {"role": "assistant", "content": f"a{i}"}]})
             for i in range(n)]
    if bad_line:
        lines[bad_line - 1] = json.dumps({"messages": [{"role": "user", "content": "no reply"}],
                                          "oops": 1})[:-1]  # cut: not valid JSON
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def pair_rows(path, prefix, n):
    path.write_text("".join(json.dumps({"prompt": f"{prefix}{i}?", "chosen": f"yes{i}",
                                        "rejected": f"no{i}"}) + "\n" for i in range(n)))
    return str(path)


def test_draw_arithmetic():
    from corral.data.readers import draw

    rows = list(range(10))
    assert draw(rows, 1, "k") == rows and draw(rows, 2, "k") == rows + rows
    half = draw(rows, 0.5, "k")
    assert len(half) == 5 and len(set(half)) == 5 and half == sorted(half)
    assert draw(rows, 0.5, "k") == half  # seeded by the key: the same half every run
    assert draw(rows, 0.5, "other") != half or draw(rows, 0.5, "third") != half
    again = draw(rows, 1.5, "k")
    assert len(again) == 15 and again[:10] == rows and set(again[10:]) <= set(rows)
    assert len(draw(rows, 0.25, "k")) == 2 and len(draw(rows, 3.2, "k")) == 32  # round(2.5)=2


def test_config_takes_a_list_of_files_with_weights_and_a_string_as_before():
    from corral.core.config import load_config, to_dict
    from corral.core.sections import DataFile, SFTConfig, data_files

    assert load_config(SFTConfig, None, ["data.train=a.jsonl"]).data.train == "a.jsonl"
    cfg = load_config(SFTConfig, None, ["data.train=[a.jsonl,b.jsonl:0.5]"])
    assert data_files(cfg.data.train) == [DataFile("a.jsonl"), DataFile("b.jsonl", 0.5)]
    assert to_dict(cfg)["data"]["train"] == ["a.jsonl", "b.jsonl:0.5"]  # saved as a list
    cfg = load_config(SFTConfig, None, [
        "data.train=[{path: a.jsonl, weight: 2}, owner/set:train, C:/x.jsonl:1.5]"])
    assert data_files(cfg.data.train) == [DataFile("a.jsonl", 2.0),
                                          DataFile("owner/set:train"),
                                          DataFile("C:/x.jsonl", 1.5)]
    for bad, said in [("[a.jsonl:0]", "weight '0' must be a number > 0"),
                      ("[a.jsonl:-1]", "must be a number > 0"),
                      ("[a.jsonl,a.jsonl:2]", "names a.jsonl twice"),
                      ("[{path: a.jsonl, wieght: 2}]", "give {path: FILE, weight: W}")]:
        with pytest.raises(CorralError, match=re.escape(said)):
            load_config(SFTConfig, None, [f"data.train={bad}"])


def test_rows_per_file_follow_the_weights(tmp_path):
    from corral.data.readers import load_preference_records, load_sft_records

    a, b = chat_rows(tmp_path / "a.jsonl", "a", 6), chat_rows(tmp_path / "b.jsonl", "b", 10)
    for spec, want in [((a, f"{b}:0.5"), (6, 5)), ((f"{a}:2", b), (12, 10)),
                       ((f"{a}:0.5", f"{b}:1.5"), (3, 15))]:
        records = load_sft_records(spec)
        counted = tuple(sum(r.source.startswith(f"{p}:") for r in records) for p in (a, b))
        assert counted == want, spec
    p, q = pair_rows(tmp_path / "p.jsonl", "p", 4), pair_rows(tmp_path / "q.jsonl", "q", 4)
    assert len(load_preference_records((p, f"{q}:2"))) == 12


def test_a_bad_row_in_the_second_file_names_that_file_and_line(tmp_path):
    from corral.data.readers import load_sft_records

    a = chat_rows(tmp_path / "a.jsonl", "a", 4)
    b = chat_rows(tmp_path / "b.jsonl", "b", 4, bad_line=3)
    with pytest.raises(CorralError) as info:
        load_sft_records((a, f"{b}:0.5"))
    message = str(info.value)
    assert f"{b}: 1 row(s) have problems" in message and f"{b}:3: not valid JSON" in message
    assert f"{a}:" not in message and message.count("no training was started") == 1
    # a bad row a weight would leave out is still reported: every row is checked
    c = chat_rows(tmp_path / "c.jsonl", "c", 4, bad_line=1)
    with pytest.raises(CorralError, match=re.escape(f"{c}:1: not valid JSON")):
        load_sft_records((a, f"{c}:0.25"))


@pytest.mark.parametrize("which", [0, 1])
def test_a_sealed_row_in_either_file_is_refused(tmp_path, monkeypatch, which):
    from corral.core.config import load_config
    from corral.core.sections import SFTConfig
    from corral.methods import runner
    from corral.methods.sft import METHOD

    files = [chat_rows(tmp_path / "a.jsonl", "a", 4), chat_rows(tmp_path / "b.jsonl", "b", 4)]
    unseen = tmp_path / "unseen.jsonl"
    unseen.write_text(open(files[which]).read().splitlines()[2] + "\n")
    cfg = load_config(SFTConfig, None, [f"data.train=[{files[0]},{files[1]}:0.5]",
                                        f"data.unseen={unseen}"])
    with pytest.raises(CorralError, match=re.escape(f"sealed unseen split ({files[which]}:3)")):
        runner.prepare(METHOD, cfg, policy=object())  # refused before any model is needed


def test_every_offline_method_reads_a_mixture(tmp_path):
    from corral.core.config import load_config
    from corral.methods import dpo, kto, rm

    p, q = pair_rows(tmp_path / "p.jsonl", "p", 4), pair_rows(tmp_path / "q.jsonl", "q", 6)
    mix = f"data.train=[{p}:2,{q}:0.5]"
    assert len(dpo.read(load_config(dpo.DPOConfig, None, [mix]))[0]) == 8 + 3
    assert len(rm.read(load_config(rm.RMConfig, None, [mix]))[0]) == 8 + 3
    train, _ = kto.read(load_config(kto.KTOConfig, None, [mix]))
    assert len(train) == 2 * (8 + 3)  # each pair: a desirable and an undesirable row


def test_a_mixed_run_records_each_file_and_resume_checks_each(tmp_path, monkeypatch, capsys):
    from corral.cli.app import main
    from corral.core.io import file_sha256
    from corral.testing import save_tiny

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    tiny = save_tiny(tmp_path / "tiny")
    chat_rows(tmp_path / "a.jsonl", "a", 6)
    chat_rows(tmp_path / "b.jsonl", "b", 6)
    argv = ["sft", f"model.name={tiny}", "data.train=[a.jsonl,b.jsonl:0.5]", "run.name=mix",
            "train.max_steps=2", "train.save_every=1", "train.batch_tokens=128",
            "train.progress=false", "lora.r=4"]
    assert main(argv) == 0
    lineage = json.loads((tmp_path / "runs" / "mix" / "lineage.json").read_text())
    assert [(d["path"], d["weight"], d["sha256"]) for d in lineage["data"]] == [
        ("a.jsonl", 1.0, file_sha256("a.jsonl")), ("b.jsonl", 0.5, file_sha256("b.jsonl"))]
    capsys.readouterr()
    assert main(["lineage", "mix"]) == 0
    shown = capsys.readouterr().out
    assert "data: a.jsonl (sha256" in shown and "data: b.jsonl (sha256" in shown
    assert "weight 0.5" in shown
    chat_rows(tmp_path / "b.jsonl", "c", 6)  # the second file's contents change
    assert main(["sft", "--resume", "mix"]) == 2
    err = capsys.readouterr().err
    assert "data.train (contents of b.jsonl)" in err and "--allow-change data.train" in err
    assert "a.jsonl" not in err


def test_rl_prompts_read_a_mixture(tmp_path):
    from corral.methods.rl import load_items, load_rl_config

    def items(path, prefix, n):
        path.write_text("".join(json.dumps({"messages": [{"role": "user", "content":
                                                          f"{prefix}{i}?"}], "answer": i})
                                + "\n" for i in range(n)))
        return str(path)

    a, b = items(tmp_path / "a.jsonl", "a", 4), items(tmp_path / "b.jsonl", "b", 6)
    train, *_ = load_items(load_rl_config(None, [f"data.train=[{a},{b}:0.5]"]))
    assert [sum(i.source.startswith(f"{p}:") for i in train) for p in (a, b)] == [4, 3]
    assert load_rl_config(None, [f"data.train={a}"]).data.train == a


def test_a_weight_on_a_single_file_points_to_the_list_form(tmp_path):
    from corral.data.readers import load_sft_records

    a = chat_rows(tmp_path / "a.jsonl", "a", 2)
    with pytest.raises(CorralError, match=re.escape(f"a weight needs a list of files: "
                                                    f"data.train=[{a}:0.5]")):
        load_sft_records(f"{a}:0.5")
