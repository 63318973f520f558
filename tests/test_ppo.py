"""PPO on the tiny model: one forward for log-probs and values, the objective against hand
values, rollouts carrying values/returns/penalties, a rigged task learned, and the
InstructGPT pipeline `corral sft` -> `corral rm` -> `corral ppo` through the CLI."""
import json
import math
from types import SimpleNamespace

import pytest
import torch

from corral.cli.app import main
from corral.core.errors import CorralError
from corral.methods.ppo import load_ppo_config, run_ppo
from corral.methods.rl import load_rl_config
from corral.model.heads import VALUE_HEAD_FILE, ActorCritic
from corral.objectives import losses as L
from corral.objectives.policy_gradient import PPOObjective
from corral.store.runs import read_jsonl
from corral.testing import save_tiny
from tests.test_rl import frequent_char, tiny_policy, write_task
from tests.test_rollout import make_source


def test_logps_and_values_come_from_one_forward():
    actor = ActorCritic(tiny_policy())
    torch.nn.init.normal_(actor.value_head.weight)
    source = make_source(policy=actor, advantage="gae")
    batch = source.micro_batches(0)[0]
    logps, values = actor.logps_and_values(batch)
    assert torch.allclose(logps, actor.policy.token_logps(batch), atol=1e-6)
    hidden = actor.policy.token_logps(batch, with_hidden=True)[1]
    assert torch.allclose(values, actor.value_head(hidden).squeeze(-1), atol=1e-6)
    assert values.shape == logps.shape and values.requires_grad
    names = {id(p) for p in actor.trainable_parameters()}
    assert all(id(p) in names for p in actor.value_head.parameters())


def test_objective_against_hand_values():
    """Two tokens of one sequence, old log-probs 0, ratios 1.5 and 0.9, A = (1, −1), ε = 0.2:
    surrogate −min(1.5, 1.2) = −1.2 and −min(−0.9, −0.9) = 0.9. Values (0.5, 2), old values
    (0, 1), returns (1, 1), ε_v = 0.2: clipped values (0.2, 1.2), so ½max(0.25, 0.64) = 0.32
    and ½max(1, 0.04) = 0.5. With c_v = 0.1: (−1.2 + 0.032 + 0.9 + 0.05) / 2 = −0.109."""
    logps = torch.log(torch.tensor([1.5, 0.9]))
    actor = SimpleNamespace(logps_and_values=lambda b: (logps, torch.tensor([0.5, 2.0])))
    batch = SimpleNamespace(old_logps=torch.zeros(2), advantages=torch.tensor([1.0, -1.0]),
                            values=torch.tensor([0.0, 1.0]), returns=torch.tensor([1.0, 1.0]),
                            seq_ids=torch.zeros(2, dtype=torch.long), ref_logps=None,
                            n_loss_tokens=2, n_seqs=1, stats={})
    objective = PPOObjective(value_coef=0.1, value_clip=0.2, aggregation="token_mean")
    loss, metrics = objective(actor, batch)
    weight = objective.weight(batch)
    assert float(loss) / weight == pytest.approx(-0.109, abs=1e-6)
    assert float(metrics["value_loss"]) / weight == pytest.approx(0.41, abs=1e-6)
    assert float(metrics["clip_frac"]) / weight == pytest.approx(0.5)
    assert float(metrics["value_clip_frac"]) / weight == pytest.approx(1.0)


def test_rollout_values_returns_kl_and_missing_eos_penalty():
    actor = ActorCritic(tiny_policy())
    torch.nn.init.normal_(actor.value_head.weight, std=0.1)
    actor.prepare_reference()
    with torch.no_grad():  # the policy moves away from its reference: KL > 0
        for p in actor.policy.model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    source = make_source(policy=actor, advantage="gae", n=1, prompts_per_step=4, kl_coef=0.1,
                         kl_in="reward", kl_kind="k1", missing_eos_penalty=1.5, lam=0.9)
    source.micro_batches(0)
    trajs = source._cache[1]
    assert any(t.finish_reason == "length" for t in trajs)
    kl_sums, raw = [], []
    for t in trajs:
        assert len(t.values) == len(t.completion_ids) == len(t.returns)
        kl = [a - b for a, b in zip(t.old_logps, t.ref_logps)]
        expected = [-0.1 * k for k in kl]
        expected[-1] += t.score - (1.5 if t.finish_reason == "length" else 0.0)
        assert t.token_rewards == pytest.approx(expected, abs=1e-6)
        # GAE by a naive loop, V after the last token = 0, γ = 1, λ = 0.9
        adv, running = [0.0] * len(kl), 0.0
        for i in reversed(range(len(kl))):
            nxt = t.values[i + 1] if i + 1 < len(kl) else 0.0
            running = expected[i] + nxt - t.values[i] + 0.9 * running
            adv[i] = running
        assert t.returns == pytest.approx([a + v for a, v in zip(adv, t.values)], abs=1e-5)
        raw += adv
        kl_sums.append(sum(kl))
    flat = torch.tensor([a for t in trajs for a in t.advantages], dtype=torch.float64)
    assert float(flat.mean()) == pytest.approx(0, abs=1e-6)  # whitened over all tokens
    assert torch.allclose(flat, L.whiten(torch.tensor(raw, dtype=torch.float64)), atol=1e-5)
    assert trajs[0].stats["kl_seq"] == pytest.approx(sum(kl_sums) / 4, abs=1e-6)
    assert trajs[0].stats["kl_seq"] != 0


