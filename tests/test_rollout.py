"""Rollouts on the tiny model: packing and alignment, step mapping, advantages, resume state,
the step-0 log-prob invariant and the sampler-follows-weights check."""
import copy

import pytest
import torch

from corral.core.errors import CorralError
from corral.core.records import Item, Message
from corral.graders.base import BaseGrader, Score
from corral.graders.weighted import WeightedGraders
from corral.infer.engine import Engine
from corral.methods.rl_config import RLSection
from corral.model.policy import Policy
from corral.testing import tiny_model, tiny_tokenizer
from corral.train.rollout import RolloutSource, Trajectory, group_stats


class LengthGrader(BaseGrader):
    """Reward = share of completion characters that are letters: varied, always defined."""
    name = "letters"

    def grade(self, item, sample):
        text = sample.output_text
        return Score(value=sum(c.isalpha() for c in text) / max(1, len(text)))


def items(n=4):
    return [Item((Message("user", f"say {i}"),), {"i": i}, f"t:{i}") for i in range(n)]


def sequences(batch):
    out, start = [], 0
    for n in batch.seq_lens:
        out.append(batch.input_ids[0, start:start + n].tolist())
        start += n
    return out


def make_source(policy=None, engine=None, **rl):
    policy = policy or Policy.from_objects(tiny_model(), tiny_tokenizer(), None)
    from functools import partial

    from corral.methods.ppo import PPOSection
    from corral.train.advantages import ESTIMATORS

    ppo = PPOSection(**{k: rl.pop(k) for k in ("gamma", "lam") if k in rl})
    section = RLSection(**{"n": 4, "prompts_per_step": 2, "max_new_tokens": 6, **rl})
    options = ppo if section.advantage == "gae" else section
    return RolloutSource(policy, items(), LengthGrader(), section, batch_tokens=160, seed=0,
                         engine=engine, estimator=partial(ESTIMATORS[section.advantage],
                                                          n=section.n, options=options))


def test_batches_align_with_trajectories():
    source = make_source()
    batches = source.micro_batches(0)
    trajs = source._cache[1]
    assert len(trajs) == 8 and len(batches) > 1  # 160-token budget forces several micro-batches
    assert sum(b.n_seqs for b in batches) == 8
    for b in batches:
        assert b.n_loss_tokens == b.old_logps.numel() == b.advantages.numel() == b.seq_ids.numel()
        assert b.n_tokens <= 160 and int(b.seq_ids.max()) == b.n_seqs - 1
        logps = source.policy.token_logps(b)  # same order as the per-token extras
        assert torch.allclose(logps, b.old_logps, atol=1e-4)
        # each packed sequence is a prompt + completion; its labels are the completion only
        start = 0
        for n in b.seq_lens:
            ids, labels = b.input_ids[0, start:start + n].tolist(), b.labels[0, start:start + n]
            t = next(t for t in trajs if t.prompt_ids + t.completion_ids == ids)
            assert labels[labels != -100].tolist() == t.completion_ids
            start += n


def test_group_advantages_per_token_and_stats():
    source = make_source()
    source.micro_batches(0)
    trajs = source._cache[1]
    for t in trajs:
        assert len(set(t.advantages)) == 1 and len(t.advantages) == len(t.completion_ids)
    for g in range(2):  # group-normalised: each group's advantages sum to ~0
        assert abs(sum(t.advantages[0] for t in trajs if t.group == g)) < 1e-4
    stats = group_stats(trajs, 4)
    assert 0 <= stats["zero_var_frac"] <= 1 and stats["completion_len"] <= 6


def test_reinforce_pp_whitens_over_tokens():
    source = make_source(advantage="reinforce_pp")
    source.micro_batches(0)
    flat = torch.tensor([a for t in source._cache[1] for a in t.advantages])
    assert abs(float(flat.mean())) < 1e-5 and abs(float(flat.std()) - 1) < 1e-3


def test_gae_without_values_is_refused():
    with pytest.raises(CorralError, match="value model"):
        make_source(advantage="gae").micro_batches(0)


