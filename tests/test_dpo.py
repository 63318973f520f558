"""Preference training end to end on the tiny model: every DPO loss, SimPO, ORPO and KTO
through the CLI, learning, the cached reference of full fine-tuning, and clear errors."""
import json
import math

import pytest

from corral.core.config import load_config
from corral.core.errors import CorralError
from corral.methods.dpo import REF_FILE, DPOConfig, run_dpo
from corral.methods.kto import KTOConfig, run_kto
from corral.store.runs import read_jsonl
from corral.testing import save_tiny


def write_pairs(path, n=12):
    with open(path, "w") as handle:
        for i in range(n):
            a, b = i % 7, (3 * i) % 5
            handle.write(json.dumps({
                "prompt": [{"role": "user", "content": f"add {a} {b}"}],
                "chosen": [{"role": "assistant", "content": f"{a + b}"}],
                "rejected": [{"role": "assistant", "content": f"no idea {i}"}]}) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("dpo")
    return tmp_path, save_tiny(tmp_path / "tiny"), write_pairs(tmp_path / "pairs.jsonl")


def common(tmp_path, model, data, name):
    return [f"model.name={model}", f"data.train={data}", "train.batch_tokens=1024",
            "train.progress=false", "lora.r=4", f"run.root={tmp_path / 'runs'}",
            f"run.name={name}"]


def cli(argv) -> int:
    """`corral ...` as the command line runs it, errors printed instead of raised."""
    import corral.cli.app as corral_cli

    parser = corral_cli.build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except CorralError as exc:
        print(f"corral: error: {exc}")
        return 2
    return 0


@pytest.mark.parametrize("command,extra", [
    ("dpo", ["dpo.loss=sigmoid"]), ("dpo", ["dpo.loss=ipo"]), ("dpo", ["dpo.loss=hinge"]),
    ("dpo", ["dpo.loss=robust", "dpo.label_smoothing=0.1"]), ("dpo", ["dpo.loss=norm"]),
    ("dpo", ["dpo.rpo_alpha=1.0"]), ("simpo", []), ("orpo", []), ("kto", [])])
def test_every_command_runs(setup, command, extra):
    tmp_path, model, data = setup
    name = f"{command}-{'-'.join(extra).replace('=', '_').replace('.', '_')}"
    assert cli([command, *common(tmp_path, model, data, name), "train.max_steps=2", *extra]) == 0
    rows = read_jsonl(tmp_path / "runs" / name / "metrics.jsonl")
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows)
    assert "rewards/accuracy" in rows[-1]
    assert (tmp_path / "runs" / name / "final" / "adapter_config.json").exists()
    if command == "kto":
        assert "kl" in rows[-1]


def test_dpo_learns_and_starts_at_log2(setup):
    tmp_path, model, data = setup
    cfg = load_config(DPOConfig, None, common(tmp_path, model, data, "learn") + [
        "train.epochs=8", "train.lr=5e-3", "train.batch_tokens=700", "dpo.beta=0.5",
        f"data.validation={data}", "train.eval_every=100"])
    store = run_dpo(cfg, log=lambda s: None)
    rows = read_jsonl(store.path / "metrics.jsonl")
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # LoRA B = 0: π = ref
    assert rows[-1]["loss"] < 0.5 * math.log(2)
    assert rows[-1]["eval/rewards/accuracy"] == 1.0
    assert json.loads((store.path / "lineage.json").read_text())["extra"]["method"] == "dpo"


def test_full_finetuning_caches_reference_and_learns(setup):
    tmp_path, model, data = setup
    cfg = load_config(DPOConfig, None, common(tmp_path, model, data, "full") + [
        "lora.enabled=false", "train.epochs=4", "train.lr=1e-3", "dpo.beta=0.5"])
    store = run_dpo(cfg, log=lambda s: None)
    assert (store.path / REF_FILE).is_file()
    rows = read_jsonl(store.path / "metrics.jsonl")
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_kto_learns(setup):
    tmp_path, model, data = setup
    cfg = load_config(KTOConfig, None, common(tmp_path, model, data, "kto-learn") + [
        "train.epochs=8", "train.lr=5e-3", "train.batch_tokens=700", "kto.beta=0.5"])
    store = run_kto(cfg, log=lambda s: None)
    rows = read_jsonl(store.path / "metrics.jsonl")
    assert rows[0]["loss"] == pytest.approx(0.5, abs=1e-4)  # 1 − σ(0) before any update
    assert rows[-1]["loss"] < 0.45


def test_cli_errors_are_one_line(setup, capsys):
    tmp_path, model, data = setup
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "chosen": "a"}\n')
    assert cli(["dpo", *common(tmp_path, model, str(bad), "bad")]) == 2
    assert f"{bad}:1: no recognised format" in capsys.readouterr().out
    assert cli(["dpo", *common(tmp_path, model, data, "bad2"), "dpo.loss=sigmod"]) == 2
    assert "'dpo.loss' is 'sigmod'" in capsys.readouterr().out
    assert cli(["simpo", *common(tmp_path, model, data, "bad3"), "dpo.loss=orpo"]) == 2
    assert "corral dpo dpo.loss=orpo" in capsys.readouterr().out
    assert cli(["kto", *common(tmp_path, model, data, "bad4"), "train.batch_tokens=200"]) == 2
    assert "at least 2 rows per micro-batch" in capsys.readouterr().out


def test_cli_pairs_writes_rows_with_provenance(setup, tmp_path):
    _, model, _ = setup
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"prompt": f"say {i}", "answer": str(i)}) + "\n"
                             for i in range(3)))
    out = tmp_path / "pairs-out"
    assert cli(["pairs", "--model", model, "--task", str(items), "--task-grader", "numeric",
                "-n", "2", "--max-new-tokens", "4", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stats"]["samples"] == 6 and manifest["origin"]["grader"] == "numeric"
    rows = [json.loads(line) for line in (out / "kto.jsonl").read_text().splitlines()]
    assert all(r["provenance"]["model"] == model for r in rows)
    assert cli(["pairs", "--model", model, "--task", str(items), "--task-grader", "numeric",
                "--split", "unseen", "--out", str(out)]) == 2
