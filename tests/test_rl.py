"""RL end to end on the tiny model: a rigged task is learned, step-0 ratio 1, the zero-signal
check, split-invariant aggregation through the objective, presets and the CLI."""
import collections
import json

import pytest
import torch

from corral.core.errors import CorralError
from corral.infer.engine import Engine, SamplingParams
from corral.methods.rl import load_rl_config, run_grpo
from corral.model.policy import Policy
from corral.objectives.policy_gradient import PolicyGradient
from corral.store.runs import read_jsonl
from corral.testing import tiny_model, tiny_tokenizer


def tiny_policy():
    return Policy.from_objects(tiny_model(), tiny_tokenizer(), None)


def frequent_char(policy, prompt_ids) -> str:
    """A printable character the untrained model emits in some (not all) samples: signal."""
    gens = Engine.hf(policy.model, policy.tokenizer).generate(
        [prompt_ids], SamplingParams(max_new_tokens=6, n=32, seed=1))[0]
    counts = collections.Counter(c for g in gens for c in set(g.text)
                                 if c.isascii() and c.isprintable() and not c.isspace())
    return counts.most_common(1)[0][0]


def write_task(tmp_path, target: str, n: int = 4) -> tuple[str, str]:
    """OpenAI RFT rows (messages + a field the grader reads) and a string_check grader."""
    data = tmp_path / "prompts.jsonl"
    with open(data, "w") as handle:
        handle.writelines(json.dumps({"messages": [{"role": "user", "content": f"go {i}"}],
                                     "target": target}) + "\n" for i in range(n))
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps({"type": "string_check", "name": "has", "operation": "like",
                                  "input": "{{sample.output_text}}",
                                  "reference": "{{item.target}}"}))
    return str(data), str(grader)


def config(tmp_path, data, grader, *extra):
    return load_rl_config(None, [
        f"data.train={data}", f"rl.grader={grader}", "rl.n=8", "rl.prompts_per_step=4",
        "rl.max_new_tokens=6", "train.lr=1e-2", "train.progress=false", "lora.enabled=false",
        "train.batch_tokens=1024", f"run.root={tmp_path / 'runs'}", "run.name=r", *extra])


def test_rigged_contains_x_is_learned(tmp_path):
    from corral.core.records import Message
    from corral.data.render import render_prompt

    policy = tiny_policy()
    target = frequent_char(policy, render_prompt([Message("user", "go 0")], policy.tokenizer))
    data, grader = write_task(tmp_path, target)
    store = run_grpo(config(tmp_path, data, grader, "train.max_steps=10", "rl.preset=dapo"),
                   policy=policy, log=lambda s: None)
    rows = read_jsonl(store.path / "metrics.jsonl")
    rewards = [r["reward"] for r in rows if "reward" in r]
    assert rewards[0] < 0.6 and max(rewards[-3:]) >= 0.8, rewards
    first = rows[0]  # step 1, mu = 1: old log-probs are the sampler's, same weights
    assert first["ratio"] == pytest.approx(1.0, abs=1e-3) and abs(first["approx_kl"]) < 1e-5
    assert (store.path / "final").is_dir() and (store.path / "samples.jsonl").exists()


def test_step0_ratio_with_recomputed_old_logps(tmp_path):
    data, grader = write_task(tmp_path, "a")
    store = run_grpo(config(tmp_path, data, grader, "train.max_steps=1", "rl.mu=2",
                          "rl.signal_check=off"), policy=tiny_policy(), log=lambda s: None)
    first = read_jsonl(store.path / "metrics.jsonl")[0]
    assert first["ratio"] == pytest.approx(1.0, abs=1e-5) and first["clip_frac"] == 0


