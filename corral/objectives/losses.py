"""Pure loss functions: tensors in, tensors out; no models, optimizers or I/O.

Shapes are in each docstring. Sums are returned where the caller normalises (the training
loop divides by the step's total weight so accumulation is exact).
"""
from __future__ import annotations

import torch


def nll_sum(token_logps: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood summed over target tokens.

    token_logps: [N] log p(target_t | prefix) of every target token. Returns a scalar.
    """
    return -token_logps.sum()


def segment_sum(values: torch.Tensor, segment_ids: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Sum `values` [N] into `n_segments` buckets by `segment_ids` [N] (int64). Returns [S]."""
    out = values.new_zeros(n_segments)
    return out.index_add(0, segment_ids, values)


# ---------------------------------------------------------------- preference objectives
def dpo_loss(pol_c, pol_r, ref_c, ref_r, beta: float, loss_type: str = "sigmoid",
             label_smoothing: float = 0.0, len_c=None, len_r=None):
    """DPO family. All inputs [B] summed completion log-probs (len_* [B] token counts).

    h = Δ_c − Δ_r with Δ = logp_θ − logp_ref (from per-token means for `norm` and `ipo`).
      sigmoid: −(1−ε) log σ(βh) − ε log σ(−βh)     (ε = label_smoothing: conservative DPO)
      robust:  [−(1−ε) log σ(βh) + ε log σ(−βh)] / (1 − 2ε)   (rDPO, unbiased under flips)
      hinge:   relu(1 − βh)
      ipo:     (h − 1/(2β))², h from length-averaged log-probs
      norm:    sigmoid on length-averaged log-probs (open-instruct's length-normalised DPO)
    Returns (losses [B], chosen_rewards [B], rejected_rewards [B]); rewards = β Δ, detached.
    """
    delta_c, delta_r = pol_c - ref_c, pol_r - ref_r
    if loss_type in ("ipo", "norm"):
        if len_c is None or len_r is None:
            raise ValueError(f"loss '{loss_type}' needs completion lengths")
        delta_c, delta_r = delta_c / len_c, delta_r / len_r
    h = delta_c - delta_r
    eps = label_smoothing
    logsig = torch.nn.functional.logsigmoid
    if loss_type in ("sigmoid", "norm"):
        losses = -(1 - eps) * logsig(beta * h) - eps * logsig(-beta * h)
    elif loss_type == "robust":
        losses = (-(1 - eps) * logsig(beta * h) + eps * logsig(-beta * h)) / (1 - 2 * eps)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss '{loss_type}'")
    return losses, (beta * delta_c).detach(), (beta * delta_r).detach()


def simpo_loss(avg_c, avg_r, beta: float, gamma: float):
    """SimPO: −log σ(β (avg_logp(y+) − avg_logp(y−)) − γ). Inputs [B] mean token log-probs."""
    return -torch.nn.functional.logsigmoid(beta * (avg_c - avg_r) - gamma)


def log_odds(avg_logp):
    """log(p / (1 − p)) for p = exp(avg_logp) < 1, exactly (Hong et al. 2024, eq. 4); [B] -> [B].

    log(1 − p) is computed as log(−expm1(x)): `log1p(−exp(x))` loses digits once p is near 1
    (1e-3 off in fp32 at x = −1e-6) and a clamp on p would cap the odds and zero the gradient
    of confident responses. Only x = 0 exactly (p = 1) is nudged to the largest x below 0."""
    x = avg_logp.clamp(max=-torch.finfo(avg_logp.dtype).tiny)
    return x - torch.log(-torch.expm1(x))


def orpo_loss(nll_c, avg_c, avg_r, lam: float):
    """ORPO: NLL(y+) + λ · −log σ(log odds(y+) − log odds(y−)). nll_c [B] mean NLL of y+."""
    ratio = -torch.nn.functional.logsigmoid(log_odds(avg_c) - log_odds(avg_r))
    return nll_c + lam * ratio, ratio.detach()


def kto_loss(pol, ref, desirable, kl, beta: float, w_d: float = 1.0, w_u: float = 1.0):
    """KTO. pol, ref [B] summed log-probs; desirable [B] bool; kl a scalar reference point.

    kl is detached and clamped at 0 here whatever the caller passes:
      desirable:   w_d (1 − σ(β (Δ − z)))     undesirable: w_u (1 − σ(β (z − Δ)))
    Returns losses [B].
    """
    z = kl.detach().clamp(min=0) if torch.is_tensor(kl) else torch.tensor(max(kl, 0.0))
    delta = pol - ref
    good = w_d * (1 - torch.sigmoid(beta * (delta - z)))
    bad = w_u * (1 - torch.sigmoid(beta * (z - delta)))
    return torch.where(desirable, good, bad)


def bradley_terry(r_c, r_r, margin=0.0, center_coef: float = 0.0):
    """Reward-model loss: −log σ(r_c − r_r − margin) + c · (r_c + r_r)². Inputs [B]."""
    losses = -torch.nn.functional.logsigmoid(r_c - r_r - margin)
    if center_coef:
        losses = losses + center_coef * (r_c + r_r) ** 2
    return losses


# ---------------------------------------------------------------- policy gradient
def group_advantages(rewards, n: int, eps: float = 1e-6, scale: str = "group"):
    """GRPO advantages. rewards [G·n] ordered by group; returns [G·n].

    A = (r − mean_group) / (std + ε) with std per group (Bessel-corrected), per batch, or
    none (Dr. GRPO). A singleton group (n = 1) has std 0 → A = 0 under group scaling.
    """
    grouped = rewards.view(-1, n)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale == "none":
        return centred.reshape(-1)
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True) if n > 1 else torch.zeros_like(grouped[:, :1])
    elif scale == "batch":
        std = rewards.std() if rewards.numel() > 1 else rewards.new_zeros(())
    else:
        raise ValueError(f"unknown advantage scaling '{scale}'")
    return (centred / (std + eps)).reshape(-1)


