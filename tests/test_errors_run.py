"""Mistakes past the data layer, by class: foreign-library errors become one line, resume
means resume, and nothing is written before a run is known to start (issue 14)."""
import json
import os
import socket

import pytest

from corral.cli import main as entry
from corral.cli.app import main
from corral.testing import save_tiny


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return save_tiny(tmp_path / "tiny")


def chats(path, prefix="q", n=6):
    path.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"{prefix}{i}"},
        {"role": "assistant", "content": f"a{i}"}]}) + "\n" for i in range(n)))
    return path.name


def error_of(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("corral: error:") == 1, err
    return err


def sft(tiny, *extra):
    return ["sft", f"model.name={tiny}", "train.max_steps=2", "train.save_every=1",
            "train.batch_tokens=128", "train.progress=false", "lora.r=4", *extra]


# ------------------------------------------------------------- foreign libraries' errors
@pytest.mark.parametrize("command", [["sft", "data.train=c.jsonl", "model.name=MODEL"],
                                     ["chat", "--model", "MODEL", "--prompt", "hi"],
                                     ["export", "MODEL"], ["data", "inspect", "c.jsonl",
                                                           "--model", "MODEL"]])
@pytest.mark.parametrize("model", ["notamodel", "bad.gguf", "broken"])
def test_a_model_that_is_not_one_is_one_line(tiny, tmp_path, capsys, command, model):
    chats(tmp_path / "c.jsonl")
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "notes.txt").write_text("hi")
    (tmp_path / "bad.gguf").write_bytes(b"not gguf" * 64)
    broken = tmp_path / "broken"  # a config.json but weights that are not safetensors
    broken.mkdir()
    (broken / "config.json").write_text((tmp_path / "tiny" / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\0" * 64)
    err = error_of(capsys, [a.replace("MODEL", model) for a in command])
    assert model in err
    assert not (tmp_path / "runs").exists()


def test_a_bug_says_so_and_asks_for_a_report(tiny, capsys, monkeypatch):
    import corral.cli.app as app

    def broken(args):
        raise ZeroDivisionError("corral's own mistake")
    monkeypatch.setattr(app, "cmd_split", broken)
    assert main(["split", "x.jsonl"]) == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and "bug in corral" in err


def test_ctrl_c_while_modules_import_is_quiet(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "corral.cli.app":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", interrupted)
    assert entry(["--help"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_a_name_like_a_run_is_not_sent_to_the_hub(tiny, tmp_path, capsys, monkeypatch):
    chats(tmp_path / "c.jsonl")
    assert main(sft(tiny, "data.train=c.jsonl", "run.name=first-run")) == 0
    capsys.readouterr()
    err = error_of(capsys, ["chat", "--model", "frist-run", "--prompt", "hi"])
    assert "did you mean 'first-run'" in err


def test_an_unreachable_hub_fails_at_once(tiny, capsys, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.close()  # nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", os.getcwd() + "/hf")  # an empty cache
    err = error_of(capsys, ["chat", "--model", "someorg/somemodel", "--prompt", "hi"])
    assert "cannot be reached" in err and "someorg/somemodel" in err


def test_unfinished_run_points_to_resume_and_checkpoint(tiny, tmp_path, capsys):
    chats(tmp_path / "c.jsonl")
    assert main(sft(tiny, "data.train=c.jsonl", "run.name=half")) == 0
    capsys.readouterr()
    os.rename(tmp_path / "runs" / "half" / "final", tmp_path / "half-final")  # as if killed
    for argv in (["export", "half"], ["chat", "--model", "half", "--prompt", "hi"]):
        err = error_of(capsys, argv)
        assert "corral sft --resume half" in err and "step-2" in err


def test_kto_with_one_class_is_refused(tiny, tmp_path, capsys):
    (tmp_path / "k.jsonl").write_text("".join(json.dumps(
        {"prompt": f"q{i}", "completion": f"c{i}", "label": True}) + "\n" for i in range(4)))
    err = error_of(capsys, ["kto", f"model.name={tiny}", "data.train=k.jsonl"])
    assert "no undesirable" in err and "corral sft" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags", [["--n-eval", "0"], ["--steps", "-1"]])
def test_quickstart_options_checked_before_loading(tiny, capsys, flags):
    assert "quickstart " + flags[0] in error_of(capsys, ["quickstart", *flags])


# ------------------------------------------------------------------ resume means resume
def test_resume_alone_continues_with_the_saved_config(tiny, tmp_path, capsys):
    chats(tmp_path / "c.jsonl")
    assert main(sft(tiny, "data.train=c.jsonl", "run.name=r")) == 0
    run = tmp_path / "runs" / "r"
    os.rename(run / "final", tmp_path / "old-final")
    assert main(["sft", "--resume", "r"]) == 0  # README's form: no data.train, no model.name
    assert (run / "final").is_dir() and not (run / "resumes.jsonl").read_text().count("lr")


def test_resume_of_a_missing_run_is_an_error(tiny, tmp_path, capsys):
    chats(tmp_path / "c.jsonl")
    err = error_of(capsys, sft(tiny, "data.train=c.jsonl", "--resume", "nosuch"))
    assert "no run 'nosuch'" in err
    assert not (tmp_path / "runs").exists()


def test_resume_refuses_changes_unless_allowed_and_records_them(tiny, tmp_path, capsys):
    chats(tmp_path / "c.jsonl")
    assert main(sft(tiny, "data.train=c.jsonl", "run.name=r")) == 0
    run = tmp_path / "runs" / "r"
    saved = (run / "config.yaml").read_text()
    err = error_of(capsys, ["sft", "--resume", "r", "train.lr=1e-3"])
    assert "train.lr 0.0002 -> 0.001" in err and "--allow-change train.lr" in err
    assert (run / "config.yaml").read_text() == saved  # nothing overwritten
    chats(tmp_path / "c.jsonl", prefix="p")  # same path, same row count, new contents
    err = error_of(capsys, ["sft", "--resume", "r"])
    assert "data.train" in err and "contents sha256" in err
    assert main(["sft", "--resume", "r", "train.lr=1e-3", "--allow-change", "train.lr",
                 "--allow-change", "data.train"]) == 0
    row = json.loads((run / "resumes.jsonl").read_text().splitlines()[-1])
    assert row["changes"]["train.lr"] == [0.0002, 0.001]
    assert "data.train (contents)" in row["changes"] and row["from_step"] == 2


def test_resume_whose_batches_changed_writes_nothing(tiny, tmp_path, capsys):
    chats(tmp_path / "c.jsonl")
    assert main(sft(tiny, "data.train=c.jsonl", "run.name=r")) == 0
    run = tmp_path / "runs" / "r"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    err = error_of(capsys, ["sft", "--resume", "r", "train.batch_tokens=256",
                            "--allow-change", "train.batch_tokens"])
    assert "start a new run.name" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_resume_may_change_what_only_watches_the_run(tiny, tmp_path, capsys):
    chats(tmp_path / "c.jsonl")
    assert main(sft(tiny, "data.train=c.jsonl", "run.name=r")) == 0
    assert main(["sft", "--resume", "r", "train.log_every=5", "train.progress=true"]) == 0


@pytest.mark.parametrize("override, key", [("train.betas=abc", "train.betas"),
                                           ("lora.r=-3", "lora.r"),
                                           ("data.max_length=0", "data.max_length")])
def test_bad_values_stop_before_the_run_folder(tiny, tmp_path, capsys, override, key):
    chats(tmp_path / "c.jsonl")
    err = error_of(capsys, sft(tiny, "data.train=c.jsonl", override))
    assert key in err and not (tmp_path / "runs").exists()
