"""Mistakes in grading, evaluation and tasks, by class (issue 14): a grader failing on every
sample stops the run with its first error, every option a command cannot honour is an error,
and a failed evaluation leaves no run folder."""
import json

import pytest

from corral.cli.app import main
from corral.graders.base import Score, check_grader_errors, score_error
from corral.testing import save_tiny


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(
        {"messages": [{"role": "user", "content": f"what is {i}+1?"}], "answer": str(i + 1)})
        + "\n" for i in range(4)))
    return str(save_tiny(tmp_path / "tiny"))


def error_of(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("corral: error:") == 1, err
    return err


def evaluate(tiny, *extra):
    return ["eval", "--model", tiny, "--max-new-tokens", "3", *extra]


FIELD_MISSING = {"type": "string_check", "name": "needs-solution", "operation": "eq",
                 "input": "{{item.solution}}", "reference": "{{item.answer}}"}
RAISES = {"type": "python", "name": "raises",
          "source": "def grade(sample, item):\n    raise ValueError('boom')\n"}


# ------------------------------------------------------ a grader that fails on every sample
def test_share_rule_counts_errors_not_zeros():
    ok, bad = Score(0.0), Score(0.0, {"error": "no field", "error_kind": "invalid_variable_error"})
    nested = Score(0.0, {"sub_details": {"a": {}, "b": {"error": "x", "error_kind": "other"}}})
    assert score_error(ok) is None and score_error(bad) == "no field" and score_error(nested)
    check_grader_errors([ok, ok], "g")  # zeros are scores
    check_grader_errors([ok, bad], "g")  # one bad sample is that sample's zero
    with pytest.raises(Exception, match="failed on every sample.*no field"):
        check_grader_errors([bad, bad], "g")
    with pytest.raises(Exception, match="1 of 2 samples.*--max"):
        check_grader_errors([ok, bad], "g", 0.5, "--max-grader-errors")


@pytest.mark.parametrize("spec", [FIELD_MISSING, RAISES], ids=["template-field", "raises"])
def test_eval_stops_when_grading_fails_everywhere(tiny, tmp_path, capsys, spec):
    (tmp_path / "g.json").write_text(json.dumps(spec))
    err = error_of(capsys, evaluate(tiny, "--task", "items.jsonl", "--grader", "g.json"))
    assert spec["name"] in err and ("solution" in err or "boom" in err)
    assert not (tmp_path / "runs").exists()  # nothing written for a run that did not start


def test_a_judge_that_is_not_listening_stops_eval(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CORRAL_JUDGE_URL", "http://127.0.0.1:9/v1")
    spec = {"type": "score_model", "name": "judge", "model": "m",
            "input": [{"role": "user", "content": "Rate {{sample.output_text}}"}]}
    (tmp_path / "j.json").write_text(json.dumps(spec))
    err = error_of(capsys, evaluate(tiny, "--task", "items.jsonl", "--grader", "j.json"))
    assert "judge" in err and not (tmp_path / "runs").exists()


def test_pairs_and_rl_stop_too(tiny, tmp_path, capsys):
    (tmp_path / "g.json").write_text(json.dumps(FIELD_MISSING))
    err = error_of(capsys, ["pairs", "--model", tiny, "--task", "items.jsonl", "--task-grader",
                            "g.json", "-n", "2", "--max-new-tokens", "3"])
    assert "needs-solution" in err
    (tmp_path / "rft.jsonl").write_text((tmp_path / "items.jsonl").read_text())
    err = error_of(capsys, ["rft", f"model.name={tiny}", "data.train=rft.jsonl",
                            "rl.grader=g.json", "rl.n=2", "rl.prompts_per_step=2",
                            "rl.max_new_tokens=3", "train.max_steps=1", "lora.r=4",
                            "train.progress=false"])
    assert "needs-solution" in err and "too hard" not in err


# ----------------------------------------------------- options a command cannot honour
@pytest.mark.parametrize("argv, needle", [
    (["--task", "arithmetic", "--split", "tset"], "has splits train, dev, unseen$"),
    (["--task", "gsm8k", "--data", "items.jsonl", "--split", "unsen"], "did you mean 'unseen'"),
    (["--task", "items.jsonl", "--grader", "numeric", "--split", "unsen"], "'unseen'"),
    (["--task", "arithmetic", "--limit", "-1"], "--limit -1"),
    (["--task", "items.jsonl", "--grader", "numeric", "--few-shot", "3"], "--few-shot 3"),
    (["--task", "arithmetic", "--few-shot", "100000"], "--few-shot 100000"),
    (["--task", "arithmetic", "-n", "0"], "n must be at least 1"),
    (["--task", "arithmetic", "--top-p", "2"], "top_p"),
    (["--task", "arithmetic", "--temperature", "-1"], "temperature"),
    (["--task", "arithmetic", "--max-grader-errors", "0"], "--max-grader-errors"),
    (["--task", "items.jsonl", "--grader", "bad.json"], "bad.json: not valid JSON"),
    (["--task", "items.jsonl"], "--grader"),
])
def test_eval_options_it_cannot_honour(tiny, tmp_path, capsys, argv, needle):
    import re

    (tmp_path / "bad.json").write_text("{not json")
    err = error_of(capsys, evaluate(tiny, *argv))
    assert re.search(needle, err.strip()), err
    assert not (tmp_path / "runs").exists()


def test_a_prompt_longer_than_the_context_is_refused(tiny, tmp_path, capsys):
    (tmp_path / "long.jsonl").write_text(json.dumps(
        {"messages": [{"role": "user", "content": "word " * 3000}], "answer": "1"}) + "\n")
    err = error_of(capsys, evaluate(tiny, "--task", "long.jsonl", "--grader", "numeric"))
    assert "context of 2048" in err


def test_pairs_names_its_own_grader_flag(tiny, capsys):
    err = error_of(capsys, ["pairs", "--model", tiny, "--task", "items.jsonl"])
    assert "--task-grader" in err


def test_a_failed_model_load_leaves_no_eval_folder(tiny, tmp_path, capsys):
    (tmp_path / "notamodel").mkdir()
    error_of(capsys, evaluate("notamodel", "--task", "arithmetic", "--name", "e"))
    assert not (tmp_path / "runs").exists()


def test_a_good_eval_still_writes_its_folder(tiny, tmp_path, capsys):
    assert main(evaluate(tiny, "--task", "arithmetic", "--limit", "2", "--name", "e")) == 0
    assert (tmp_path / "runs" / "e" / "config.yaml").is_file()
    assert len((tmp_path / "runs" / "e" / "samples.jsonl").read_text().splitlines()) == 2


# ------------------------------------------------------------------ grader specs in RL
def test_rl_grader_accepts_inline_json_and_names_a_bad_entry(tiny, tmp_path, capsys):
    from corral.methods.rl import rl_grader
    from corral.methods.rl_config import RLSection

    inline = json.dumps({"type": "string_check", "name": "s", "operation": "eq",
                         "input": "{{sample.output_text}}", "reference": "{{item.answer}}"})
    assert rl_grader(RLSection(grader=inline)).name == "s"
    (tmp_path / "rft.jsonl").write_text((tmp_path / "items.jsonl").read_text())
    err = error_of(capsys, ["rft", f"model.name={tiny}", "data.train=rft.jsonl",
                            "rl.grader=numeric", "rl.graders=[abc]"])
    assert "'abc'" in err and "WEIGHT:SPEC" in err
    err = error_of(capsys, ["rft", f"model.name={tiny}", "data.train=rft.jsonl",
                            f"rl.grader={inline}", "rl.graders=[0.5:nosuchrule]"])
    assert "nosuchrule" in err
