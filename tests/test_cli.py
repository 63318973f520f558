"""The CLI end to end on the tiny model: inspect, chat, export, eval, grade, split, --help."""
import json

import pytest

from corral.cli.app import build_parser, main
from corral.store.runs import read_jsonl
from corral.testing import save_tiny


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return save_tiny(tmp_path / "tiny")


def chats(path, n=6):
    path.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}) + "\n"
        for i in range(n)))
    return str(path)


@pytest.mark.parametrize("command", [["sft"], ["data", "inspect"], ["chat"], ["export"],
                                     ["quickstart"], ["eval"], ["split"], ["grade", "run"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0 and "usage: corral" in capsys.readouterr().out


def test_inspect_marks_trained_tokens(tiny, tmp_path, capsys):
    assert main(["data", "inspect", chats(tmp_path / "c.jsonl"), "--model", tiny]) == 0
    out = capsys.readouterr().out
    assert "[[a0<|im_end|>]]" in out


def test_chat_one_prompt(tiny, capsys):
    assert main(["chat", "--model", tiny, "--prompt", "hello", "--max-new-tokens", "4"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_chat_through_a_strategy_reports_its_compute(tiny, capsys):
    assert main(["chat", "--model", tiny, "--prompt", "hello", "--max-new-tokens", "4",
                 "--strategy", "majority:3"]) == 0
    err = capsys.readouterr().err
    assert "[majority:3: 1 calls," in err and "generated tokens]" in err
    assert main(["chat", "--model", tiny, "--prompt", "hi", "--strategy", "reflexion:1"]) == 2
    assert "chat has no grader" in capsys.readouterr().err


def test_sft_then_export_merged_loads_in_transformers(tiny, tmp_path, capsys):
    data = chats(tmp_path / "c.jsonl")
    assert main(["sft", f"model.name={tiny}", f"data.train={data}", "train.max_steps=2",
                 "train.progress=false", "lora.r=4", "run.name=tr"]) == 0
    assert main(["export", "tr", "--merge"]) == 0
    from transformers import AutoModelForCausalLM, AutoTokenizer
    merged = tmp_path / "runs" / "tr" / "merged"
    AutoModelForCausalLM.from_pretrained(merged)
    assert "<|im_start|>" in AutoTokenizer.from_pretrained(merged).chat_template


def test_eval_compares_models_and_writes_samples(tiny, capsys):
    assert main(["eval", "--model", tiny, "--model", tiny, "--task", "arithmetic",
                 "--limit", "3", "-n", "2", "-k", "1,2", "--max-new-tokens", "4",
                 "--name", "ev"]) == 0
    out = capsys.readouterr().out
    assert "pass@2" in out and "mean" in out
    rows = read_jsonl("runs/ev/samples.jsonl")
    assert len(rows) == 2 * 3 * 2 and {"model", "grade", "output"} <= set(rows[0])


def test_eval_k_larger_than_n_is_an_error(tiny, capsys):
    assert main(["eval", "--model", tiny, "--task", "arithmetic", "-n", "2", "-k", "4"]) == 2
    assert "raise -n" in capsys.readouterr().err


def test_grade_validate_and_run(tmp_path, capsys):
    grader = {"type": "string_check", "name": "s", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "operation": "eq"}
    assert main(["grade", "validate", json.dumps(grader)]) == 0
    assert main(["grade", "run", json.dumps(grader), "--item", '{"answer": "4"}',
                 "--sample", "4"]) == 0
    out = capsys.readouterr().out
    assert '"reward": 1.0' in out
    bad = {**grader, "operation": "eqq"}
    with pytest.raises(SystemExit):
        main(["grade", "validate", json.dumps(bad)])


def test_split_command(tmp_path, capsys):
    data = chats(tmp_path / "c.jsonl", n=40)
    assert main(["split", data, "--dev", "0.2", "--unseen", "0.2"]) == 0
    assert "sealed" in capsys.readouterr().out
    assert (tmp_path / "c.unseen.jsonl").exists()


def test_missing_file_is_one_clear_error(tiny, capsys):
    assert main(["data", "inspect", "nope.jsonl", "--model", tiny]) == 2
    err = capsys.readouterr().err
    assert "nope.jsonl" in err and "Traceback" not in err
