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


def test_lineage_follows_a_curated_file_to_its_generator(tmp_path, monkeypatch, capsys):
    """curate embeds its input's manifest in `sources`: the teacher and the decontamination
    check are both found through it, and the curated file's own check counts for the run."""
    from corral.curate.pipeline import CurateOptions, curate_file

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    rows = [{"messages": [{"role": "user", "content": f"What is {k} + {k}?"},
                          {"role": "assistant", "content": str(2 * k)}]} for k in range(5)]
    raw = tmp_path / "synth.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    api = {"kind": "endpoint", "url": "https://x/v1", "model": "big"}
    write_manifest(str(raw), kind="synth-distill", generator=api)
    manifest = curate_file(str(raw), str(tmp_path / "clean.jsonl"),
                           CurateOptions(near=None, decontaminate=("arithmetic",)))
    assert manifest["sources"][0]["generator"] == api
    assert manifest["steps"][-1]["targets"] == ["arithmetic"]
    make_run("runs", "student", "smollm2-135m-instruct", [str(tmp_path / "clean.jsonl")],
             eval_task="arithmetic")
    make_run("runs", "raw", "smollm2-135m-instruct", [str(raw)], eval_task="arithmetic")
    assert main(["lineage", "student"]) == 0
    out = capsys.readouterr().out
    assert "endpoint https://x/v1 model big" in out  # found through the curated file's sources
    assert "not decontaminated" not in out
    assert main(["lineage", "raw"]) == 0
    assert "synth.jsonl: not decontaminated against arithmetic" in capsys.readouterr().out
