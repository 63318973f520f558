"""Choosing demonstrations for a query: kNN by embedding similarity (KATE, Liu et al. 2022)
and maximal marginal relevance (MMR, Carbonell & Goldstein 1998: similar to the query,
unlike the ones already chosen).

    nearest(pool_texts, queries, k=4, method="similar")  # [[pool index, ...] per query]

Embeddings are the local all-MiniLM-L6-v2 (`graders.similarity.embed`, unit length, so a
dot product is the cosine); a pool is embedded once per process.
"""
from __future__ import annotations

import functools


def nearest(pool: list[str], queries: list[str], k: int, method: str = "similar",
            mmr_lambda: float = 0.5, *, embed=None) -> list[list[int]]:
    """For each query, k pool indices: most similar first (`similar`), or picked greedily
    by `mmr_lambda * sim(query, d) - (1 - mmr_lambda) * max sim(d, chosen)` (`mmr`).
    Ties go to the lower index, so a choice is reproducible. `embed`: texts -> unit vectors
    (a test passes its own)."""

    embed = embed or _embed
    pool_vecs = _pool_vectors(tuple(pool)) if embed is _embed else embed(pool)
    query_vecs = embed(queries)
    sims = query_vecs @ pool_vecs.T  # [queries, pool]
    if method == "similar":
        return [_top(row, k) for row in sims]
    redundancy = pool_vecs @ pool_vecs.T
    out = []
    for row in sims:
        chosen: list[int] = []
        for _ in range(k):
            score = row
            if chosen:
                score = (mmr_lambda * row
                         - (1 - mmr_lambda) * redundancy[:, chosen].max(dim=1).values)
                score[chosen] = float("-inf")
            chosen.append(_top(score, 1)[0])
        out.append(chosen)
    return out


def _top(row, k: int) -> list[int]:
    """Indices of the k largest values, ties to the lower index."""
    order = sorted(range(len(row)), key=lambda i: (-float(row[i]), i))
    return order[:k]


def _embed(texts: list[str]):
    from corral.graders.similarity import embed

    return embed(list(texts))


@functools.lru_cache(maxsize=8)
def _pool_vectors(pool: tuple):
    return _embed(list(pool))
