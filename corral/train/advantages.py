"""Advantage estimators over a rollout's trajectories: group (GRPO), RLOO, REINFORCE++, GAE.

Each sets `t.advantages` (per completion token) in place; GAE also sets `t.returns`.
`options` is the section holding the estimator's knobs (eps and scale; gamma and lam for GAE).
"""
from __future__ import annotations

import torch

from corral.core.errors import CorralError
from corral.objectives import losses as L


def _per_sequence(trajs, values) -> None:
    for t, a in zip(trajs, values.tolist()):
        t.advantages = [a] * len(t.completion_ids)


def group_estimator(trajs, n, options) -> None:
    """GRPO: (r − group mean) / (std + ε), std per group / batch / none, per sequence."""
    rewards = torch.tensor([t.reward for t in trajs], dtype=torch.float64)
    _per_sequence(trajs, L.group_advantages(rewards, n, options.eps, options.scale))


def rloo_estimator(trajs, n, options) -> None:
    rewards = torch.tensor([t.reward for t in trajs], dtype=torch.float64)
    _per_sequence(trajs, L.rloo_advantages(rewards, n))


def reinforce_pp_estimator(trajs, n, options) -> None:
    """REINFORCE++: reward-to-go of the per-token rewards, whitened over all tokens."""
    togo = [torch.tensor(t.token_rewards, dtype=torch.float64).flip(0).cumsum(0).flip(0)
            for t in trajs]
    flat = L.whiten(torch.cat(togo))
    sizes = [len(t.completion_ids) for t in trajs]
    for t, a in zip(trajs, flat.split(sizes)):
        t.advantages = a.tolist()


def gae_estimator(trajs, n, options) -> None:
    """GAE over per-token rewards and a value head's values (PPO), whitened over tokens."""
    if any(t.values is None for t in trajs):
        raise CorralError("rl.advantage=gae needs a value model (PPO); use group, rloo or "
                          "reinforce_pp here")
    advs = [L.gae(torch.tensor(t.token_rewards, dtype=torch.float64),
                  torch.tensor(t.values, dtype=torch.float64), options.gamma, options.lam)[0]
            for t in trajs]
    flat = L.whiten(torch.cat(advs))
    for t, a, raw in zip(trajs, flat.split([len(t.completion_ids) for t in trajs]), advs):
        t.advantages = a.tolist()
        t.returns = (raw + torch.tensor(t.values, dtype=torch.float64)).tolist()


ESTIMATORS = {"group": group_estimator, "rloo": rloo_estimator,
              "reinforce_pp": reinforce_pp_estimator, "gae": gae_estimator}