def test_gae_needs_the_ppo_command(tmp_path):
    data, grader = write_task(tmp_path, "a")
    with pytest.raises(CorralError, match="corral ppo"):
        load_rl_config(None, [f"data.train={data}", f"rl.grader={grader}", "rl.preset=ppo"])
    with pytest.raises(CorralError, match="rl.advantage=gae"):
        load_ppo_config(None, ["rl.preset=grpo"])
    ppo = load_ppo_config(None, ["rl.mu=2"])
    assert (ppo.rl.advantage, ppo.rl.n, ppo.rl.kl_coef, ppo.rl.mu) == ("gae", 1, 0.05, 2)


def test_ppo_learns_a_rigged_task(tmp_path):
    from corral.core.records import Message
    from corral.data.render import render_prompt

    policy = tiny_policy()
    target = frequent_char(policy, render_prompt([Message("user", "go 0")], policy.tokenizer))
    data, grader = write_task(tmp_path, target)
    cfg = load_ppo_config(None, [
        f"data.train={data}", f"rl.grader={grader}", "rl.n=8", "rl.prompts_per_step=4",
        "rl.max_new_tokens=6", "train.lr=1e-2", "train.progress=false", "lora.enabled=false",
        "train.batch_tokens=1024", f"run.root={tmp_path / 'runs'}", "run.name=ppo",
        "rl.mu=1", "rl.kl_coef=0", "train.max_steps=10"])
    store = run_ppo(cfg, policy=policy, log=lambda s: None)
    rows = [r for r in read_jsonl(store.path / "metrics.jsonl") if "reward" in r]
    rewards = [r["reward"] for r in rows]
    assert rewards[0] < 0.6 and max(rewards[-3:]) >= 0.8, rewards
    assert rows[0]["ratio"] == pytest.approx(1.0, abs=1e-3)
    assert all(math.isfinite(r["value_loss"]) for r in rows)
    assert (store.path / "final" / VALUE_HEAD_FILE).exists()


def test_instructgpt_pipeline_sft_rm_ppo(tmp_path, monkeypatch, capsys):
    from tests.test_reward import write_pairs

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    tiny = save_tiny(tmp_path / "tiny")
    chats = tmp_path / "sft.jsonl"
    chats.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Is the lamp {i} ok?"},
        {"role": "assistant", "content": "yes"}]}) + "\n" for i in range(8)))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Is the river {i} ok?"}]}) + "\n" for i in range(4)))
    common = ["train.progress=false", "lora.enabled=false", "train.batch_tokens=1024"]
    assert main(["sft", f"model.name={tiny}", f"data.train={chats}", "train.max_steps=2",
                 "run.name=sft", *common]) == 0
    sft = str(tmp_path / "runs" / "sft" / "final")
    pairs = write_pairs(tmp_path / 'p.jsonl', 16, 0)
    assert main(["rm", f"model.name={sft}", f"data.train={pairs}",
                 "train.max_steps=4", "run.name=rm", *common]) == 0
    assert main(["ppo", f"model.name={sft}", "rl.reward_model=rm", f"data.train={prompts}",
                 "rl.prompts_per_step=4", "rl.max_new_tokens=6", "rl.mu=2",
                 "rl.missing_eos_penalty=1", "train.max_steps=4", "run.name=ppo", *common]) == 0
    out = capsys.readouterr().out
    assert "reward-model score" in out and "KL to the reference" in out
    rows = [r for r in read_jsonl(tmp_path / "runs" / "ppo" / "metrics.jsonl") if "score" in r]
    assert rows and all(math.isfinite(r["kl_seq"]) and "value_loss" in r for r in rows)
    assert (tmp_path / "runs" / "ppo" / "final" / VALUE_HEAD_FILE).exists()
    assert main(["ppo", f"model.name={sft}", f"data.train={prompts}", "run.name=x",
                 *common]) == 2
    assert "needs a reward" in capsys.readouterr().err
