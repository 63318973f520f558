"""The one policy-gradient objective (GRPO, Dr. GRPO, DAPO, RLOO, REINFORCE++ are options of it)
and PPO's, which adds a clipped value loss. Advantages come from `corral.train.advantages`."""
from __future__ import annotations

import torch

from corral.core.errors import CorralError
from corral.objectives import losses as L


class PolicyGradient:
    """Clipped surrogate (+ β·KL to the reference when kl_in_loss), aggregated per `mode`.

    weight(batch) = aggregate_weight of the batch's own counts; the loop sums it over an
    optimizer step's micro-batches, so the loss is the same however a step is split.
    Metrics are aggregated like the loss (token_sum metrics as per-sequence means).
    """
    name = "policy_gradient"

    def __init__(self, clip_low=0.2, clip_high=0.2, aggregation="token_mean", max_len=1,
                 kl_coef=0.0, kl_kind="k3", kl_in_loss=True):
        self.clip_low, self.clip_high, self.mode, self.max_len = (clip_low, clip_high,
                                                                   aggregation, max_len)
        self.kl_coef, self.kl_kind, self.kl_in_loss = kl_coef, kl_kind, kl_in_loss

    def weight(self, batch) -> float:
        return L.aggregate_weight(batch.n_loss_tokens, batch.n_seqs, self.mode, self.max_len)

    def _metric(self, per_token, seq_ids):
        if self.mode == "token_sum":
            return L.aggregate(per_token, seq_ids, "seq_mean_token_mean") * self.max_len
        return L.aggregate(per_token, seq_ids, self.mode)

    def __call__(self, policy, batch):
        per_token, metrics = self.policy_terms(policy.token_logps(batch).float(), batch)
        return self.reduce(per_token, metrics, batch)

    def policy_terms(self, logps, batch):
        """Per-token clipped surrogate (+ β·KL in the loss) and per-token metrics."""
        per_token, clipped = L.clipped_surrogate(logps, batch.old_logps, batch.advantages,
                                                 self.clip_low, self.clip_high)
        d = (logps - batch.old_logps).detach()
        metrics = {"pg_loss": per_token.detach(), "ratio": d.exp(), "clip_frac": clipped.float(),
                   "approx_kl": torch.exp(-d) + d - 1}
        if self.kl_coef > 0 and self.kl_in_loss:
            kl = L.kl_penalty(logps, batch.ref_logps, self.kl_kind)
            per_token = per_token + self.kl_coef * kl
            metrics["kl_ref"] = kl.detach()
        return per_token, metrics

    def reduce(self, per_token, metrics, batch):
        """(loss sum, metric sums) aggregated per `mode`, plus the rollout's stats."""
        loss = L.aggregate(per_token, batch.seq_ids, self.mode)
        sums = {k: self._metric(v, batch.seq_ids) for k, v in metrics.items()}
        w = self.weight(batch)  # rollout-level means pass through the loop's sum / W unchanged
        sums.update({k: v * w for k, v in batch.stats.items()})
        return loss, sums


class PPOObjective(PolicyGradient):
    """Clipped surrogate + value_coef · clipped value loss, aggregated alike (token mean by
    default): loss_t = −min(ρA, clip(ρ)A) + c_v · ½ max((V−R)², (clip(V, V_old ± ε_v)−R)²)."""
    name = "ppo"

    def __init__(self, value_coef: float = 0.1, value_clip: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.value_coef, self.value_clip = value_coef, value_clip

    def __call__(self, actor, batch):
        if batch.values is None or batch.returns is None:
            raise CorralError("PPO batches need the rollout's values and returns "
                              "(rl.advantage=gae with a value head)")
        logps, values = actor.logps_and_values(batch)
        per_token, metrics = self.policy_terms(logps.float(), batch)
        v_loss = L.clipped_value_loss(values, batch.values, batch.returns, self.value_clip)
        metrics.update(value_loss=v_loss.detach(), value=values.detach(),
                       value_clip_frac=((values - batch.values).abs() > self.value_clip)
                       .float().detach())
        return self.reduce(per_token + self.value_coef * v_loss, metrics, batch)
