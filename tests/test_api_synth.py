"""Synthesis, pairs and curation as library calls: each command's CLI run and its library call
with the same options write the same files; `corral pairs` is a resumable job whose rows
lineage can follow; every command that turns task items into training data refuses sealed
unseen prompts."""
import json
import re
from pathlib import Path

import pytest

from corral.cli.app import main
from corral.core.errors import CorralError
from corral.infer.engine import Generation, SamplingParams
from corral.infer.remote import Usage

VOLATILE = {"created", "wall_s", "corral_version"}


class Scripted:
    """A generator answering from a function of (last user message, sample index)."""

    def __init__(self, answer, name="scripted"):
        self.answer, self.name, self.usage, self.calls, self.asked = answer, name, Usage(), 0, 0

    def identity(self):
        return {"kind": "local", "model": self.name}

    def chat(self, conversations, params=None, *, return_errors=False):
        params = params or SamplingParams()
        self.calls += 1
        self.asked += len(conversations)
        out = []
        for k, conv in enumerate(conversations):
            text = conv[-1]["content"]
            out.append([Generation(self.answer(text, j), [1, 2], [0.0, 0.0], "stop", k, j)
                        for j in range(params.n)])
            self.usage.requests += 1
            self.usage.completion_tokens += 2 * params.n
        return out


def adder(text, j):
    """Right on even samples, wrong on odd ones; instructions for self-instruct."""
    if text.startswith("Come up"):
        return "List three prime numbers greater than ten.\n5. Translate 'good morning' to French."
    m = re.search(r"What is (\d+) \+ (\d+)", text)
    if not m:
        return f"An answer to: {text}"
    return f"#### {int(m.group(1)) + int(m.group(2)) if j % 2 == 0 else -1}"


@pytest.fixture
def scripted(monkeypatch):
    """generator_for gives a fresh scripted generator; the made ones are listed."""
    import corral.infer.generators as generators

    made = []

    def fake(spec, root="runs", batch_size=16, **kw):
        made.append(Scripted(adder, spec))
        return made[-1]
    monkeypatch.setattr(generators, "generator_for", fake)
    return made


def prompts(path, n=4, answers=True):
    rows = [{"messages": [{"role": "user", "content": f"What is {i} + {i + 1}?"}],
             **({"answer": str(2 * i + 1)} if answers else {})} for i in range(n)]
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def normalised(value):
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    return value


