"""Training is a library call too (issue 19): `corral sft ...` and
`train(TrainOptions("sft", ...))` write the same run; resume and forced keys work the same."""
import json
from pathlib import Path

import pytest
import yaml

from corral.cli.app import main
from corral.core.errors import CorralError
from corral.methods.commands import TrainOptions, train
from corral.testing import save_tiny

VOLATILE = {"time", "duration_s", "tokens_per_s", "step_time_s", "elapsed_s", "started",
            "finished", "wall_s", "samples_per_s", "peak_rss_mib", "mfu"}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    rows = [{"messages": [{"role": "user", "content": f"say {i}"},
                          {"role": "assistant", "content": f"{i} {i}"}]} for i in range(6)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(save_tiny(tmp_path / "tiny"))


def steady(rows):
    return [{k: v for k, v in r.items() if k not in VOLATILE and not k.endswith("_s")}
            for r in rows]


def overrides(tiny, root):
    return (f"model.name={tiny}", "data.train=c.jsonl", "train.max_steps=2",
            "train.progress=false", "lora.r=4", "run.name=t", f"run.root={root}")


def test_cli_and_library_train_the_same_run(setup, tmp_path, capsys):
    assert main(["sft", *overrides(setup, "cli")]) == 0
    assert "done: cli/t/final" in capsys.readouterr().out
    result = train(TrainOptions("sft", overrides=overrides(setup, "lib")))
    assert result.method == "sft" and result.run_dir == Path("lib") / "t"
    cli, lib = tmp_path / "cli" / "t", tmp_path / "lib" / "t"
    for run in (cli, lib):
        assert (run / "final").is_dir()
    read = lambda p: [json.loads(x) for x in p.read_text().splitlines()]  # noqa: E731
    assert steady(read(cli / "metrics.jsonl")) == steady(read(lib / "metrics.jsonl"))
    config = [yaml.safe_load((run / "config.yaml").read_text()) for run in (cli, lib)]
    for c in config:
        c["run"].pop("root")
    assert config[0] == config[1]
    weights = sorted(p.relative_to(cli) for p in (cli / "final").rglob("*.safetensors"))
    assert weights and all((cli / w).read_bytes() == (lib / w).read_bytes() for w in weights)


def test_library_resume_and_forced_keys(setup, tmp_path):
    first = train(TrainOptions("sft", overrides=overrides(setup, "runs")))
    again = train(TrainOptions("sft", overrides=("train.max_steps=3",), resume="t",
                               allow_change=("train.max_steps",)))
    assert again.run_dir == first.run_dir
    resumes = [json.loads(x) for x in (tmp_path / "runs" / "t" / "resumes.jsonl")
               .read_text().splitlines()]
    assert resumes and "train.max_steps" in json.dumps(resumes[-1])
    with pytest.raises(CorralError, match="corral simpo trains dpo.loss=simpo.*use corral dpo"):
        train(TrainOptions("simpo", overrides=("dpo.loss=ipo",)))


def test_every_api_name_resolves_and_is_a_command_or_its_types():
    import subprocess
    import sys

    from corral import api

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert callable(api.train) and callable(api.curate_data) and callable(api.run_eval)
    # `import corral.api` alone loads no model library: the service and the CLI stay quick
    code = "import sys, corral.api; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_a_finished_run_by_name_is_a_model_to_train_on(setup, tmp_path):
    """`model.name=RUN` (the README's sft -> rft step) trains on the run's final model."""
    train(TrainOptions("sft", overrides=overrides(setup, "runs")))
    second = train(TrainOptions("sft", overrides=(
        "model.name=t", "data.train=c.jsonl", "train.max_steps=1", "train.progress=false",
        "lora.r=4", "run.name=t2")))
    assert (second.run_dir / "final").is_dir()
    assert json.loads((second.run_dir / "lineage.json").read_text())["base_model"] == "t"
    from corral.store.lineage import lineage_tree

    lines, _ = lineage_tree("t2", "runs")  # the tree follows the name to run t and its data
    assert sum("c.jsonl" in line for line in lines) >= 2, lines


@pytest.mark.parametrize("method", ["dpo", "kto", "rm"])
def test_a_method_that_reads_no_task_refuses_data_task(setup, method):
    with pytest.raises(CorralError, match=rf"corral {method} does not train on "
                                          r"data.task=arithmetic.*corral pairs --task"):
        train(TrainOptions(method, overrides=("data.task=arithmetic", f"model.name={setup}")))
    with pytest.raises(CorralError, match="not both"):  # never silently unused
        train(TrainOptions(method, overrides=("data.task=arithmetic", "data.train=c.jsonl",
                                              f"model.name={setup}")))


def test_a_pal_judge_spec_loads_by_name_and_validates(setup):
    """`{"type": "pal_judge"}` is a grader spec like the others: rl.grader, eval --grader and
    best-of-n:N:SPEC can name it (the model loads only when it first grades)."""
    from corral.graders.load import grader_errors, load_grader
    from corral.methods.rl import JUDGE_TYPES

    assert grader_errors('{"type": "pal_judge", "model": "smollm2-135m-instruct"}') == []
    assert 'give "model"' in grader_errors('{"type": "pal_judge"}')[0]
    assert "unknown field(s) temperature" in grader_errors(
        '{"type": "pal_judge", "model": "m", "temperature": 1}')[0]
    grader = load_grader({"type": "pal_judge", "model": setup})
    assert grader.type in JUDGE_TYPES  # cached and budgeted as an RL reward


def test_a_stop_requested_from_outside_checkpoints_and_resumes_exactly(setup, tmp_path):
    """train/stop.request_stop (the service's pause) stops before the next step like a spent
    budget: the finished steps are checkpointed, and a resume ends where an unstopped run
    ends, to the same loss."""
    import dataclasses

    from corral.methods import registry, runner
    from corral.methods.commands import load_method_config
    from corral.train import stop

    steps = ("train.max_steps=4", "train.log_every=1", "train.save_every=100")
    plain = train(TrainOptions("sft", overrides=(*overrides(setup, "a"), *steps)))
    opts = TrainOptions("sft", overrides=(*overrides(setup, "b"), *steps))
    method = registry().get("sft")
    cfg = load_method_config(method, opts)
    prepared, built = runner.prepare(method, cfg)
    inner, calls = built.objective, []

    class StopInStepTwo:  # the objective, asking for a stop while step 2 runs
        def __getattr__(self, name):
            return getattr(inner, name)

        def __call__(self, policy, batch):
            calls.append(1)
            if len(calls) == 2:
                stop.request_stop("paused for the test")
            return inner(policy, batch)

    runner.launch(method, cfg, prepared, dataclasses.replace(built, objective=StopInStepTwo()),
                  log=lambda *a: None)
    read = lambda p: [json.loads(x) for x in p.read_text().splitlines()]  # noqa: E731
    rows = read(tmp_path / "b" / "t" / "metrics.jsonl")
    assert any("paused for the test" in str(r.get("stopped", "")) for r in rows), rows
    assert max(r["step"] for r in rows if "loss" in r) == 2  # steps 3 and 4 not run
    again = train(TrainOptions("sft", overrides=(*overrides(setup, "b"), *steps), resume="t"))
    last = lambda run: [r for r in read(run / "metrics.jsonl") if "loss" in r][-1]  # noqa
    assert last(again.run_dir)["step"] == 4
    assert last(again.run_dir)["loss"] == pytest.approx(last(plain.run_dir)["loss"], rel=1e-6)
