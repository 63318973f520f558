"""The reward model's objective: Bradley–Terry on pair batches (chosen, rejected, ...)."""
from __future__ import annotations

from corral.objectives.losses import bradley_terry


class RewardObjective:
    """Bradley–Terry on PairBatch rows; normalised by pairs (metrics are per-pair sums)."""

    def __init__(self, margin: float = 0.0, center_coef: float = 0.0):
        self.margin, self.center_coef = margin, center_coef

    def weight(self, batch) -> float:
        return float(batch.n_pairs)

    def __call__(self, rm, batch):
        rewards = rm.rewards(batch)
        r_c, r_r = rewards[0::2], rewards[1::2]
        losses = bradley_terry(r_c, r_r, self.margin, self.center_coef)
        gap = (r_c - r_r).detach()
        return losses.sum(), {"accuracy": (gap > 0).float().sum(), "margin": gap.sum(),
                              "chosen_reward": r_c.detach().sum(),
                              "rejected_reward": r_r.detach().sum()}
