"""Objectives: `(policy, batch) -> (loss_sum, metric_sums)` plus `weight(batch)`, the normaliser.

The loop divides both by the summed weight of an optimizer step's micro-batches, so a step's
loss does not depend on how its sequences were split across accumulation steps.
"""
from __future__ import annotations

from corral.objectives import losses


class SFT:
    """Next-token NLL on target tokens (assistant turns by default); weight = target tokens."""
    name = "sft"

    def weight(self, batch) -> float:
        return float(batch.n_loss_tokens)

    def __call__(self, policy, batch):
        logps, n_correct = policy.token_logps(batch, with_accuracy=True)
        loss_sum = losses.nll_sum(logps)
        # Tensors, not floats: converting here would force a host sync every micro-batch.
        return loss_sum, {"loss": loss_sum.detach(), "token_accuracy": n_correct}
