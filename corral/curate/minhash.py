"""MinHash LSH over numpy arrays: signatures, banding, candidate pairs, exact Jaccard, clusters.

    shingles, offsets = shingle_sets(texts, n=5)          # CSR: doc d owns offsets[d]:offsets[d+1]
    sig = signatures(shingles, offsets, num_perm=128)     # uint32 [docs, num_perm]
    i, j = candidate_pairs(sig, *optimal_param(0.7, 128))
    jac = jaccard(shingles, offsets, i, j)                # true Jaccard of the shingle sets
    labels = components(len(sig), i[jac >= 0.7], j[jac >= 0.7])   # min row index per cluster

Permutation k is the universal hash h_k(x) = (a_k·x + b_k) mod p with p = 2^32 − 5 (the
largest prime below 2^32) over the top 32 bits x of each shingle hash: a, b, x < 2^32 keep
a·x + b below 2^64, so uint64 arithmetic is exact. (datasketch and text-dedup use p = 2^61 − 1
and let a·x wrap around 2^64.)
"""
from __future__ import annotations

import functools

import numpy as np

from corral.curate.text import encode, mix64, ngram_hashes, segments, whole_hashes

PRIME = (1 << 32) - 5
EMPTY = np.uint32((1 << 32) - 1)  # the signature of a text with no shingles (it matches nothing)
TEXT_CHUNK = 16384  # texts tokenised and hashed at once (bounds the temporaries)
_CHUNK = 1024  # shingles hashed at once: a [1024, 128] uint64 block (1 MiB) stays in cache
_PAIR_CHUNK = 200_000  # candidate pairs whose Jaccard is computed at once
MAX_BUCKET_PAIRS = 64  # a row of a bucket is paired with at most this many earlier members


