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
