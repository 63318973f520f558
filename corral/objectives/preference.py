"""Preference objectives on packed sequence batches: the DPO family, SimPO, ORPO (pairs) and
KTO (rows labelled desirable or undesirable). Batches: `corral.data.batching`."""
from __future__ import annotations

import math

import torch

from corral.core.errors import CorralError
from corral.data.batching import FeedbackBatch, SeqBatch
from corral.objectives import losses

DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "norm")






def sequence_logps(policy, batch: SeqBatch) -> torch.Tensor:
    """Summed log-probs [S] of each sequence's targets, in one forward."""
    logps = policy.token_logps(batch)
    return losses.segment_sum(logps, batch.seq_index.to(logps.device), batch.n_seqs)


def reference_logps(policy, batch: SeqBatch) -> torch.Tensor:
    """The cached reference log-probs [S], or one reference forward without gradients."""
    if batch.ref_logps is not None:
        return batch.ref_logps
    with policy.reference():
        return sequence_logps(policy, batch)


def _pair_metrics(rew_c, rew_r, logp_c, logp_r) -> dict:
    """Sums over pairs (the loop divides by the number of pairs)."""
    return {"rewards/chosen": rew_c.sum(), "rewards/rejected": rew_r.sum(),
            "rewards/margin": (rew_c - rew_r).sum(), "rewards/accuracy": (rew_c > rew_r).sum(),
            "logps/chosen": logp_c.detach().sum(), "logps/rejected": logp_r.detach().sum()}


class _PairObjective:
    needs_reference = False

    def weight(self, batch) -> float:
        return float(batch.n_pairs)


class DPO(_PairObjective):
    """DPO family on pair batches; loss sum over pairs, weight = pairs. rpo_alpha adds
    α · mean-token NLL of each chosen response (RPO)."""
    name = "dpo"
    needs_reference = True

    def __init__(self, loss: str = "sigmoid", beta: float = 0.1, label_smoothing: float = 0.0,
                 rpo_alpha: float = 0.0):
        if loss not in DPO_LOSSES:
            raise CorralError(f"dpo.loss={loss!r} is not one of {', '.join(DPO_LOSSES)}, "
                              "simpo, orpo")
        if not beta > 0:
            raise CorralError(f"dpo.beta={beta} must be positive")
        if not 0 <= label_smoothing < 0.5:
            raise CorralError(f"dpo.label_smoothing={label_smoothing} must be in [0, 0.5)")
        if rpo_alpha < 0:
            raise CorralError(f"dpo.rpo_alpha={rpo_alpha} must be >= 0 (0 turns it off)")
        self.loss, self.beta, self.eps, self.rpo_alpha = loss, beta, label_smoothing, rpo_alpha

    def __call__(self, policy, batch):
        logps = sequence_logps(policy, batch)
        ref = reference_logps(policy, batch).to(logps.device)
        n = batch.n_targets.to(logps.device)
        per_pair, rew_c, rew_r = losses.dpo_loss(
            logps[0::2], logps[1::2], ref[0::2], ref[1::2], self.beta, self.loss, self.eps,
            n[0::2], n[1::2])
        loss = per_pair.sum()
        metrics = _pair_metrics(rew_c, rew_r, logps[0::2], logps[1::2])
        # log-ratio of the data under policy vs reference: a KL proxy (off-policy samples)
        metrics["kl_proxy"] = (logps - ref).detach().sum() / 2
        if self.rpo_alpha:
            nll = -logps[0::2] / n[0::2]
            loss = loss + self.rpo_alpha * nll.sum()
            metrics["nll/chosen"] = nll.detach().sum()
        return loss, metrics