def files(folder: Path) -> dict:
    """Every file under folder (inputs aside): name -> content, JSON parsed and normalised."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_dir() or path.name.startswith(("in.", "seeds.")):
            continue
        text = path.read_text(encoding="utf-8")
        try:
            content = normalised(json.loads(text))
        except ValueError:
            content = [normalised(json.loads(line)) for line in text.splitlines() if line]
        found[str(path.relative_to(folder))] = content
    return found


def same_files(tmp_path, monkeypatch, argv, call, setup):
    """Run the CLI in one folder and the library call in another; compare what they wrote."""
    results = []
    for name, run in (("cli", lambda: main(argv)), ("lib", call)):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)
        setup(folder)
        results.append(run())
    assert results[0] == 0, "the CLI run failed"
    cli, lib = files(tmp_path / "cli"), files(tmp_path / "lib")
    assert cli and cli.keys() == lib.keys()
    for name in cli:
        assert cli[name] == lib[name], name
    return results[1]


# ------------------------------------------------------------- CLI == library, per command
def test_rejection_cli_and_library_write_the_same_files(tmp_path, monkeypatch, scripted):
    from corral.api.synth import RejectionOptions, SynthResult, rejection

    argv = ["synth", "rejection", "--task", "in.jsonl", "--task-grader", "numeric", "-n", "4",
            "--keep", "2", "--out", "rs.jsonl"]
    opts = RejectionOptions(task="in.jsonl", task_grader="numeric", n=4, keep=2, out="rs.jsonl")
    result = same_files(tmp_path, monkeypatch, argv, lambda: rejection(opts),
                        lambda d: prompts(d / "in.jsonl"))
    assert isinstance(result, SynthResult) and result.counts["kept"] == 4  # repeats count once
    assert result.samples == "rs.samples.jsonl" and result.manifest == "rs.jsonl.manifest.json"


def test_distill_cli_and_library_write_the_same_files(tmp_path, monkeypatch, scripted):
    from corral.api.synth import DistillOptions, distill

    argv = ["synth", "distill", "--task", "in.jsonl", "-n", "3", "--rule", "majority",
            "--out", "d.jsonl"]
    opts = DistillOptions(task="in.jsonl", n=3, rule="majority", out="d.jsonl")
    result = same_files(tmp_path, monkeypatch, argv, lambda: distill(opts),
                        lambda d: prompts(d / "in.jsonl", answers=False))
    assert result.counts["kept"] == 4  # 2 of 3 samples agree on every prompt


def test_distill_through_a_strategy_teacher(tmp_path, monkeypatch, scripted):
    from corral.api.synth import DistillOptions, distill

    argv = ["synth", "distill", "--task", "in.jsonl", "--strategy", "majority:3",
            "--out", "d.jsonl"]
    opts = DistillOptions(task="in.jsonl", strategy="majority:3", out="d.jsonl")
    same_files(tmp_path, monkeypatch, argv, lambda: distill(opts),
               lambda d: prompts(d / "in.jsonl", answers=False))
    with pytest.raises(CorralError, match="gives one answer per prompt"):
        distill(DistillOptions(task="in.jsonl", strategy="majority:3", n=2, out="d.jsonl"))


def test_self_instruct_cli_and_library_write_the_same_files(tmp_path, monkeypatch, scripted):
    from corral.api.synth import SelfInstructOptions, self_instruct

    def seeds(folder):
        (folder / "seeds.jsonl").write_text("".join(json.dumps({"instruction": t}) + "\n" for t in
                                                    ["Write a haiku about the sea.",
                                                     "Explain photosynthesis to a child."]))
    argv = ["synth", "self-instruct", "--seeds", "seeds.jsonl", "--num", "2", "--out", "si.jsonl"]
    opts = SelfInstructOptions(seeds="seeds.jsonl", num=2, out="si.jsonl")
    result = same_files(tmp_path, monkeypatch, argv, lambda: self_instruct(opts), seeds)
    assert result.counts["kept"] == 2 and result.out == "si.jsonl"


def test_rest_em_cli_and_library_write_the_same_files(tmp_path, monkeypatch, scripted):
    """ReST-EM's rounds with training and dev evaluation faked: the same round data and
    rounds record either way, and rejection() picks the rounds when asked for."""
    import corral.eval.evaluate as evaluate
    import corral.methods.runner as runner
    from corral.api.synth import RejectionOptions, RestEMResult, rejection

    trained = []

    def fake_run(method, cfg):
        trained.append(cfg.run.name)
        (Path(cfg.run.root) / cfg.run.name / "final").mkdir(parents=True)
    dev = iter([0.1, 0.3, 0.2] * 2)
    monkeypatch.setattr(runner, "run", fake_run)
    monkeypatch.setattr(evaluate, "compare_models",
                        lambda paths, task, params, ks: {paths[0]: {"mean": next(dev)}})
    argv = ["synth", "rejection", "--task", "arithmetic", "--limit", "3", "--rounds", "3",
            "--dev-limit", "2", "-n", "2", "--out", "rs.jsonl"]
    opts = RejectionOptions(task="arithmetic", limit=3, rounds=3, dev_limit=2, n=2,
                            out="rs.jsonl")
    result = same_files(tmp_path, monkeypatch, argv, lambda: rejection(opts), lambda d: None)
    assert isinstance(result, RestEMResult) and result.best.round == 1
    assert [r.dev for r in result.rounds] == [0.1, 0.3, 0.2] and result.record == "rs.rounds.json"
    assert trained == ["rs-round1", "rs-round2"] * 2


def test_pairs_cli_and_library_write_the_same_files(tmp_path, monkeypatch, scripted):
    from corral.api.synth import PairsOptions, PairsResult, pairs

    argv = ["pairs", "--task", "in.jsonl", "--task-grader", "numeric", "-n", "4", "--out", "p"]
    opts = PairsOptions(task="in.jsonl", task_grader="numeric", n=4, out="p")
    result = same_files(tmp_path, monkeypatch, argv, lambda: pairs(opts),
                        lambda d: prompts(d / "in.jsonl"))
    assert isinstance(result, PairsResult) and len(result.preference) == 4  # one per prompt
    assert len(result.feedback) == 8 and result.stats["pass_rate"] == 0.5
    written = files(tmp_path / "lib")
    assert {"p/pairs.jsonl", "p/kto.jsonl", "p/manifest.json", "p/samples.jsonl",
            "p/pairs.jsonl.manifest.json", "p/kto.jsonl.manifest.json"} <= written.keys()
    row = written["p/pairs.jsonl"][0]
    assert row["provenance"]["chosen_score"] == 1.0 and row["provenance"]["item"] == \
        "in.jsonl:1"


def test_curate_cli_and_library_write_the_same_files(tmp_path, monkeypatch):
    from corral.api.curate import CurateResult, CurateRunOptions, curate

    def rows(folder):
        texts = ["the cat sat on the mat today", "the cat sat on the mat today",
                 "a dog ran in the park at noon", "What is 2 + 3?"]
        (folder / "in.jsonl").write_text("".join(json.dumps({"messages": [
            {"role": "user", "content": t}, {"role": "assistant", "content": "ok"}]}) + "\n"
            for t in texts))
    argv = ["curate", "in.jsonl", "--out", "c.jsonl", "--near", "off", "--select", "2",
            "--select-method", "random"]
    opts = CurateRunOptions(file="in.jsonl", out="c.jsonl", near="off", select=2,
                            select_method="random")
    result = same_files(tmp_path, monkeypatch, argv, lambda: curate(opts), rows)
    assert isinstance(result, CurateResult) and (result.rows_in, result.rows_out) == (4, 2)
    assert [s["step"] for s in result.steps][0] == "exact"
    with pytest.raises(CorralError, match="--near takes a similarity"):
        curate(CurateRunOptions(file="in.jsonl", out="x.jsonl", near="2"))


# ------------------------------------------------------------------- pairs: one job
def test_a_killed_pairs_job_resumes_without_regenerating_finished_rows(tmp_path):
    from corral.synth.pairs import sample_pairs
    from corral.tasks import get_task

    task = get_task(prompts(tmp_path / "in.jsonl", n=6), split="train", grader="numeric")
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=8)

    class Killed(Scripted):
        def chat(self, conversations, params=None, *, return_errors=False):
            if self.calls == 1:
                raise KeyboardInterrupt  # killed during the second batch
            return super().chat(conversations, params, return_errors=return_errors)
    out = str(tmp_path / "p" / "samples.jsonl")
    with pytest.raises(KeyboardInterrupt):
        sample_pairs(Killed(adder), task, out, params, batch_size=2, log=lambda _: None)
    again = Scripted(adder)
    result = sample_pairs(again, task, out, params, batch_size=2, log=lambda _: None)
    assert again.asked == 4  # the first batch's 2 prompts came from the row cache
    assert result.stats["prompts"] == 6 and len(result.preference) == 6
    rerun = Scripted(adder)
    sample_pairs(rerun, task, out, params, batch_size=2, log=lambda _: None)
    assert rerun.asked == 0


def test_lineage_of_a_run_trained_on_pairs_finds_the_manifest(tmp_path, monkeypatch, capsys,
                                                               scripted):
    from corral.store.runs import RunStore

    monkeypatch.chdir(tmp_path)
    prompts(tmp_path / "in.jsonl")
    assert main(["pairs", "--task", "in.jsonl", "--task-grader", "numeric", "--out", "p"]) == 0
    store = RunStore("runs", "dpo1")
    store.write_config({})
    store.write_lineage("smollm2-135m-instruct", [str(tmp_path / "p" / "pairs.jsonl")],
                        extra={"method": "dpo"})
    capsys.readouterr()
    assert main(["lineage", "dpo1"]) == 0
    out = capsys.readouterr().out
    assert "no manifest" not in out and "synth-pairs" in out
    assert out.count("generator: local smollm2-135m-instruct") == 1  # named twice, shown once
    assert "dpo1: trained on outputs of its own base model" in out  # found via the manifest


# ------------------------------------------------------------- the sealed-split guard
def sealed_file(tmp_path, monkeypatch) -> str:
    """A prompt file that is the unseen part of a `corral split` (sealed in CORRAL_HOME)."""
    from corral.data.splits import split_file

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    counts = split_file(prompts(tmp_path / "all.jsonl", n=40), dev=0.0, unseen=0.5)
    assert counts["unseen"] > 0
    return str(tmp_path / "all.unseen.jsonl")


COMMANDS = {
    "rejection": ["synth", "rejection", "--task-grader", "numeric", "--out", "o.jsonl"],
    "distill": ["synth", "distill", "--out", "o.jsonl"],
    "pairs": ["pairs", "--task-grader", "numeric", "--out", "p"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_the_unseen_split(command, tmp_path, monkeypatch, capsys,
                                                scripted):
    monkeypatch.chdir(tmp_path)
    argv = COMMANDS[command] + ["--task", "arithmetic", "--split", "unseen"]
    assert main(argv) == 2
    assert "--split unseen" in capsys.readouterr().err and not scripted


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_a_sealed_prompt_file(command, tmp_path, monkeypatch, capsys,
                                                    scripted):
    unseen = sealed_file(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(COMMANDS[command] + ["--task", unseen]) == 2
    err = capsys.readouterr().err
    assert "sealed unseen split" in err and "all.unseen.jsonl:1" in err and not scripted
    train = str(tmp_path / "all.train.jsonl")
    assert main(COMMANDS[command] + ["--task", train]) == 0  # the train part is fine


def test_self_instruct_refuses_sealed_seeds(tmp_path, monkeypatch, capsys, scripted):
    from corral.data.splits import split_file

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    rows = [{"instruction": f"Write a poem about the number {i}."} for i in range(40)]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    split_file(str(tmp_path / "s.jsonl"), dev=0.0, unseen=0.5)
    monkeypatch.chdir(tmp_path)
    assert main(["synth", "self-instruct", "--seeds", "s.unseen.jsonl", "--out", "si.jsonl"]) == 2
    assert "sealed unseen split" in capsys.readouterr().err and not scripted
