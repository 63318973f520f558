"""`corral lineage`: the tree across generations and its three flags, on hand-built runs."""
import json

from corral.cli.app import main
from corral.store.jobs import write_manifest
from corral.store.runs import RunStore


def make_run(root, name, base, data, eval_task=""):
    store = RunStore(root, name)
    store.write_config({"eval": {"task": eval_task}} if eval_task else {})
    store.write_lineage(base, data, extra={"method": "sft"})
    (store.path / "final").mkdir(exist_ok=True)
    return store.path


def data_file(path, generator, decontaminated=()):
    path.write_text(json.dumps({"messages": []}) + "\n")
    steps = [{"step": "decontaminate", "targets": list(decontaminated)}] if decontaminated else []
    write_manifest(path, kind="synth-rejection", generator=generator, steps=steps)
    return str(path)


def test_lineage_across_two_generations_with_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    embedded = {"kind": "local", "model": "/cache/models/smollm2-135m-instruct"}
    gen1 = data_file(tmp_path / "rs1.jsonl", embedded, decontaminated=["gsm8k"])
    first = make_run("runs", "gen1", "smollm2-135m-instruct", [gen1], eval_task="gsm8k")
    teacher = {"kind": "local", "model": str(first / "final"), "run": str(first)}
    gen2 = data_file(tmp_path / "rs2.jsonl", teacher)
    api = data_file(tmp_path / "api.jsonl", {"kind": "endpoint", "url": "https://x/v1",
                                             "model": "big"})
    make_run("runs", "gen2", str(first / "final"), [gen2, api], eval_task="gsm8k")
    assert main(["lineage", "gen2"]) == 0
    out = capsys.readouterr().out
    tree, flags = out.split("flags:")
    assert tree.index("run gen2") < tree.index("run gen1")  # the teacher's run nests inside
    assert "rs1.jsonl" in tree and "endpoint https://x/v1 model big" in tree
    assert "gen2: trained on outputs of its own base model" in flags  # gen1 taught gen2
    assert "rs2.jsonl: not decontaminated against gsm8k" in flags
    assert "rs1.jsonl: not decontaminated" not in flags  # its manifest records the check
    assert "api.jsonl: teacher endpoint https://x/v1 model big has no known lineage" in flags
    assert main(["lineage", "gen1"]) == 0
    out = capsys.readouterr().out
    assert "student: " in out and "gen2" in out
    assert "gen1: trained on outputs of its own base model" in out  # smollm2 taught itself


def test_lineage_of_a_missing_run_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["lineage", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
