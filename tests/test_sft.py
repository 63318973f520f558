"""SFT end to end on the tiny model: learning, run files, resume, CLI errors, unseen refusal."""
import json

import pytest

from corral.cli.app import main
from corral.core.config import load_config
from corral.core.errors import CorralError
from corral.core.sections import SFTConfig
from corral.methods.sft import run_sft
from corral.store.runs import read_jsonl
from corral.testing import save_tiny


def write_chats(path, n=24):
    with open(path, "w") as handle:
        for i in range(n):
            a, b = i % 7, (3 * i) % 5
            handle.write(json.dumps({"messages": [
                {"role": "user", "content": f"add {a} {b}"},
                {"role": "assistant", "content": f"{a + b}"}]}) + "\n")
    return str(path)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    model = save_tiny(tmp_path / "tiny")
    data = write_chats(tmp_path / "train.jsonl")
    return tmp_path, model, data


def config(tmp_path, model, data, *extra):
    return load_config(SFTConfig, None, [
        f"model.name={model}", f"data.train={data}", f"data.validation={data}",
        "train.lr=3e-3", "train.batch_tokens=512", "train.epochs=6", "train.progress=false",
        "lora.enabled=false", f"run.root={tmp_path / 'runs'}", "run.name=r", *extra])


def test_loss_falls_and_run_files(setup):
    tmp_path, model, data = setup
    store = run_sft(config(tmp_path, model, data, "train.eval_every=5"), log=lambda s: None)
    rows = read_jsonl(store.path / "metrics.jsonl")
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]
    assert "eval/loss" in rows[-1]
    assert (store.path / "final" / "config.json").exists()
    lineage = json.loads((store.path / "lineage.json").read_text())
    assert lineage["base_model"] == model
    assert (store.path / "config.yaml").read_text().count("lr: 0.003") == 1


def test_cli_resume_matches_uninterrupted(setup, monkeypatch):
    """Kill at step 4 (checkpoint at 3), resume: same losses as an uninterrupted run."""
    from corral.store.runs import RunStore

    tmp_path, model, data = setup
    common = [f"model.name={model}", f"data.train={data}", "train.lr=1e-3",
              "train.batch_tokens=512", "train.max_steps=6", "train.save_every=3",
              "train.progress=false", "lora.r=4", f"run.root={tmp_path / 'runs'}",
              "train.deterministic=true"]
    assert main(["sft", *common, "run.name=full"]) == 0
    append = RunStore.append_metrics

    def killed_at_4(self, step, metrics):
        if step == 4:
            raise KeyboardInterrupt
        append(self, step, metrics)

    monkeypatch.setattr(RunStore, "append_metrics", killed_at_4)
    assert main(["sft", *common, "run.name=cut"]) == 130
    monkeypatch.setattr(RunStore, "append_metrics", append)
    assert main(["sft", *common, "--resume", "cut"]) == 0
    full = read_jsonl(tmp_path / "runs" / "full" / "metrics.jsonl")
    cut = read_jsonl(tmp_path / "runs" / "cut" / "metrics.jsonl")
    assert [r["loss"] for r in cut] == pytest.approx([r["loss"] for r in full], rel=1e-5)


def test_cli_bad_data_is_one_clear_error(setup, capsys):
    tmp_path, model, _ = setup
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "bot", "content": "x"}]}\nnot json\n')
    code = main(["sft", f"model.name={model}", f"data.train={bad}",
                 f"run.root={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{bad}:1:" in err and f"{bad}:2:" in err
    assert not (tmp_path / "runs").exists()  # nothing written before validation passed


def test_cli_unknown_key_did_you_mean(setup, capsys):
    assert main(["sft", "train.lrr=1"]) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err


def test_unseen_rows_are_refused(setup):
    tmp_path, model, data = setup
    with pytest.raises(CorralError, match="sealed unseen split"):
        run_sft(config(tmp_path, model, data, f"data.unseen={data}"), log=lambda s: None)