@functools.lru_cache(maxsize=64)
def optimal_param(threshold: float, num_perm: int, fp_weight: float = 0.5,
                  fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands·rows ≤ num_perm minimising fp_weight·FP + fn_weight·FN, where
    FP = ∫₀ᵗ P(candidate | s) ds, FN = ∫ₜ¹ (1 − P(candidate | s)) ds and
    P(candidate | s) = 1 − (1 − s^r)^b: datasketch's `_optimal_param`, integrated numerically."""
    low, high = np.linspace(0.0, threshold, 2001), np.linspace(threshold, 1.0, 2001)
    best, best_error = (1, 1), float("inf")
    for b in range(1, num_perm + 1):
        r = np.arange(1, num_perm // b + 1)
        p_low = 1 - (1 - low[:, None] ** r) ** b
        p_high = 1 - (1 - high[:, None] ** r) ** b
        error = fp_weight * np.trapezoid(p_low, low, axis=0) + \
            fn_weight * np.trapezoid(1 - p_high, high, axis=0)
        k = int(np.argmin(error))
        if error[k] < best_error:
            best, best_error = (b, int(r[k])), float(error[k])
    return best


def shingle_sets(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Word n-gram hashes per text as CSR (values uint64, offsets int64 [len(texts) + 1]).
    A text of fewer than n words is one shingle: all its words (text-dedup's rule), so short
    texts are near duplicates only when their words are the same. Texts are hashed a chunk
    at a time, so the temporaries stay small next to the result."""
    values, counts = [], []
    for lo in range(0, len(texts), TEXT_CHUNK):
        grams, count = _shingles(texts[lo:lo + TEXT_CHUNK], n)
        values.append(grams)
        counts.append(count)
    out = np.zeros(len(texts) + 1, dtype=np.int64)
    if texts:
        np.cumsum(np.concatenate(counts), out=out[1:])
    return (np.concatenate(values) if values else np.zeros(0, dtype=np.uint64)), out


def _shingles(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    hashes, offsets = encode(texts)
    grams, doc = ngram_hashes(hashes, offsets, n)
    lengths = np.diff(offsets)
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    if len(short):
        grams = np.concatenate([grams, whole_hashes(hashes, offsets, short)])
        doc = np.concatenate([doc, short])
        order = np.argsort(doc, kind="stable")
        grams, doc = grams[order], doc[order]
    return grams, np.bincount(doc, minlength=len(texts))


def permutations(num_perm: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) uint64 [num_perm]: a in [1, p), b in [0, p)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(1, PRIME, num_perm, dtype=np.uint64),
            rng.integers(0, PRIME, num_perm, dtype=np.uint64))


def signatures(shingles: np.ndarray, offsets: np.ndarray, num_perm: int = 128,
               seed: int = 0) -> np.ndarray:
    """uint32 [docs, num_perm]: per doc and permutation, min over its shingles of h_k(x)."""
    a, b = permutations(num_perm, seed)
    prime = np.uint64(PRIME)
    x = shingles >> np.uint64(32)
    n_docs = len(offsets) - 1
    sig = np.full((n_docs, num_perm), EMPTY, dtype=np.uint32)
    longest = int(np.diff(offsets).max(initial=0))
    buf = np.empty((max(_CHUNK, longest), num_perm), dtype=np.uint64)
    doc = 0
    while doc < n_docs:
        # whole docs, about _CHUNK shingles (one doc alone when it is longer)
        end = int(np.searchsorted(offsets, offsets[doc] + _CHUNK, side="right")) - 1
        end = min(max(end, doc + 1), n_docs)
        lo, hi = offsets[doc], offsets[end]
        if hi > lo:
            block = buf[:hi - lo]
            np.multiply(x[lo:hi, None], a, out=block)
            block += b
            np.remainder(block, prime, out=block)
            docs = doc + np.flatnonzero(np.diff(offsets[doc:end + 1]) > 0)
            sig[docs] = np.minimum.reduceat(block, offsets[docs] - lo, axis=0)
        doc = end
    return sig


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 [bands, docs]: one hash of each band's `rows` signature values."""
    keys = np.empty((bands, len(sig)), dtype=np.uint64)
    for band in range(bands):
        key = np.zeros(len(sig), dtype=np.uint64)
        for col in sig[:, band * rows:(band + 1) * rows].T:
            key = mix64(key ^ col.astype(np.uint64))
        keys[band] = key
    return keys


def candidate_pairs(sig: np.ndarray, bands: int, rows: int,
                    max_pairs: int = MAX_BUCKET_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) int64 with i < j, unique: rows that share a bucket in at least one band. Rows with
    no shingles are left out. In a bucket, each row pairs with its `max_pairs` first members
    (all of them below that size), so a bucket of m rows costs O(m · max_pairs), not O(m²)."""
    n = len(sig)
    live = np.flatnonzero((sig != EMPTY).any(axis=1))
    found = []
    for key in band_keys(sig[live], bands, rows):
        order = np.argsort(key, kind="stable")  # stable: members stay in row order, so i < j
        sorted_keys = key[order]
        new = np.ones(len(order), dtype=bool)
        new[1:] = sorted_keys[1:] != sorted_keys[:-1]
        group_start = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
        rank = np.arange(len(order)) - group_start
        for m in range(min(int(rank.max(initial=0)), max_pairs)):
            later = rank > m
            first, second = live[order[group_start[later] + m]], live[order[later]]
            found.append(first * n + second)
    if not found:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pairs = np.unique(np.concatenate(found))
    return pairs // n, pairs % n


def _unique_sets(shingles, offsets, docs):
    """CSR (values, offsets) of each doc's distinct shingles, sorted, for docs in `docs`."""
    flat, owner = segments(offsets[docs], offsets[docs + 1])
    values = shingles[flat]
    order = np.lexsort((values, owner))
    values, owner = values[order], owner[order]
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = (values[1:] != values[:-1]) | (owner[1:] != owner[:-1])
    counts = np.bincount(owner[keep], minlength=len(docs))
    out = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return values[keep], out


def jaccard(shingles: np.ndarray, offsets: np.ndarray, i: np.ndarray,
            j: np.ndarray) -> np.ndarray:
    """Exact Jaccard |A∩B| / |A∪B| of the shingle sets of each pair (i[k], j[k])."""
    if len(i) == 0:
        return np.zeros(0)
    docs = np.unique(np.concatenate([i, j]))
    values, u_off = _unique_sets(shingles, offsets, docs)
    pi, pj = np.searchsorted(docs, i), np.searchsorted(docs, j)
    size_i, size_j = np.diff(u_off)[pi], np.diff(u_off)[pj]
    inter = np.zeros(len(i), dtype=np.int64)
    for lo in range(0, len(i), _PAIR_CHUNK):
        a, b = pi[lo:lo + _PAIR_CHUNK], pj[lo:lo + _PAIR_CHUNK]
        fa, oa = segments(u_off[a], u_off[a + 1])
        fb, ob = segments(u_off[b], u_off[b + 1])
        v, p = np.concatenate([values[fa], values[fb]]), np.concatenate([oa, ob])
        order = np.lexsort((v, p))
        v, p = v[order], p[order]
        same = (v[1:] == v[:-1]) & (p[1:] == p[:-1])  # each set is distinct: a repeat is shared
        inter[lo:lo + len(a)] = np.bincount(p[1:][same], minlength=len(a))
    union = size_i + size_j - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def estimated_jaccard(sig: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The share of equal signature values: MinHash's estimate of each pair's Jaccard."""
    return (sig[i] == sig[j]).mean(axis=1) if len(i) else np.zeros(0)


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Union-find over the edges (i, j), vectorised: labels[x] = the smallest row index of
    x's connected component (so "keep the first row of each cluster" is labels == arange)."""
    labels = np.arange(n)
    if len(i) == 0:
        return labels
    while True:
        li, lj = labels[i], labels[j]
        if np.array_equal(li, lj):
            return labels
        low = np.minimum(li, lj)
        np.minimum.at(labels, li, low)  # hook each root under the smaller root
        np.minimum.at(labels, lj, low)
        while True:  # pointer jumping until every label is a root
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
