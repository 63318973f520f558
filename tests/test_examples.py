"""examples/: one complete, commented YAML per family of training commands. Each loads and
validates through its command's config loader (defaults <- forced keys <- the file), and its
data files read and validate through the method's own reader, with no model loaded."""
from pathlib import Path

import pytest

from corral.core.config import read_yaml
from corral.methods import registry
from corral.methods.commands import TrainOptions, load_method_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def load(path: Path):
    """The config `corral <stem> examples/<stem>.yaml` runs with."""
    method = registry().get(path.stem)
    return method, load_method_config(method, TrainOptions(path.stem, config=str(path)))


def data_files(cfg) -> list[str]:
    data = cfg.data
    return [p for p in (data.train, data.validation, data.unseen) if p]


def test_one_example_per_family_of_commands():
    families = {m.config for _, m in registry().items()}
    covered = {registry().get(p.stem).config for p in EXAMPLES}
    assert covered == families
    assert {p.stem for p in EXAMPLES} >= {"sft", "dpo", "kto", "rm", "rft", "grpo", "ppo"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads_and_its_data_validates(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples' paths are relative to the repository root
    method, cfg = load(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#") and f"corral {path.stem} examples/{path.name}" in text
    keys = [line for line in text.splitlines() if line.strip() and not line.startswith("#")
            and ":" in line and line.startswith("  ")]
    assert sum("#" in line for line in keys) >= len(keys) // 2  # most keys say what they do
    for file in data_files(cfg):  # shipped, small, and inside examples/data
        assert file.startswith("examples/data/") and (ROOT / file).stat().st_size < 20_000
    if cfg.rl.reward_model if hasattr(cfg, "rl") else False:
        from corral.methods.rl import load_items

        train, dev, unseen, _ = load_items(cfg)  # the reward model is a run made by rm.yaml
        assert train
    else:
        train, *_ = method.read(cfg)
        assert len(train) >= 4


def test_every_key_the_files_set_is_what_the_run_gets(monkeypatch):
    monkeypatch.chdir(ROOT)
    for path in EXAMPLES:
        _, cfg = load(path)
        for section, keys in read_yaml(str(path)).items():
            for key, value in keys.items():
                got = getattr(getattr(cfg, section), key)
                assert (list(got) if isinstance(got, tuple) else got) == value, \
                    f"{path.name}: {section}.{key}"


def test_ppo_reads_the_reward_model_rm_yaml_trains():
    _, ppo = load(ROOT / "examples" / "ppo.yaml")
    _, rm = load(ROOT / "examples" / "rm.yaml")
    assert ppo.rl.reward_model == rm.run.name
    assert (ppo.rl.preset, ppo.rl.advantage, ppo.rl.n) == ("ppo", "gae", 1)


def test_example_data_rows_are_in_their_formats(monkeypatch):
    from corral.data.readers import load_items, load_sft_records

    monkeypatch.chdir(ROOT)
    questions = "examples/data/questions.jsonl"  # the README's walk-through: SFT rows and items
    assert len(load_sft_records(questions)) == len(load_items(questions)) == 40
    assert all(item.fields["answer"] in item.fields["completion"]
               for item in load_items(questions))


def test_every_example_trains_a_step_on_the_tiny_model(tmp_path, monkeypatch):
    """Each file as its command runs it, on the tiny model for one step (PPO after rm.yaml,
    whose run is its reward model); the RL signal check is off because a random model's
    answers all fail alike."""
    from corral.cli.app import main
    from corral.testing import save_tiny

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(ROOT)
    small = [f"model.name={save_tiny(tmp_path / 'tiny')}", "train.max_steps=1",
             "train.progress=false", f"run.root={tmp_path / 'runs'}", "eval.limit=2",
             "eval.max_new_tokens=4"]
    rl = ["rl.max_new_tokens=4", "rl.prompts_per_step=2", "rl.signal_check=off"]
    extra = {"rft": [*rl, "rl.n=2"], "grpo": [*rl, "rl.n=2", "data.limit=4"], "ppo": rl}
    for name in ["sft", "dpo", "kto", "rm", "rft", "grpo", "ppo"]:
        assert main([name, f"examples/{name}.yaml", *small, *extra.get(name, [])]) == 0, name
        run = read_yaml(str(ROOT / "examples" / f"{name}.yaml"))["run"]["name"]
        assert (tmp_path / "runs" / run / "final").is_dir(), name
