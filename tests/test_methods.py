"""The method contract and the config path: every registered method, its generated --help,
renamed keys, a Task as SFT data, and the one grader loader."""
import dataclasses
import json
import warnings

import pytest

from corral.cli.app import build_parser, main
from corral.core.config import ConfigNote, describe, load_config
from corral.core.errors import CorralError
from corral.core.sections import MethodConfig, SFTConfig
from corral.graders.base import Sample
from corral.graders.load import grader_errors, load_grader
from corral.methods import registry
from corral.methods.ppo import PPOConfig
from corral.methods.rl_config import RLConfig
from corral.store.runs import read_jsonl
from corral.testing import save_tiny

EXPECTED = {"sft", "dpo", "simpo", "orpo", "kto", "rm", "rft", "grpo", "ppo"}


def test_every_method_is_registered_and_follows_the_contract():
    methods = dict(registry().items())
    assert set(methods) == EXPECTED
    for name, method in methods.items():
        assert issubclass(method.config, MethodConfig), name
        rows = describe(method.config)
        assert all(r["help"] for r in rows), [r["key"] for r in rows if not r["help"]]
        cfg = load_config(method.config, None, list(method.forced))  # defaults validate
        assert dataclasses.is_dataclass(cfg)
        with pytest.raises(CorralError, match="no training data"):
            from corral.methods.runner import prepare
            prepare(method, cfg)


def test_help_lists_each_methods_own_keys(capsys):
    parser = build_parser()
    for command, key, meaning in [("ppo", "ppo.gamma", "GAE discount"),
                                  ("dpo", "dpo.beta", "norm 5"),
                                  ("rm", "rm.holdout", "held out"),
                                  ("sft", "data.task", "built-in task")]:
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = capsys.readouterr().out
        assert key in text and meaning in text, command
    with pytest.raises(SystemExit):
        parser.parse_args(["grpo", "--help"])
    assert "ppo.gamma" not in capsys.readouterr().out  # PPO's keys live in PPO's section


def test_renamed_rl_keys_move_to_ppo_with_one_note():
    with pytest.warns(ConfigNote, match="'rl.gamma' is now 'ppo.gamma'"):
        cfg = load_config(PPOConfig, None, ["rl.preset=ppo", "rl.gamma=0.9", "ppo.lam=0.8"])
    assert (cfg.ppo.gamma, cfg.ppo.lam) == (0.9, 0.8)
    with pytest.warns(ConfigNote, match="'rl.value_coef' has no effect"):
        load_config(RLConfig, None, ["rl.value_coef=0.3"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(RLConfig, None, ["rl.n=4"])  # nothing renamed: no note


def test_preset_fills_only_keys_the_user_did_not_set(tmp_path):
    path = tmp_path / "rl.yaml"
    path.write_text("rl:\n  clip_high: 0.5\n")
    cfg = load_config(RLConfig, str(path), ["rl.preset=dapo"])
    assert cfg.rl.clip_high == 0.5 and cfg.rl.eps == 1e-6 and cfg.rl.aggregation == "token_mean"


@pytest.mark.parametrize("override, phrase", [
    ("lora.r=-3", "lora.r=-3 must be"), ("data.max_length=0", "data.max_length=0"),
    ("train.betas=abc", "train.betas"), ("model.device=gpu", "model.device"),
    ("eval.n=0", "eval.n=0")])
def test_each_section_names_its_own_bad_key(override, phrase):
    with pytest.raises(CorralError, match=phrase):
        load_config(SFTConfig, None, [override])


def test_task_trains_sft_rendered_as_evaluation_renders(tmp_path, monkeypatch):
    from corral.tasks import get_task

    task = get_task("arithmetic", split="train", few_shot=2)
    records = task.sft_records()
    prompts = task.prompt_items()
    assert len(records) == len(prompts) > 0
    for record, item, solution in zip(records[:5], prompts, task.solutions):
        assert record.messages[:-1] == item.messages  # few-shot turns included, as in eval
        assert record.messages[-1].role == "assistant" and record.messages[-1].content == solution
        assert solution.split("####")[-1].strip() == item.fields["answer"]
    with pytest.raises(CorralError, match="no reference solutions"):
        get_task("ifeval-like", split="dev").sft_records()

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    model = save_tiny(tmp_path / "tiny")
    assert main(["sft", f"model.name={model}", "data.task=arithmetic", "data.limit=16",
                 "train.max_steps=2", "train.progress=false", f"run.root={tmp_path}/runs",
                 "run.name=task-sft"]) == 0
    rows = read_jsonl(tmp_path / "runs" / "task-sft" / "metrics.jsonl")
    assert any("loss" in r for r in rows)


def test_load_grader_takes_every_spec_form(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["a"]}))
    openai = {"type": "string_check", "name": "s", "input": "{{sample.output_text}}",
              "reference": "{{item.ref}}", "operation": "eq"}
    (tmp_path / "g.json").write_text(json.dumps(openai))
    empty = tmp_path / "empty"  # a folder that is no model (a hub id would try the network)
    empty.mkdir()
    cases = [("numeric", {"answer": "4"}, "the answer is 4", 1.0),
             ("regex:^yes", {}, "yes please", 1.0), ("regex:^yes", {}, "no", 0.0),
             ("contains:lamp", {}, "a lamp", 1.0),
             (f"json_schema:{schema}", {}, '{"a": 1}', 1.0),
             (f"json_schema:{schema}", {}, '{"b": 1}', 0.0),
             (json.dumps(openai), {"ref": "x"}, "x", 1.0),
             (str(tmp_path / "g.json"), {"ref": "x"}, "y", 0.0),
             (openai, {"ref": "x"}, "x", 1.0)]
    for spec, item, text, value in cases:
        assert load_grader(spec).grade(item, Sample.of(text)).value == value, spec
        assert grader_errors(spec) == []
    for bad, phrase in [("numerc", "neither a file"), ("missing.json", "does not exist"),
                        (json.dumps({"type": "reward_model", "model": str(empty)}), "reward model"),
                        ("[1, 2]", "JSON object")]:
        with pytest.raises(CorralError, match=phrase):
            load_grader(bad, root=str(tmp_path))
    assert grader_errors("numerc") and grader_errors({"type": "string_check"})


def test_grade_cli_takes_rule_specs(capsys):
    assert main(["grade", "validate", "regex:^A"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True
    assert main(["grade", "run", "numeric", "--item", '{"answer": "3"}', "--sample", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["reward"] == 1.0


def test_config_reference_is_generated_from_the_dataclasses():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "scripts" / "config_reference.py")],
                         capture_output=True, text=True, check=True).stdout
    assert out == (root / "docs" / "config.md").read_text(encoding="utf-8"), \
        "docs/config.md is stale: python scripts/config_reference.py > docs/config.md"