def rloo_advantages(rewards, n: int):
    """RLOO: r − mean of the other n − 1 rewards of the same prompt. [G·n] -> [G·n]."""
    if n < 2:
        return torch.zeros_like(rewards)
    grouped = rewards.view(-1, n)
    others = (grouped.sum(dim=1, keepdim=True) - grouped) / (n - 1)
    return (grouped - others).reshape(-1)


def whiten(values, eps: float = 1e-8, shift_mean: bool = True):
    """(x − mean) / std over the whole batch (REINFORCE++ / PPO advantage whitening)."""
    mean, std = values.mean(), values.std() if values.numel() > 1 else values.new_ones(())
    out = (values - mean) / (std + eps)
    return out if shift_mean else out + mean


def kl_penalty(logp, ref_logp, kind: str = "k3"):
    """Per-token KL estimate with d = ref_logp − logp: k1 = −d, k2 = d²/2, k3 = e^d − d − 1."""
    d = ref_logp - logp
    if kind == "k1":
        return -d
    if kind == "k2":
        return 0.5 * d * d
    if kind == "k3":
        return torch.exp(d) - d - 1
    raise ValueError(f"unknown KL estimator '{kind}'")


def clipped_surrogate(logp, old_logp, advantages, eps_low: float = 0.2, eps_high: float = 0.2):
    """PPO clipped objective per token: −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A). Inputs [N].

    Returns (loss [N], clipped [N] bool: where the clipped branch was taken).
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * advantages
    return -torch.minimum(unclipped, clipped), (clipped < unclipped)


def aggregate(per_token, seq_ids, mode: str = "token_mean"):
    """Sum that, divided by the matching global normaliser, gives the loss.

    per_token [N], seq_ids [N] (0..S−1). token_mean: Σ loss (normaliser: tokens).
    seq_mean_token_mean: Σ_s mean_t loss (normaliser: sequences). token_sum: Σ loss
    (normaliser: sequences × a constant max length, Dr. GRPO). See `aggregate_weight`.
    """
    if mode in ("token_mean", "token_sum"):
        return per_token.sum()
    if mode == "seq_mean_token_mean":
        n_seq = int(seq_ids.max()) + 1 if seq_ids.numel() else 0
        sums = segment_sum(per_token, seq_ids, n_seq)
        counts = segment_sum(torch.ones_like(per_token), seq_ids, n_seq).clamp(min=1)
        return (sums / counts).sum()
    raise ValueError(f"unknown loss aggregation '{mode}'")


def aggregate_weight(n_tokens: int, n_seqs: int, mode: str, max_len: int = 1) -> float:
    """The normaliser of `aggregate` for a batch (summed over an optimizer step's batches)."""
    if mode == "token_mean":
        return float(n_tokens)
    if mode == "seq_mean_token_mean":
        return float(n_seqs)
    if mode == "token_sum":
        return float(n_seqs * max_len)
    raise ValueError(f"unknown loss aggregation '{mode}'")


def gae(rewards, values, gamma: float = 1.0, lam: float = 0.95):
    """Generalised advantage estimation for one sequence. rewards, values [T] -> (A, returns).

    δ_t = r_t + γ V_{t+1} − V_t (V_T = 0);  A_t = δ_t + γλ A_{t+1};  returns = A + V.
    """
    T = rewards.shape[0]
    next_values = torch.cat([values[1:], values.new_zeros(1)])
    deltas = rewards + gamma * next_values - values
    advantages = torch.empty_like(rewards)
    running = rewards.new_zeros(())
    for t in range(T - 1, -1, -1):
        running = deltas[t] + gamma * lam * running
        advantages[t] = running
    return advantages, advantages + values


def clipped_value_loss(values, old_values, returns, eps_v: float = 0.2):
    """max((V − R)², (clip(V, V_old ± ε_v) − R)²) / 2 per token. Inputs [N]."""
    clipped = old_values + (values - old_values).clamp(-eps_v, eps_v)
    return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
