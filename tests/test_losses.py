"""Each loss against a value derived by hand (derivations in the docstrings)."""
import math

import pytest
import torch

from corral.objectives import losses as L

t = torch.tensor


def test_nll_sum():
    """logps −0.5 and −1.5 → NLL 2.0."""
    assert L.nll_sum(t([-0.5, -1.5])).item() == pytest.approx(2.0)


def test_dpo_sigmoid_hand_value():
    """Δ_c = −1 − (−2) = 1, Δ_r = −3 − (−2) = −1, h = 2, β = 0.5 → −log σ(1) = 0.31326."""
    losses, rc, rr = L.dpo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5)
    assert losses.item() == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-6)
    assert rc.item() == pytest.approx(0.5) and rr.item() == pytest.approx(-0.5)


def test_dpo_equal_policy_and_reference_is_log2():
    """Policy = reference → h = 0 → −log σ(0) = log 2, for any β."""
    x = t([-4.0, -7.0])
    for beta in (0.01, 0.1, 5.0):
        losses, _, _ = L.dpo_loss(x, x + 1, x, x + 1, beta=beta)
        assert torch.allclose(losses, torch.full((2,), math.log(2)))


def test_dpo_beta_to_zero_limit():
    """β → 0: loss → log 2 whatever the margin."""
    losses, _, _ = L.dpo_loss(t([-1.0]), t([-9.0]), t([-5.0]), t([-5.0]), beta=1e-8)
    assert losses.item() == pytest.approx(math.log(2), abs=1e-6)


def test_dpo_variants_hand_values():
    """h = 2, β = 0.5, ε = 0.1.
    conservative: 0.9·log(1+e^−1) + 0.1·log(1+e^1) = 0.9·0.313262 + 0.1·1.313262 = 0.413262
    robust: (0.9·0.313262 − 0.1·1.313262)/0.8 = (0.281936 − 0.131326)/0.8 = 0.188262
    hinge: relu(1 − 1) = 0
    ipo on lengths 2 and 4: h = 1/2 − (−1)/4 = 0.75; (0.75 − 1)² = 0.0625
    """
    args = (t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]))
    cons, _, _ = L.dpo_loss(*args, beta=0.5, label_smoothing=0.1)
    rob, _, _ = L.dpo_loss(*args, beta=0.5, loss_type="robust", label_smoothing=0.1)
    hinge, _, _ = L.dpo_loss(*args, beta=0.5, loss_type="hinge")
    ipo, _, _ = L.dpo_loss(*args, beta=0.5, loss_type="ipo", len_c=t([2.0]), len_r=t([4.0]))
    assert cons.item() == pytest.approx(0.413262, abs=1e-5)
    assert rob.item() == pytest.approx(0.188262, abs=1e-5)
    assert hinge.item() == pytest.approx(0.0)
    assert ipo.item() == pytest.approx(0.0625, abs=1e-6)


def test_simpo_and_orpo():
    """SimPO: β=2, γ=0.5, avg −1 vs −1.5 → −log σ(2·0.5 − 0.5) = log(1+e^−0.5) = 0.474077.
    ORPO: avg_c = log 0.5 → odds 1 → log-odds 0; avg_r = log 0.25 → log-odds log(1/3);
    ratio term = −log σ(log 3) = log(1 + 1/3) = 0.287682; λ=0.1, nll 0.7 → 0.7287682.
    """
    assert L.simpo_loss(t([-1.0]), t([-1.5]), 2.0, 0.5).item() == pytest.approx(0.474077, 1e-5)
    loss, ratio = L.orpo_loss(t([0.7]), t([math.log(0.5)]), t([math.log(0.25)]), 0.1)
    assert ratio.item() == pytest.approx(0.287682, abs=1e-5)
    assert loss.item() == pytest.approx(0.7287682, abs=1e-5)


def test_kto_hand_values_and_detached_clamped_kl():
    """Δ = 1 (desirable) and Δ = −1 (undesirable), z = 0 (kl −0.3 clamps to 0), β = 1:
    desirable 1 − σ(1) = 0.268941; undesirable 1 − σ(0 − (−1)) = 0.268941 (w_u = 2 → 0.537883).
    """
    kl = torch.tensor(-0.3, requires_grad=True)
    losses = L.kto_loss(t([0.0, -2.0]), t([-1.0, -1.0]), t([True, False]), kl, beta=1.0,
                        w_d=1.0, w_u=2.0)
    assert losses.tolist() == pytest.approx([0.268941, 0.537883], abs=1e-5)
    assert not losses.requires_grad  # no path back into the KL estimate


def test_bradley_terry():
    """r_c − r_r = 1, margin 0 → log(1+e^−1) = 0.313262; centering c=0.5, (1+0)² → +0.5."""
    assert L.bradley_terry(t([1.0]), t([0.0])).item() == pytest.approx(0.313262, abs=1e-5)
    assert L.bradley_terry(t([1.0]), t([0.0]), center_coef=0.5).item() == \
        pytest.approx(0.813262, abs=1e-5)


