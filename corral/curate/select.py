"""Selection to a budget of k rows: score with diversity (deita), coverage (k-center), random.

    select(rows, 1000, method="deita", scores=ifd, tau=0.9)   # best first, none too similar
    select(rows, 1000, method="kcenter")                       # greedy k-center on embeddings
    select(rows, 1000, method="random", seed=0)                # the control

Budgets: k larger than the rows is a CorralError (asking for more data than exists is a
mistake, not a request to keep everything). deita never pads: when fewer than k rows pass the
diversity constraint it keeps those and says so in the result's notes. Kept rows stay in input
order; embeddings default to `embed` (MiniLM) of each row's text.
"""
from __future__ import annotations

import numpy as np

from corral.core.errors import CorralError
from corral.core.registry import Registry
from corral.curate.report import Finding, StepResult
from corral.curate.text import source_of, texts_of

METHODS = ("deita", "kcenter", "random")
_METHODS = Registry("select method")  # the lookup with did-you-mean
for _name in METHODS:
    _METHODS.add(_name, _name)
_BLOCK = 256  # deita candidates compared with the selected rows in one matrix product


def select(rows: list, k: int, method: str = "deita", scores=None, embeddings=None,
           tau: float = 0.9, seed: int = 0, batch_size: int = 64) -> StepResult:
    """k rows of `rows` by `method`; scores: one float per row (deita: required; kcenter:
    starts from the best-scored row, else the first row)."""
    _check(rows, k, method, scores, tau)
    params = {"k": k, "method": method, **({"tau": tau} if method == "deita" else {}),
              **({"seed": seed} if method == "random" else {})}
    if method == "random":
        chosen = np.random.default_rng(seed).choice(len(rows), size=k, replace=False)
        return _result(rows, chosen, {}, params, "not drawn by the seeded random selection")
    if embeddings is None:
        from corral.curate.embed import embed
        embeddings = embed(texts_of(rows), batch_size=batch_size)
    vectors = np.asarray(embeddings, dtype=np.float32)
    values = None if scores is None else np.nan_to_num(np.asarray(scores, dtype=float),
                                                       nan=-np.inf)
    if method == "kcenter":
        first = 0 if values is None else int(np.argmax(values))
        chosen, nearest = _kcenter(vectors, k, first)
        return _result(rows, chosen, nearest, params, "not a k-center; nearest center")
    chosen, rejected = _deita(vectors, values, k, tau)
    result = _result(rows, chosen, rejected, params, "below the score of the last row selected",
                     scores=values)
    if len(chosen) < k:
        result.notes.append(f"only {len(chosen)} rows pass the diversity constraint (cosine ≤ "
                            f"{tau} to every selected row); {k} were asked; not padded")
    return result


def _check(rows, k, method, scores, tau) -> None:
    _METHODS.get(method)  # an unknown method: CorralError naming the closest one
    if k < 1 or k > len(rows):
        raise CorralError(f"select budget {k}: there are {len(rows)} rows left after the earlier "
                          f"steps; give a budget from 1 to {len(rows)}")
    if scores is not None and len(scores) != len(rows):
        raise CorralError(f"{len(scores)} scores for {len(rows)} rows; give one score per row")
    if method == "deita" and scores is None:
        raise CorralError("select method 'deita' ranks rows by score: give scores (e.g. IFD "
                          "or a grader's), or use method 'kcenter' or 'random'")
    if method == "deita" and not -1 <= tau <= 1:
        raise CorralError(f"tau {tau}: give a cosine similarity in [-1, 1]")


def _deita(vectors, scores, k: int, tau: float):
    """Go through rows by score, best first; take a row when its cosine to every row taken
    so far is ≤ tau. Returns (chosen, {rejected row: (most similar chosen row, cosine)})."""
    order = np.argsort(-scores, kind="stable")
    taken = np.empty((k, vectors.shape[1]), dtype=np.float32)
    chosen, rejected = [], {}
    for lo in range(0, len(order), _BLOCK):
        block = order[lo:lo + _BLOCK]
        if chosen:  # against every row taken before this block, in one product
            sims = vectors[block] @ taken[:len(chosen)].T
            best = sims.argmax(axis=1)
            for row in np.flatnonzero(sims[np.arange(len(block)), best] > tau):
                rejected[int(block[row])] = (chosen[best[row]], float(sims[row, best[row]]))
            block = block[sims[np.arange(len(block)), best] <= tau]
        start = len(chosen)
        for row in block:  # and against the rows taken within this block
            if len(chosen) > start:
                sims = taken[start:len(chosen)] @ vectors[row]
                b = int(sims.argmax())
                if sims[b] > tau:
                    rejected[int(row)] = (chosen[start + b], float(sims[b]))
                    continue
            taken[len(chosen)] = vectors[row]
            chosen.append(int(row))
            if len(chosen) == k:
                return chosen, rejected
    return chosen, rejected


def _kcenter(vectors, k: int, first: int):
    """Greedy k-center (Gonzalez): repeatedly take the row farthest (1 − cosine) from every
    center so far. Returns (chosen, {other row: (its nearest center, cosine)})."""
    dist = 1.0 - vectors @ vectors[first]
    nearest = np.full(len(vectors), first)
    chosen = [first]
    dist[first] = -np.inf
    for _ in range(k - 1):
        far = int(np.argmax(dist))
        chosen.append(far)
        d = 1.0 - vectors @ vectors[far]
        closer = d < dist
        dist[closer], nearest[closer] = d[closer], far
        dist[far] = -np.inf
    taken = set(chosen)
    others = {int(r): (int(nearest[r]), float(1.0 - dist[r])) for r in range(len(vectors))
              if r not in taken}
    return chosen, others


def _result(rows, chosen, reasons: dict, params: dict, default: str,
            scores=None) -> StepResult:
    """Kept rows in input order; a Finding for every other row (why, and the row it is near)."""
    chosen_set = {int(c) for c in chosen}
    kept = [row for index, row in enumerate(rows) if index in chosen_set]
    findings = []
    for index, row in enumerate(rows):
        if index in chosen_set:
            continue
        if index in reasons:
            other, cosine = reasons[index]
            why = default if params["method"] == "kcenter" else f"cosine > {params['tau']} " \
                "to a row selected before it"
            findings.append(Finding("select", source_of(row, index), why,
                                    match=source_of(rows[other], other), score=cosine))
        else:
            value = None if scores is None else float(scores[index])
            findings.append(Finding("select", source_of(row, index), default,
                                    score=value if value is None or np.isfinite(value) else None))
    return StepResult("select", kept, findings, params=params)