def test_steps_map_to_rollouts_passes_and_mini_batches():
    source = make_source(mu=2, mini_batches=2)
    assert source.steps_per_epoch == 2 * 2 * 2 and source.recompute
    calls = []
    original = source.make_rollout
    source.make_rollout = lambda r: calls.append(r) or original(r)
    seen = [sorted(seq for b in source.micro_batches(step) for seq in sequences(b))
            for step in range(4)]
    assert calls == [0]  # one rollout serves mu * mini_batches steps
    assert len(seen[0]) == len(seen[1]) == 4  # two mini-batches of half the rollout each
    everything = sorted(t.prompt_ids + t.completion_ids for t in source._cache[1])
    assert sorted(seen[0] + seen[1]) == sorted(seen[2] + seen[3]) == everything


def test_state_dict_restores_the_current_rollout():
    source = make_source(mu=2)
    first = source.micro_batches(0)
    state = source.state_dict()
    fresh = make_source(mu=2)
    fresh.load_state_dict(state)
    fresh.make_rollout = lambda r: pytest.fail("a restored rollout must not be resampled")
    again = fresh.micro_batches(1)
    assert [b.input_ids.tolist() for b in first] == [b.input_ids.tolist() for b in again]
    with pytest.raises(CorralError, match="start a new run.name"):
        make_source(mu=3).load_state_dict(state)


def test_step0_logps_match_and_mismatch_is_caught():
    source = make_source()
    source.micro_batches(0)
    assert source.logp_check["logp_mean_abs_diff"] < 1e-4
    assert abs(source.logp_check["ratio_mean"] - 1) < 1e-4
    # a sampler with other weights: the trainer's log-probs disagree before any update
    policy = Policy.from_objects(tiny_model(), tiny_tokenizer(), None)
    other = tiny_model(seed=1)
    stale = make_source(policy, Engine.hf(other, policy.tokenizer))
    with pytest.raises(CorralError, match="sampler's weights differ|log-probs"):
        stale.micro_batches(0)


def test_sampler_must_follow_updates():
    policy = Policy.from_objects(tiny_model(), tiny_tokenizer(), None)
    frozen_copy = copy.deepcopy(policy.model)  # a sampler that is never synced
    source = make_source(policy, Engine.hf(frozen_copy, policy.tokenizer))
    source.micro_batches(0)  # same weights so far: fine
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.add_(0.01)  # an optimizer update
    with pytest.raises(CorralError, match="sampler's weights differ"):
        source.micro_batches(1)
    # the live policy as sampler, but no update between rollouts: stale samples
    live = make_source()
    live.micro_batches(0)
    with pytest.raises(CorralError, match="did not change"):
        live.micro_batches(1)


def test_weighted_graders_sum():
    class Const(BaseGrader):
        def __init__(self, v):
            self.v, self.name = v, f"c{v}"

        def grade(self, item, sample):
            return Score(value=self.v)
    score = WeightedGraders([(Const(1.0), 0.5), (Const(0.2), 2.0)]).grade({}, None)
    assert score.value == pytest.approx(0.9) and score.details == {"c1.0": 1.0, "c0.2": 0.2}


def test_trajectory_reward_sums_token_rewards():
    t = Trajectory(0, 0, [1], [5, 6], [-1.0, -1.0], score=1.0)
    assert t.reward == 1.0
    t.token_rewards = [-0.1, 0.9]
    assert t.reward == pytest.approx(0.8)


def test_rollout_config_is_the_rl_sections_same_named_keys():
    """train/ owns what a rollout reads; methods/rl fills it from rl.* (same names, defaults)."""
    from dataclasses import fields

    from corral.methods.rl import load_rl_config, rollout_config
    from corral.train.rollout import RolloutConfig

    section_defaults = {f.name: f.default for f in fields(RLSection)}
    for f in fields(RolloutConfig):
        assert section_defaults[f.name] == f.default, f.name
    cfg = load_rl_config(None, ["rl.preset=dapo", "rl.n=3", "rl.top_k=5", "rl.kl_coef=0.1"])
    built = rollout_config(cfg)
    assert isinstance(built, RolloutConfig)
    assert {f.name: getattr(built, f.name) for f in fields(built)} == {
        f.name: getattr(cfg.rl, f.name) for f in fields(built)}
    assert RolloutConfig.of(built) is built
    assert make_source().rl == RolloutConfig.of(RLSection(n=4, prompts_per_step=2,
                                                          max_new_tokens=6))