def test_zero_signal_check_fires(tmp_path):
    data, grader = write_task(tmp_path, "no tiny model writes this")
    with pytest.raises(CorralError, match="nothing to learn from.*SFT"):
        run_grpo(config(tmp_path, data, grader, "train.max_steps=2"), policy=tiny_policy(),
               log=lambda s: None)


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "token_sum"])
def test_aggregation_is_split_invariant_through_the_objective(mode):
    from tests.test_rollout import make_source

    source = make_source(max_new_tokens=8)
    source.micro_batches(0)
    trajs = source._cache[1]
    for i, t in enumerate(trajs):  # varied advantages so every token matters
        t.advantages = [(-1) ** i * (1 + j / 10) for j in range(len(t.completion_ids))]
    objective = PolicyGradient(aggregation=mode, max_len=8)
    policy = source.policy

    def step_loss_and_grads(batch_tokens):
        source.batch_tokens = batch_tokens
        batches = source.pack(trajs)
        weight = sum(objective.weight(b) for b in batches)
        policy.model.zero_grad()
        total = 0.0
        for b in batches:  # what the loop does: each micro-batch's loss_sum / W
            loss, _ = objective(policy, b)
            (loss / weight).backward()
            total += float(loss) / weight
        return len(batches), total, [p.grad.clone() for p in policy.trainable_parameters()]

    n_one, one, grads_one = step_loss_and_grads(10_000)
    n_many, many, grads_many = step_loss_and_grads(160)
    assert n_one == 1 and n_many > 2
    assert many == pytest.approx(one, rel=1e-5, abs=1e-7)
    for a, b in zip(grads_one, grads_many):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_presets_fill_only_keys_not_given(tmp_path):
    dapo = load_rl_config(None, ["rl.preset=dapo"])
    assert (dapo.rl.clip_high, dapo.rl.aggregation) == (0.28, "token_mean")
    mine = load_rl_config(None, ["rl.preset=dapo", "rl.clip_high=0.3"])
    assert mine.rl.clip_high == 0.3 and mine.rl.clip_low == 0.2
    (tmp_path / "c.yaml").write_text("rl:\n  preset: dr_grpo\n  aggregation: token_mean\n")
    dr = load_rl_config(str(tmp_path / "c.yaml"))
    assert (dr.rl.scale, dr.rl.aggregation) == ("none", "token_mean")
    assert load_rl_config(None, []).rl.aggregation == "seq_mean_token_mean"  # grpo
    with pytest.raises(CorralError, match="rl.preset"):
        load_rl_config(None, ["rl.preset=ppo2"])
    with pytest.raises(CorralError, match="did you mean"):
        load_rl_config(None, ["rl.clip_hihg=0.3"])


def test_cli_commands_registered(tmp_path, monkeypatch):
    from corral.cli.app import build_parser
    from corral.testing import save_tiny

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    parser = build_parser()
    data, grader = write_task(tmp_path, "no tiny model writes this")
    args = parser.parse_args(["grpo", f"model.name={save_tiny(tmp_path / 'tiny')}",
                              f"data.train={data}", f"rl.grader={grader}", "rl.n=2",
                              "rl.max_new_tokens=4", "train.progress=false",
                              f"run.root={tmp_path / 'runs'}"])
    with pytest.raises(CorralError, match="identical rewards"):
        args.func(args)
    assert parser.parse_args(["rft", "--resume", "x"]).resume == "x"


def test_task_prompts_held_for_dev_or_unseen_are_never_trained_on(monkeypatch):
    """A task whose one data file feeds every split: rows shared with dev/unseen leave train."""
    import corral.tasks
    from corral.core.records import Item, Message
    from corral.methods.rl import load_items
    from corral.tasks import Task

    def item(q):
        return Item(messages=(Message("user", q),), fields={"answer": "1"}, source=q)
    splits = {"train": ["a", "b", "c"], "dev": ["b"], "unseen": ["c"]}

    def fake(name, split, **kwargs):
        return Task(name=name, items=[item(q) for q in splits[split]], grader=None)
    monkeypatch.setattr(corral.tasks, "get_task", fake)
    train, dev, unseen, _ = load_items(load_rl_config(None, ["data.task=fake", "eval.limit=0"]))
    assert [i.messages[-1].content for i in train] == ["a"] and len(dev) == len(unseen) == 1
    splits["train"] = ["b", "c"]
    with pytest.raises(CorralError, match="every training prompt is also a dev or unseen"):
        load_items(load_rl_config(None, ["data.task=fake", "eval.limit=0"]))


def test_a_signal_check_of_no_prompts_is_a_config_error_naming_the_switch():
    from corral.core.config import load_config
    from corral.core.errors import CorralError
    from corral.methods.rl_config import RLConfig

    with pytest.raises(CorralError, match="rl.signal_check_prompts=0 must be >= 1.*"
                                          "rl.signal_check=off"):
        load_config(RLConfig, None, ["rl.signal_check_prompts=0"])
    load_config(RLConfig, None, ["rl.signal_check_prompts=0", "rl.signal_check=off"])
