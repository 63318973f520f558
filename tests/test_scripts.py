"""The scripts behind docs/results.md still run against today's code: every corral command a
demo runs parses (argparse + the method's config loader), the cheap benches run on the tiny
model, and docs/results.md names existing scripts and commands that parse."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
RESULTS = REPO / "docs" / "results.md"
GSM8K = REPO.parent / "shared" / "data" / "gsm8k"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = script("check_commands").check


def record(name: str, tmp_path, *parts: str, **env) -> list[list[str]]:
    """The corral commands a shell demo would run (CORRAL_RECORD mode: nothing runs)."""
    out = tmp_path / f"{name}.commands.jsonl"
    env = {**os.environ, **env, "CORRAL_RECORD": str(out)}
    done = subprocess.run(["bash", str(SCRIPTS / f"{name}.sh"), *parts], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("name, parts, count", [
    ("demo_distill", (), 9), ("demo_select", (), 11), ("demo_rejection_gsm8k", (), 4),
    ("demo_feedback", ("card", "strategies", "rlaif", "cai"), 14)])
def test_shell_demo_commands_parse(tmp_path, name, parts, count):
    commands = record(name, tmp_path, *parts)
    assert len(commands) == count
    for argv in commands:
        check(argv)


def test_rejection_demo_chains_its_files(tmp_path):
    sample, sft, base, student = record("demo_rejection_gsm8k", tmp_path)
    assert sample[:2] == ["synth", "rejection"] and "rs/round1.jsonl" in sample
    assert "data.train=rs/round1.jsonl" in sft and "run.name=rs-sft" in sft
    assert base[base.index("--model") + 1] == "smollm2-135m-instruct"
    assert student[student.index("--model") + 1] == "rs-sft"
    assert base[base.index("--split") + 1] == student[student.index("--split") + 1] == "unseen"


@pytest.mark.skipif(not (GSM8K / "test.jsonl").is_file(), reason="needs the GSM8K files")
def test_rejection_demo_runs_on_the_tiny_model(tmp_path, monkeypatch, capsys):
    """The whole chain, in-process: sample (a grader that keeps any answer, since the tiny
    model never solves GSM8K), SFT on the kept rows, both evals, the paired comparison."""
    from corral.cli.app import main
    from corral.testing import save_tiny

    tiny = save_tiny(tmp_path / "tiny")
    commands = record("demo_rejection_gsm8k", tmp_path, MODEL=tiny, LIMIT="3", N="2",
                      TOKENS="6", EVAL_LIMIT="3", GRADER="regex:.",
                      GSM8K=str(REPO / ".." / "shared" / "data" / "gsm8k"))
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        assert main(argv) == 0, argv
    kept = (tmp_path / "rs" / "round1.jsonl").read_text().splitlines()
    assert 1 <= len(kept) <= 3  # --keep 1: at most one sample per prompt (an empty one fails)
    assert (tmp_path / "runs" / "rs-sft" / "final").is_dir()
    # sources name the real path, which is what demo_feedback.sh's GSM8K card matches
    samples = (tmp_path / "rs" / "round1.samples.jsonl").read_text().splitlines()
    assert all(json.loads(line)["source"].startswith(f"{GSM8K.resolve()}/train.jsonl:")
               for line in samples)
    capsys.readouterr()
    script("paired").main(["runs/rs-eval-base", "runs/rs-eval-student"])
    assert "on 3 shared items" in capsys.readouterr().out


def test_before_after_bench_eval_parses():
    """scripts/bench_before_after.sh times `corral eval` through main([...]) in-process."""
    import ast

    text = (SCRIPTS / "bench_before_after.sh").read_text()
    listed = re.search(r"main\((\[.*?\])\)", text, re.S).group(1).replace("$WORK", "/w")
    argv = ast.literal_eval(listed)
    assert argv[:3] == ["eval", "--model", "/w/tiny"]
    check(argv)


def test_quickstart_data_is_reproducible(tmp_path):
    counts = script("make_quickstart_data").write(tmp_path)
    assert counts == {"train": 600, "dev": 100, "unseen": 100}
    for name in counts:
        assert (tmp_path / f"quickstart_{name}.jsonl").read_bytes() == \
            (REPO / "corral" / "assets" / f"quickstart_{name}.jsonl").read_bytes()


def test_check_rejects_what_the_cli_refuses():
    for argv, says in [(["sft", "train.lrr=1"], "train.lrr"),
                       (["eval", "--model", "m", "--task", "arithmetic", "--bogus"], "--bogus"),
                       (["simpo", "dpo.loss=ipo", "data.train=x.jsonl"], "dpo.loss"),
                       (["synth", "rejection", "--task", "gsm8k"], "--out"),
                       (["eval", "--model", "m", "--task", "arithmetic", "--split", "test"],
                        "--split 'test'"),
                       (["eval", "--model", "m", "--task", "gsm8kk"], "gsm8kk")]:
        with pytest.raises(ValueError, match=re.escape(says)):
            check(argv)


def test_commands_in_markdown_joins_continuations_and_drops_comments():
    text = ("Text `corral not-in-a-fence`.\n```bash\ncorral eval --model m \\\n   --task arithmetic"
            "  # a comment\npython x.py\n```\n- item\n\n  ```\n  corral sft train.lr=1e-4\n  ```\n")
    assert script("check_commands").commands_in_markdown(text) == [
        ["eval", "--model", "m", "--task", "arithmetic"], ["sft", "train.lr=1e-4"]]


def test_python_demo_configs_load():
    from corral.core.config import load_config
    from corral.methods.dpo import DPOConfig
    from corral.methods.kto import KTOConfig
    from corral.methods.rl import load_rl_config
    from corral.methods.rm import RMConfig

    rft = load_rl_config(None, [*script("demo_rft").DEFAULTS, "eval.limit=100"])
    assert (rft.rl.n, rft.eval.limit, rft.train.seed) == (8, 100, 0)
    ppo = script("demo_ppo")
    args = ppo.argparse.Namespace(sft_steps=20, rm_pairs=240, ppo_steps=24, eval_limit=40,
                                  model="smollm2-135m-instruct")
    commands = ppo.commands(args, Path("out"), "t", "pairs.jsonl")
    assert list(commands) == ["sft", "rm", "ppo", "eval"]
    for argv in commands.values():
        check(argv)
    rm = script("demo_rm")
    cfg = load_config(RMConfig, None, rm.overrides(rm.parse([]), "t.jsonl", "d.jsonl", Path(".")))
    assert cfg.data.validation == "d.jsonl"
    pref = script("demo_preference")
    args = pref.parse([])
    for method, cls in (("dpo", DPOConfig), ("kto", KTOConfig)):
        cfg = load_config(cls, None, pref.overrides(method, Path("p.jsonl"), args, Path("r")))
        assert getattr(cfg, method).beta == 0.1 and cfg.train.seed == 0


@pytest.fixture
def tiny(tmp_path):
    from corral.testing import save_tiny

    return save_tiny(tmp_path / "tiny")


def test_rft_demo_runs_on_the_tiny_model(tmp_path, tiny):
    result = script("demo_rft").main([
        f"model.name={tiny}", "data.limit=4", "rl.n=2", "rl.prompts_per_step=2",
        "train.epochs=1", "eval.limit=4", "rl.max_new_tokens=6", "eval.max_new_tokens=6",
        "rl.signal_check=off", f"run.root={tmp_path / 'runs'}"])
    assert (result["steps"], result["unseen_items"]) == (2, 4)
    for side in ("before", "after"):
        p = result[f"unseen_{side}"]
        assert result[f"unseen_{side}_stderr"] == round((p * (1 - p) / 4) ** 0.5, 3)


def test_rm_and_ppo_demos_run_on_the_tiny_model(tmp_path, tiny):
    rm = script("demo_rm").main(["--model", tiny, "--train", "8", "--heldout", "4",
                                 "--out", str(tmp_path / "rm")])
    assert rm["train_pairs"] == 8 and rm["heldout_pairs"] == 4
    assert 0 <= rm["heldout_accuracy"] <= 1
    ppo = script("demo_ppo").main(["--model", tiny, "--sft-steps", "1", "--rm-pairs", "8",
                                   "--ppo-steps", "1", "--eval-limit", "3",
                                   "--out", str(tmp_path / "ppo")])
    assert set(ppo["seconds"]) == {"sft", "rm", "ppo", "eval"}
    assert ppo["unseen_rm_score_before"] is not None


def test_paired_scores_and_differences(tmp_path, capsys):
    for name, passed in (("base", [1, 0, 0, 0]), ("student", [1, 1, 1, 0])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "samples.jsonl").write_text("".join(
            json.dumps({"item": f"i{k}", "passed": p}) + "\n" for k, p in enumerate(passed)))
    script("paired").main([str(tmp_path / "base"), str(tmp_path / "student")])
    base, student = capsys.readouterr().out.splitlines()
    assert "0.250 ± 0.217 (4 items)" in base  # sqrt(.25 * .75 / 4)
    # differences 0, 1, 1, 0: mean 0.5, sd sqrt(1/3), stderr sqrt(1/3) / 2
    assert "0.750 ± 0.217; paired difference +0.500 ± 0.289 on 4 shared items" in student


def test_packed_attention_bench_tiny():
    report = script("bench_packed_attention").main(["--tiny"])
    rows = [report[k] for k in ("dense", "varlen", "padded")]
    assert all(r["seconds"] > 0 for r in rows)
    assert max(r["loss"] for r in rows) - min(r["loss"] for r in rows) < 1e-4


def test_packed_attention_layouts_hold_the_same_tokens():
    layouts = script("bench_packed_attention").layouts(3, 5, 259, 0)
    (packed, packed_pos), (padded, padded_pos) = layouts["dense"], layouts["padded"]
    assert packed.shape == (1, 15) and padded.shape == (3, 5)
    assert packed.flatten().tolist() == padded.flatten().tolist()
    assert packed_pos.flatten().tolist() == padded_pos.flatten().tolist() == [0, 1, 2, 3, 4] * 3


def test_sandbox_bench_smoke():
    from corral.graders.sandbox import sandbox_status

    report = script("bench_sandbox").main(["--batches", "2"])
    sides = ["none", "bwrap"] if sandbox_status()[0] else ["none"]
    for side in sides:
        assert 0 < report[side]["startup_ms"] <= report[side]["batch_ms"]
    with pytest.raises(SystemExit, match="--batches 0"):
        script("bench_sandbox").main(["--batches", "0"])


@pytest.mark.skipif(not (GSM8K / "test.jsonl").is_file(), reason="needs the GSM8K files")
def test_decontam_demo_small(monkeypatch):
    monkeypatch.setenv("GSM8K", str(GSM8K))
    table = script("demo_decontam").main(["--train", "30", "--plant", "4", "--grid", "13:0.5"])
    row = table["13:0.5"]
    assert (row["exact"], row["embedded"], row["clean"]) == ("4/4", "4/4", "0/30")


# ---------------------------------------------------------------- docs/results.md
def test_results_commands_parse():
    commands = script("check_commands").commands_in_markdown(RESULTS.read_text())
    assert len(commands) >= 7
    for argv in commands:
        check(argv)


def test_results_paths_exist_and_doc_stands_alone():
    text = RESULTS.read_text()
    assert "../shared" not in text
    assert not re.search(r"\bissues? \d+", text, re.I)
    paths = set(re.findall(r"\b((?:scripts|bench|corral|docs)/[\w/.-]*\w)", text))
    assert paths
    missing = [p for p in sorted(paths) if not (REPO / p).exists()]
    assert not missing, f"docs/results.md names missing files: {missing}"


def test_results_scripts_are_ours():
    """Every script results.md cites exists and is covered by a test here."""
    cited = set(re.findall(r"scripts/(\w+)\.(?:py|sh)", RESULTS.read_text()))
    tested = set(re.findall(r"\w+", Path(__file__).read_text()))
    assert cited and not cited - tested


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