def test_group_advantages():
    """Group [1, 0, 0, 1]: mean 0.5, Bessel std sqrt(1/3) = 0.57735 → ±0.866025.
    Zero-variance group [1, 1] → 0. Singleton groups → 0 (group) / centred 0 (none)."""
    a = L.group_advantages(t([1.0, 0.0, 0.0, 1.0]), n=4, eps=0.0)
    assert a.tolist() == pytest.approx([0.866025, -0.866025, -0.866025, 0.866025], abs=1e-5)
    assert L.group_advantages(t([1.0, 1.0]), n=2).tolist() == [0.0, 0.0]
    assert L.group_advantages(t([3.0, 5.0]), n=1).tolist() == [0.0, 0.0]
    assert L.group_advantages(t([1.0, 0.0]), n=2, scale="none").tolist() == [0.5, -0.5]


def test_rloo():
    """[1, 0, 0]: baselines 0, 0.5, 0.5 → [1, −0.5, −0.5]."""
    assert L.rloo_advantages(t([1.0, 0.0, 0.0]), n=3).tolist() == pytest.approx([1, -.5, -.5])
    assert L.rloo_advantages(t([1.0]), n=1).tolist() == [0.0]


def test_kl_estimators():
    """d = ref − logp = log 2 − 0: k1 = −0.693147, k2 = 0.240227, k3 = 2 − 0.693147 − 1."""
    logp, ref = t([0.0]), t([math.log(2)])
    assert L.kl_penalty(logp, ref, "k1").item() == pytest.approx(-0.693147, abs=1e-5)
    assert L.kl_penalty(logp, ref, "k2").item() == pytest.approx(0.240227, abs=1e-5)
    assert L.kl_penalty(logp, ref, "k3").item() == pytest.approx(0.306853, abs=1e-5)


def test_clipped_surrogate():
    """ρ = e^0.5 = 1.6487, A = 1 → clipped at 1.2 → loss −1.2; A = −1 → min(−1.6487, −1.2)
    = −1.6487 → loss 1.6487 (unclipped: pessimistic side)."""
    loss, clipped = L.clipped_surrogate(t([0.5, 0.5]), t([0.0, 0.0]), t([1.0, -1.0]))
    assert loss.tolist() == pytest.approx([-1.2, 1.648721], abs=1e-5)
    assert clipped.tolist() == [True, False]


def test_aggregation_split_invariance():
    """Sum of per-batch aggregate / summed weights equals the whole-batch value."""
    per_token = torch.arange(1.0, 8.0)
    seq = t([0, 0, 0, 1, 1, 2, 2])
    for mode in ("token_mean", "seq_mean_token_mean", "token_sum"):
        whole = L.aggregate(per_token, seq, mode) / L.aggregate_weight(7, 3, mode, max_len=4)
        a = L.aggregate(per_token[:3], seq[:3], mode)
        b = L.aggregate(per_token[3:], seq[3:] - 1, mode)
        w = L.aggregate_weight(3, 1, mode, 4) + L.aggregate_weight(4, 2, mode, 4)
        assert ((a + b) / w).item() == pytest.approx(whole.item())
    # seq-mean of token-means: (2 + 4.5 + 6.5) / 3
    assert (L.aggregate(per_token, seq, "seq_mean_token_mean") / 3).item() == pytest.approx(13 / 3)


def test_gae_against_naive_loop():
    rewards, values = t([0.0, 0.0, 1.0]), t([0.5, 0.6, 0.7])
    gamma, lam = 0.9, 0.8
    adv, ret = L.gae(rewards, values, gamma, lam)
    expected = []
    for s in range(3):  # A_s = Σ_l (γλ)^l δ_{s+l}
        total = 0.0
        for l_ in range(3 - s):
            t_ = s + l_
            v_next = values[t_ + 1].item() if t_ + 1 < 3 else 0.0
            delta = rewards[t_].item() + gamma * v_next - values[t_].item()
            total += (gamma * lam) ** l_ * delta
        expected.append(total)
    assert adv.tolist() == pytest.approx(expected, abs=1e-6)
    assert ret.tolist() == pytest.approx([a + v for a, v in zip(expected, values.tolist())])


def test_clipped_value_loss():
    """V = 1.0, V_old = 0.5, R = 0: clipped V = 0.7 → max(1, 0.49)/2 = 0.5."""
    assert L.clipped_value_loss(t([1.0]), t([0.5]), t([0.0])).item() == pytest.approx(0.5)


@pytest.mark.parametrize("x", [-1e-3, -1e-4, -1e-5, -1e-6, -1e-7, -1e-8])
def test_orpo_log_odds_stable_for_confident_responses(x):
    """log odds = x − log(1 − eˣ) and its gradient 1 + eˣ/(1 − eˣ) = 1/(1 − eˣ), in fp32,
    against float64 (eˣ by expm1 there too); the old log1p(−exp) form was 1e-3 off at 1e-6."""
    ref_x = torch.tensor([x], dtype=torch.float64)
    expected = float(ref_x - torch.log(-torch.expm1(ref_x)))
    expected_grad = float(-1 / torch.expm1(ref_x))
    value = torch.tensor([x], dtype=torch.float32, requires_grad=True)
    out = L.log_odds(value)
    out.backward()
    assert float(out) == pytest.approx(expected, rel=1e-6)
    assert float(value.grad) == pytest.approx(expected_grad, rel=1e-4)
    assert torch.isfinite(L.log_odds(torch.zeros(1))).all()  # p = 1 exactly: finite
