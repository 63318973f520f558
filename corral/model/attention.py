"""Variable-length attention for packed rows without flash-attn: attention runs per sequence.

transformers builds a dense block-diagonal mask for a packed row, so sdpa computes scores
across the whole row (T² instead of Σ L_i²) — 8× the attention work for eight sequences. Here
the row's projections and MLPs still run once over all tokens (no padding), but each
sequence's attention is a separate causal sdpa call. Registered as `corral_varlen`; with a
mask or a cache (generation) it defers to transformers' sdpa path unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "corral_varlen"


def _segments(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, [start, end) of each sequence: a sequence starts where position ids restart."""
    rows = []
    for row in position_ids:
        starts = torch.nonzero(row[1:] <= row[:-1]).flatten().add(1).tolist()
        bounds = [0] + starts + [row.shape[0]]
        rows.append(list(zip(bounds[:-1], bounds[1:])))
    return rows


def varlen_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                        scaling=None, is_causal=None, **kwargs):
    """query [B, H, T, D], key/value [B, H_kv, T, D] -> ([B, T, H, D], None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    if attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2] \
            or query.shape[2] == 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    position_ids = position_ids.expand(query.shape[0], -1)
    gqa = query.shape[1] != key.shape[1]
    p = dropout if module.training else 0.0
    rows = []
    for b, segments in enumerate(_segments(position_ids)):
        if len(segments) == 1:  # one sequence: a single causal call, no slicing
            q, k, v = query[b:b + 1], key[b:b + 1], value[b:b + 1]
            rows.append(F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling,
                                                       dropout_p=p, enable_gqa=gqa))
            continue
        parts = [F.scaled_dot_product_attention(
            query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e],
            is_causal=True, scale=scaling, dropout_p=p, enable_gqa=gqa) for s, e in segments]
        rows.append(torch.cat(parts, dim=2))
    out = torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]
    return out.transpose(1, 2).contiguous(), None


def varlen_mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, attention_mask=None,
                **kwargs):
    """No dense mask for a packed or plain causal row: the attention splits it by positions."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None and q_length == kv_length and q_offset == 0 and kv_offset == 0:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length,
                     q_offset=q_offset, kv_offset=kv_offset, attention_mask=attention_mask,
                     **kwargs)


def register() -> str:
    """Make `attn_implementation="corral_varlen"` available to transformers; returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_sdpa_forward)
    AttentionMaskInterface.register(NAME, varlen_mask)
    return NAME


def use_varlen(model) -> None:
    """Switch a loaded model (and its sub-configs) to the varlen attention."""
    register()
    model.set_attn_implementation(NAME) if hasattr(model, "set_attn_implementation") \
        else setattr(model.config, "_attn_implementation", NAME)
