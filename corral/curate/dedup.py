"""Deduplication: exact (normalised text), near (MinHash LSH, verified), semantic (embeddings).

    exact_dedup(rows)                            # keep the first of each normalised text
    near_dedup(rows, threshold=0.7, ngram=5)     # Jaccard of word 5-grams, one row per cluster
    semantic_dedup(rows, threshold=0.95)         # cosine of MiniLM embeddings, one per cluster

Each returns a StepResult: the kept rows in input order and a Finding per dropped row naming
the row it duplicates. Clusters are connected components of the similar pairs; the first row
of a cluster is kept and every other one dropped, so a cluster never disappears whole.
"""
from __future__ import annotations

import hashlib

import numpy as np

from corral.core.errors import CorralError
from corral.curate import minhash
from corral.curate.report import Finding, StepResult
from corral.curate.text import normalize, source_of, texts_of


def exact_dedup(rows: list) -> StepResult:
    """Drop rows whose normalised text (see `normalize`) repeats an earlier row's."""
    first: dict[bytes, int] = {}
    kept, findings = [], []
    for index, (row, text) in enumerate(zip(rows, texts_of(rows))):
        key = hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=16).digest()
        if key in first:
            findings.append(Finding("exact", source_of(row, index), "exact duplicate",
                                    match=source_of(rows[first[key]], first[key]), score=1.0))
        else:
            first[key] = index
            kept.append(row)
    return StepResult("exact", kept, findings, params={"normalize": "casefold, no punctuation, "
                                                                    "collapsed whitespace"})


def _check(name: str, value: float, low: float = 0.0) -> None:
    if not low < value <= 1:
        raise CorralError(f"{name} {value}: give a similarity in ({low}, 1]")


def near_dedup(rows: list, threshold: float = 0.7, ngram: int = 5, num_perm: int = 128,
               bands: int | None = None, seed: int = 0, verify: bool = True) -> StepResult:
    """MinHash LSH near-duplicates: rows whose word n-gram sets have Jaccard ≥ threshold.

    bands=None picks (bands, rows per band) by `minhash.optimal_param`. verify (the default)
    keeps only candidate pairs whose exact Jaccard reaches the threshold; without it every
    candidate pair counts (text-dedup's behaviour) and the score is MinHash's estimate."""
    _check("threshold", threshold)
    if ngram < 1 or num_perm < 2:
        raise CorralError(f"ngram {ngram}, num_perm {num_perm}: give ngram ≥ 1 and num_perm ≥ 2")
    b, r = (bands, num_perm // bands) if bands else minhash.optimal_param(threshold, num_perm)
    shingles, offsets = minhash.shingle_sets(texts_of(rows), ngram)
    sig = minhash.signatures(shingles, offsets, num_perm, seed)
    i, j = minhash.candidate_pairs(sig, b, r)
    score = minhash.jaccard(shingles, offsets, i, j) if verify else \
        minhash.estimated_jaccard(sig, i, j)
    similar = score >= threshold if verify else np.ones(len(i), dtype=bool)
    params = {"threshold": threshold, "ngram": ngram, "num_perm": num_perm, "bands": b,
              "rows_per_band": r, "seed": seed, "verify": verify}
    result = clusters("near", rows, i[similar], j[similar], score[similar], "near duplicate",
                      params)
    result.notes.append(f"{len(i)} candidate pairs, {int(similar.sum())} at Jaccard ≥ "
                        f"{threshold}" if verify else f"{len(i)} candidate pairs, unverified")
    return result


def semantic_dedup(rows: list, threshold: float = 0.95, embeddings=None, batch_size: int = 64,
                   block: int = 1024) -> StepResult:
    """Rows whose embedding cosine similarity is ≥ threshold (exhaustive: O(rows²) dot products
    in blocks). embeddings: unit vectors [rows, d] to use instead of `embed` (MiniLM)."""
    _check("threshold", threshold, low=-1.0)
    model = "given embeddings" if embeddings is not None else "all-MiniLM-L6-v2"
    if embeddings is None:
        from corral.curate.embed import embed
        embeddings = embed(texts_of(rows), batch_size=batch_size)
    vectors = np.asarray(embeddings, dtype=np.float32)
    firsts, seconds, sims = [], [], []
    for lo in range(0, len(vectors), block):
        sim = vectors[lo:lo + block] @ vectors.T
        a, b = np.nonzero(sim >= threshold)
        later = b > a + lo  # each pair once, and not a row with itself
        firsts.append(a[later] + lo)
        seconds.append(b[later])
        sims.append(sim[a[later], b[later]])
    i, j, score = (np.concatenate(x) if x else np.zeros(0) for x in (firsts, seconds, sims))
    params = {"threshold": threshold, "embeddings": model}
    return clusters("semantic", rows, i.astype(np.int64), j.astype(np.int64), score,
                    "semantic duplicate", params)


def clusters(step: str, rows: list, i: np.ndarray, j: np.ndarray, score: np.ndarray,
             reason: str, params: dict) -> StepResult:
    """Keep the first row of each connected component of the pairs (i, j); every other row is
    a Finding naming its most similar partner (match), the score, and the row kept (kept_as)."""
    labels = minhash.components(len(rows), i, j)
    partner, best = _best_partner(len(rows), i, j, score)
    kept, findings = [], []
    for index, row in enumerate(rows):
        if labels[index] == index:
            kept.append(row)
            continue
        rep, other = int(labels[index]), int(partner[index])
        findings.append(Finding(step, source_of(row, index), reason,
                                match=source_of(rows[other], other), score=float(best[index]),
                                kept_as="" if other == rep else source_of(rows[rep], rep)))
    return StepResult(step, kept, findings, params=params)


def _best_partner(n: int, i: np.ndarray, j: np.ndarray, score: np.ndarray):
    """Per row, the partner of its highest-scoring pair (ties: the earliest partner)."""
    rows, others = np.concatenate([i, j]), np.concatenate([j, i])
    scores = np.concatenate([score, score]).astype(float)
    order = np.lexsort((others, -scores, rows))
    rows, others, scores = rows[order], others[order], scores[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    partner, best = np.full(n, -1, dtype=np.int64), np.zeros(n)
    partner[rows[first]], best[rows[first]] = others[first], scores[first]
    return partner, best
