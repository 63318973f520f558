"""Evaluation metrics as pure functions: pass@k, maj@k, best-of-n, standard errors, bootstrap CIs.

stdlib only; inputs are plain numbers, strings and Score-like objects (`value`, `passed`, `answer`).
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

from corral.graders.base import passed


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), which never forms the huge binomials.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def maj_at_k(answers: Sequence[str | None], correct: Sequence[bool], k: int) -> float:
    """1.0 if the most frequent answer among the first k samples is correct, else 0.0.

    None answers (nothing extracted) do not vote; ties go to the answer seen first; no votes is 0.0.
    """
    if len(answers) != len(correct):
        raise ValueError(f"maj_at_k: {len(answers)} answers but {len(correct)} correctness flags")
    if not 1 <= k <= len(answers):
        raise ValueError(f"maj_at_k needs 1 <= k <= {len(answers)}; got k={k}")
    votes: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for i, answer in enumerate(answers[:k]):
        if answer is not None:
            votes[answer] = votes.get(answer, 0) + 1
            first_seen.setdefault(answer, i)
    if not votes:
        return 0.0
    # dicts keep insertion order and max() returns the first maximum: ties go to first occurrence
    winner = max(votes, key=votes.get)
    return 1.0 if correct[first_seen[winner]] else 0.0


def best_of_n(scores_for_choice: Sequence[float], correct: Sequence[bool]) -> float:
    """1.0 if the sample a reward model or judge scores highest (first on ties) is correct."""
    if not scores_for_choice or len(scores_for_choice) != len(correct):
        raise ValueError("best_of_n needs one choice score per sample and at least one sample")
    best = max(range(len(scores_for_choice)), key=lambda i: scores_for_choice[i])
    return 1.0 if correct[best] else 0.0


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean) with the n-1 sample variance; stderr is nan for n = 1."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_stderr of no values")
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return mean, math.nan
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def bootstrap_ci(values: Sequence[float], iters: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean (resample items with replacement)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("bootstrap_ci of no values")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(iters))
    tail = (1.0 - confidence) / 2
    lo = means[math.floor(tail * (iters - 1))]
    hi = means[math.ceil((1.0 - tail) * (iters - 1))]
    return lo, hi


def summarize(per_item: Sequence[Sequence], ks: Sequence[int] = (1,),
              pass_threshold: float = 1.0) -> dict[str, float]:
    """Flat metrics over items, each a list of Score-like results of its samples.

    Keys: n_items, n_samples (fewest samples of any item), mean (mean grade), pass@k and maj@k
    for every k in ks with k <= n_samples (maj@k only when some sample has an answer), and a
    `<key>_stderr` for each mean over items. Items are the unit of the standard error.
    """
    if not per_item:
        raise ValueError("summarize: no items")
    n_samples = min(len(scores) for scores in per_item)
    if n_samples == 0:
        raise ValueError("summarize: an item has no samples")
    columns: dict[str, list[float]] = {
        "mean": [math.fsum(float(s.value) for s in scores) / len(scores) for scores in per_item]}
    correct = [[passed(s, pass_threshold) for s in scores] for scores in per_item]
    has_answers = any(getattr(s, "answer", None) is not None for scores in per_item for s in scores)
    for k in sorted({k for k in ks if 1 <= k <= n_samples}):
        columns[f"pass@{k}"] = [pass_at_k(len(flags), sum(flags), k) for flags in correct]
        if has_answers:
            columns[f"maj@{k}"] = [maj_at_k([getattr(s, "answer", None) for s in scores], flags, k)
                                   for scores, flags in zip(per_item, correct)]
    out: dict[str, float] = {"n_items": len(per_item), "n_samples": n_samples}
    for key, column in columns.items():
        out[key], out[f"{key}_stderr"] = mean_stderr(column)
    return out