class SimPO(_PairObjective):
    """Reference-free: −log σ(β (avg logp(y+) − avg logp(y−)) − γ); rewards = β · avg logp."""
    name = "simpo"

    def __init__(self, beta: float = 2.0, gamma: float = 1.0):
        if not beta > 0:
            raise CorralError(f"dpo.beta={beta} must be positive")
        self.beta, self.gamma = beta, gamma

    def __call__(self, policy, batch):
        logps = sequence_logps(policy, batch)
        avg = logps / batch.n_targets.to(logps.device)
        per_pair = losses.simpo_loss(avg[0::2], avg[1::2], self.beta, self.gamma)
        rewards = (self.beta * avg).detach()
        return per_pair.sum(), _pair_metrics(rewards[0::2], rewards[1::2], avg[0::2], avg[1::2])


class ORPO(_PairObjective):
    """Reference-free: mean NLL(y+) + λ · −log σ(log odds(y+) − log odds(y−))."""
    name = "orpo"

    def __init__(self, lam: float = 0.1):
        if lam < 0:
            raise CorralError(f"dpo.orpo_lambda={lam} must be >= 0")
        self.lam = lam

    def __call__(self, policy, batch):
        logps = sequence_logps(policy, batch)
        avg = logps / batch.n_targets.to(logps.device)
        per_pair, ratio = losses.orpo_loss(-avg[0::2], avg[0::2], avg[1::2], self.lam)
        rewards = (self.lam * avg).detach()
        metrics = _pair_metrics(rewards[0::2], rewards[1::2], avg[0::2], avg[1::2])
        metrics.update({"nll/chosen": -avg[0::2].detach().sum(), "odds_ratio_loss": ratio.sum()})
        return per_pair.sum(), metrics


class KTO:
    """KTO on FeedbackBatch rows; loss sum over rows, weight = rows. The reference point z is
    the batch's mean log-ratio on mismatched pairs, clamped at 0, without gradient."""
    name = "kto"
    needs_reference = True

    def __init__(self, beta: float = 0.1, desirable_weight: float = 1.0,
                 undesirable_weight: float = 1.0):
        if not beta > 0:
            raise CorralError(f"kto.beta={beta} must be positive")
        if desirable_weight < 0 or undesirable_weight < 0:
            raise CorralError("kto.desirable_weight and kto.undesirable_weight must be >= 0")
        self.beta, self.w_d, self.w_u = beta, desirable_weight, undesirable_weight

    def weight(self, batch) -> float:
        return float(batch.n_rows)

    def kl_estimate(self, policy, batch: FeedbackBatch) -> torch.Tensor:
        """z = max(0, mean of logp_θ − logp_ref over the mismatched pairs), detached."""
        if batch.n_rows < 2:
            raise CorralError("a KTO micro-batch has 1 row; the KL estimate needs at least 2 "
                              "(raise train.batch_tokens)")
        with torch.no_grad():
            kl_pol = sequence_logps(policy, batch.mismatched)
        kl_ref = reference_logps(policy, batch.mismatched).to(kl_pol.device)
        return (kl_pol - kl_ref).mean().detach().clamp(min=0)

    def __call__(self, policy, batch):
        logps = sequence_logps(policy, batch.target)
        ref = reference_logps(policy, batch.target).to(logps.device)
        z = self.kl_estimate(policy, batch)
        good = batch.desirable.to(logps.device)
        per_row = losses.kto_loss(logps, ref, good, z, self.beta, self.w_d, self.w_u)
        delta = (logps - ref).detach()
        sign = good.float() * 2 - 1
        return per_row.sum(), {"kl": z * batch.n_rows,
                               "rewards/signed": (self.beta * delta * sign).sum(),
                               "rewards/accuracy": ((delta - z) * sign > 0).sum()}


def class_ratio(labels, desirable_weight: float, undesirable_weight: float) -> float:
    """(w_d n_d) / (w_u n_u): the KTO paper recommends [1, 4/3]."""
    n_d = sum(bool(x) for x in labels)
    n_u = len(labels) - n_d
    bottom = undesirable_weight * n_u
    return desirable_weight * n_d / bottom if bottom else math.inf
