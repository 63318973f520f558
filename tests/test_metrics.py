"""Evaluation metrics: pass@k against brute force; maj@k, best-of-n, stderr, summaries by hand."""
import itertools
import math

import pytest

from corral.eval.metrics import best_of_n, bootstrap_ci, maj_at_k, mean_stderr, pass_at_k, summarize
from corral.graders.base import Score


def brute_pass_at_k(n, c, k):
    """Fraction of k-subsets of n samples (the first c correct) that contain a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [
    (1, 0, 1), (1, 1, 1), (2, 1, 1), (2, 1, 2), (5, 0, 3), (5, 2, 1), (5, 2, 2), (5, 2, 3),
    (5, 2, 4), (5, 5, 5), (6, 1, 3), (8, 3, 4), (10, 1, 1), (10, 4, 5), (10, 9, 2), (12, 2, 7),
])
def test_pass_at_k_matches_brute_force(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_at_1_is_the_fraction_correct_and_large_n_is_stable():
    assert pass_at_k(200, 37, 1) == pytest.approx(37 / 200)
    expected = 1 - math.comb(1000 - 3, 100) / math.comb(1000, 100)
    assert pass_at_k(1000, 3, 100) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n,c,k", [(3, 4, 1), (3, 1, 0), (3, 1, 4), (3, -1, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_maj_at_k_hand_cases():
    answers = ["4", "5", "4", None, "5", "5"]
    correct = [True, False, True, False, False, False]
    assert maj_at_k(answers, correct, 1) == 1.0  # only "4" voted
    assert maj_at_k(answers, correct, 2) == 1.0  # "4" vs "5" tie: "4" came first
    assert maj_at_k(answers, correct, 3) == 1.0  # "4" twice
    assert maj_at_k(answers, correct, 4) == 1.0  # None does not vote
    assert maj_at_k(answers, correct, 5) == 1.0  # 2-2 tie again: "4" first
    assert maj_at_k(answers, correct, 6) == 0.0  # "5" three times
    assert maj_at_k([None, None], [True, True], 2) == 0.0
    assert maj_at_k([None, "7"], [False, True], 2) == 1.0


def test_best_of_n_grades_the_highest_scored_sample_first_on_ties():
    assert best_of_n([0.1, 0.9, 0.3], [False, True, False]) == 1.0
    assert best_of_n([0.1, 0.9, 0.3], [True, False, True]) == 0.0
    assert best_of_n([0.5, 0.5], [False, True]) == 0.0


def test_mean_stderr_hand_case():
    # mean 2.5; sample variance ((1.5^2 + 0.5^2) * 2) / 3 = 5/3; stderr sqrt(5/3 / 4)
    mean, stderr = mean_stderr([1, 2, 3, 4])
    assert mean == 2.5
    assert stderr == pytest.approx(math.sqrt(5 / 12))
    assert mean_stderr([0.0, 0.0]) == (0.0, 0.0)
    assert math.isnan(mean_stderr([3.0])[1])


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = [0, 1, 1, 0, 1, 1, 1, 0, 1, 1]
    lo, hi = bootstrap_ci(values, iters=500, seed=3)
    assert (lo, hi) == bootstrap_ci(values, iters=500, seed=3)
    assert lo < 0.7 < hi and 0.0 <= lo and hi <= 1.0
    assert bootstrap_ci([2.0] * 5) == (2.0, 2.0)


def test_summarize_reports_mean_pass_at_k_maj_at_k_and_counts():
    item_a = [Score(1.0, answer="4"), Score(0.0, answer="5"), Score(1.0, answer="4")]
    item_b = [Score(0.0, answer="3"), Score(0.0, answer="3"), Score(1.0, answer="6")]
    out = summarize([item_a, item_b], ks=(1, 2, 3, 5))
    assert out["n_items"] == 2 and out["n_samples"] == 3
    assert out["mean"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert out["pass@1"] == pytest.approx(0.5)
    assert out["pass@2"] == pytest.approx((1.0 + pass_at_k(3, 1, 2)) / 2)
    assert out["pass@3"] == 1.0 and out["pass@3_stderr"] == 0.0
    assert out["maj@3"] == pytest.approx(0.5)  # a: "4" wins (correct); b: "3" wins (wrong)
    assert "pass@5" not in out  # k larger than the samples per item is not estimable
    assert out["mean_stderr"] == pytest.approx(mean_stderr([2 / 3, 1 / 3])[1])


def test_summarize_uses_passed_flags_and_skips_maj_without_answers():
    items = [[Score(0.7, passed=True)], [Score(0.9, passed=False)], [Score(0.6)]]
    out = summarize(items, ks=(1,))
    assert out["pass@1"] == pytest.approx(1 / 3)  # the unflagged 0.6 is below full credit
    assert "maj@1" not in out
    assert summarize(items, ks=(1,), pass_threshold=0.5)["pass@1"] == pytest.approx(2 / 3)
