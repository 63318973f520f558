"""RunStore: atomic files, metrics append/truncate, checkpoint publish/prune, lineage, sinks."""
import hashlib
import json
import re

import pytest
import yaml

from corral.core.errors import CorralError
from corral.store import runs as store_mod
from corral.store.runs import RunStore, atomic_write_text, new_run_name


def test_new_run_name_format():
    assert re.fullmatch(r"sft-\d{8}-\d{6}", new_run_name("sft"))


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a" / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [x.name for x in p.parent.iterdir()] == ["f.txt"]


def test_nothing_written_until_first_write(tmp_path):
    s = RunStore(tmp_path, "run")
    assert not s.exists() and not s.path.exists()
    s.write_config({"train": {"lr": 1e-4, "betas": (0.9, 0.99)}})
    assert s.exists()
    assert yaml.safe_load((s.path / "config.yaml").read_text()) == {
        "train": {"lr": 1e-4, "betas": [0.9, 0.99]}}


def test_metrics_append_read_truncate(tmp_path):
    s = RunStore(tmp_path, "run")
    for step in range(1, 6):
        s.append_metrics(step, {"loss": 1.0 / step})
    rows = s.read_metrics()
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert all("time" in r for r in rows) and rows[1]["loss"] == 0.5
    s.truncate_metrics(after_step=3)
    assert [r["step"] for r in s.read_metrics()] == [1, 2, 3]
    s.append_metrics(4, {"loss": 0.1})
    assert [r["step"] for r in s.read_metrics()] == [1, 2, 3, 4]


def test_torn_last_metrics_line_is_skipped(tmp_path):
    s = RunStore(tmp_path, "run")
    s.append_metrics(1, {"loss": 1.0})
    with open(s.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "lo')  # a crash in the middle of a write
    assert [r["step"] for r in s.read_metrics()] == [1]
    s.truncate_metrics(after_step=1)
    assert (s.path / "metrics.jsonl").read_text().count("\n") == 1


def test_samples_append(tmp_path):
    s = RunStore(tmp_path, "run")
    s.append_samples([{"prompt": "a", "completion": "b"}])
    s.append_samples([{"prompt": "c", "completion": "d"}])
    lines = (s.path / "samples.jsonl").read_text().splitlines()
    assert [json.loads(x)["prompt"] for x in lines] == ["a", "c"]


def test_resume_records_append_with_the_checkpoint_they_start_from(tmp_path):
    s = RunStore(tmp_path, "run")
    assert s.read_resumes() == []
    first = s.append_resume({})
    s.save_checkpoint(4, _writer("w4"))
    s.append_resume({"train.lr": [1e-5, 2e-5]})
    rows = s.read_resumes()
    assert rows[0] == first and first["from_step"] == 0 and first["changes"] == {}
    assert rows[1]["from_step"] == 4 and rows[1]["changes"] == {"train.lr": [1e-5, 2e-5]}
    assert len((s.path / "resumes.jsonl").read_text().splitlines()) == 2


def test_lineage_hashes_data_files(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "hi"}\n')
    s = RunStore(tmp_path, "run")
    s.write_lineage("tiny", [str(data), "org/hub-dataset"], parent_run="runs/base",
                    extra={"method": "sft"})
    lin = json.loads((s.path / "lineage.json").read_text())
    assert lin["base_model"] == "tiny" and lin["parent_run"] == "runs/base"
    assert lin["data"][0]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert lin["data"][1] == {"path": "org/hub-dataset", "sha256": None}
    assert lin["corral_version"] and lin["time"] and lin["extra"] == {"method": "sft"}


def _writer(text):
    def write(d):
        (d / "weights.txt").write_text(text)
    return write


def test_checkpoints_publish_prune_and_latest(tmp_path):
    s = RunStore(tmp_path, "run", keep=2)
    assert s.latest_checkpoint() is None
    for step in (2, 4, 6):
        path = s.save_checkpoint(step, _writer(f"w{step}"))
        assert path == s.checkpoint_dir(step)
    assert [step for step, _ in s.checkpoints()] == [4, 6]
    step, path = s.latest_checkpoint()
    assert step == 6 and (path / "weights.txt").read_text() == "w6"
    # a temp dir left by a crash is never taken for a checkpoint
    (s.path / "checkpoints" / ".tmp-step-8").mkdir()
    assert s.latest_checkpoint()[0] == 6


def test_failed_checkpoint_write_publishes_nothing(tmp_path):
    s = RunStore(tmp_path, "run")
    s.save_checkpoint(1, _writer("good"))

    def broken(d):
        (d / "half.txt").write_text("x")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        s.save_checkpoint(2, broken)
    assert [step for step, _ in s.checkpoints()] == [1]
    assert not list((s.path / "checkpoints").glob(".tmp-*"))


def test_resaving_a_step_replaces_it(tmp_path):
    s = RunStore(tmp_path, "run", keep=0)
    s.save_checkpoint(3, _writer("old"))
    s.save_checkpoint(3, _writer("new"))
    assert (s.checkpoint_dir(3) / "weights.txt").read_text() == "new"
    assert sorted(p.name for p in (s.path / "checkpoints").iterdir()) == ["step-3"]


def test_keep_zero_keeps_all(tmp_path):
    s = RunStore(tmp_path, "run", keep=0)
    for step in range(1, 5):
        s.save_checkpoint(step, _writer("w"))
    assert len(s.checkpoints()) == 4


def test_save_final_is_atomic_and_replaces(tmp_path):
    s = RunStore(tmp_path, "run")
    s.save_final(_writer("first"))
    dest = s.save_final(_writer("second"))
    assert dest == s.path / "final" and (dest / "weights.txt").read_text() == "second"
    assert sorted(p.name for p in s.path.iterdir()) == ["final"]


def test_report_to_unknown_and_missing_package(tmp_path, monkeypatch):
    with pytest.raises(CorralError, match="not known"):
        RunStore(tmp_path, "run", report_to="mlflow")
    monkeypatch.setattr(store_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CorralError, match="pip install wandb"):
        RunStore(tmp_path, "run", report_to="wandb")
    RunStore(tmp_path, "run", report_to="none")  # needs nothing


def test_sinks_receive_numeric_metrics(tmp_path, monkeypatch):
    seen = []

    class FakeSink:
        def __init__(self, store):
            seen.append(("open", store.name))

        def log(self, step, metrics):
            seen.append((step, metrics))

        def close(self):
            seen.append("closed")
    monkeypatch.setitem(store_mod._SINKS, "tensorboard", FakeSink)
    monkeypatch.setattr(store_mod.importlib.util, "find_spec", lambda name: object())
    with RunStore(tmp_path, "run", report_to="tensorboard") as s:
        assert seen == []  # opened lazily
        s.append_metrics(1, {"loss": 2.0, "note": "text"})
    assert seen == [("open", "run"), (1, {"loss": 2.0}), "closed"]


def test_empty_name_is_an_error(tmp_path):
    with pytest.raises(CorralError):
        RunStore(tmp_path, "")
