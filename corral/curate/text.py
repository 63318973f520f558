"""What curation compares: the text of any row, its words, and their n-grams as hashes.

    row_text(row)      # chat: every turn; prompt + completion; preference: prompt + chosen; text
    prompt_text(row)   # what a test item asks: its user turns, prompt, question or text
    normalize(text)    # casefold, punctuation out, whitespace collapsed: the exact-dedup key
    hashes, offsets = encode(texts)           # every word hashed, all texts in one array
    grams, doc = ngram_hashes(hashes, offsets, 13)

Words are runs of Unicode word characters plus the arithmetic symbols `+ - * / = < > ^ %`
(so "What is 12 + 3?" and "What is 12 - 3?" stay different problems); other punctuation and
whitespace only separate words. Hashes are 64-bit and deterministic across runs and machines.
"""
from __future__ import annotations

import hashlib
import itertools
import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from corral.core.errors import CorralError
from corral.core.records import Chat, Completion, Feedback, Item, Preference, Text

_WORD = r"\w+|[+\-*/=<>^%]"
_TOKEN = re.compile(_WORD)
# The same words, plus \x00: the mark between two texts joined for one regex pass.
_TOKEN_OR_SEP = re.compile(r"\w+|[+\-*/=<>^%\x00]")
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd: the polynomial n-gram hash stays invertible per step
_ENCODE_CHUNK = 8192  # texts joined per regex pass: bounds the transient list of word strings


@dataclass(frozen=True)
class Row:
    """A raw JSON row as read from a file, its `file:line`, and the record it validated as."""
    data: dict
    source: str
    record: object = None


def source_of(row, index: int) -> str:
    """Where a row came from: its `file:line` when it has one, else `row N` (1-based)."""
    source = getattr(row, "source", "") or (row.get("source") if isinstance(row, dict) else "")
    return str(source) if source else f"row {index + 1}"


def _content(value) -> str:
    # OpenAI content parts [{"type": "text", "text": ...}] count by their text.
    if isinstance(value, list):
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    return value if isinstance(value, str) else ""


def _turns(turns, roles=None) -> str:
    """Contents of the turns (Messages or dicts), optionally only those with one of `roles`."""
    out = []
    for m in turns:
        role, content = (m.get("role"), m.get("content")) if isinstance(m, dict) else \
            (m.role, m.content)
        if roles is None or role in roles:
            out.append(_content(content))
    return "\n".join(out)


def _side(value, roles=None) -> str:
    return value if isinstance(value, str) else _turns(value or (), roles)


def _dict_text(row: dict, prompt_only: bool) -> str:
    user = ("user",) if prompt_only else None
    if isinstance(row.get("messages"), list):
        return _turns(row["messages"], user)
    if isinstance(row.get("input"), dict):  # OpenAI DPO rows
        prompt = _turns(row["input"].get("messages") or (), user)
        return prompt if prompt_only else prompt + "\n" + _side(row.get("preferred_output"))
    if "prompt" in row:
        response = "" if prompt_only else _side(row.get("completion", row.get("chosen", "")))
        return "\n".join(t for t in (_side(row["prompt"], user), response) if t)
    if "chosen" in row:  # conversations sharing their prompt turns
        return _side(row["chosen"], user)
    if "question" in row:  # GSM8K-style items
        answer = "" if prompt_only else _content(row.get("answer", ""))
        return "\n".join(t for t in (_content(row["question"]), answer) if t)
    if "text" in row:
        return _content(row["text"])
    raise CorralError(f"no text to compare in a row with keys {sorted(row)}; give 'messages', "
                      "'prompt' + 'completion', 'prompt' + 'chosen', 'question' or 'text'")


def row_text(row) -> str:
    """The text compared for dedup: chat, all turns joined; prompt + completion; preference,
    prompt + chosen; feedback, prompt + completion; text; item, its prompt. Accepts records,
    Rows, raw dicts and plain strings."""
    if isinstance(row, str):
        return row
    if isinstance(row, Row):
        return row_text(row.record if row.record is not None else row.data)
    if isinstance(row, dict):
        return _dict_text(row, prompt_only=False)
    if isinstance(row, (Chat, Item)):
        return _turns(row.messages)
    if isinstance(row, (Completion, Feedback)):
        return _side(row.prompt) + "\n" + _side(row.completion)
    if isinstance(row, Preference):
        return _side(row.prompt) + "\n" + _side(row.chosen)
    if isinstance(row, Text):
        return row.text
    raise CorralError(f"cannot curate a {type(row).__name__}; give records, dicts or strings")


def prompt_text(row) -> str:
    """What a test item asks, compared by decontamination: its user turns (system prompts and
    instructions shared by every item would make all of them look partly covered), prompt,
    `question` field or text."""
    if isinstance(row, str):
        return row
    if isinstance(row, Row):
        return prompt_text(row.data)
    if isinstance(row, dict):
        return _dict_text(row, prompt_only=True)
    if isinstance(row, Item):
        question = row.fields.get("question")
        return question if isinstance(question, str) else _turns(row.messages, ("user",))
    if isinstance(row, Chat):
        return _turns(row.messages, ("user",))
    if isinstance(row, (Completion, Feedback, Preference)):
        return _side(row.prompt, ("user",))
    return row_text(row)


def texts_of(rows: list, prompt: bool = False) -> list[str]:
    """row_text (or prompt_text) of every row; a row without text is named by its source."""
    text_fn, out = prompt_text if prompt else row_text, []
    for index, row in enumerate(rows):
        try:
            out.append(text_fn(row))
        except CorralError as e:
            raise CorralError(f"{source_of(row, index)}: {e}") from None
    return out


def tokenize(text: str) -> list[str]:
    """The words of a text, casefolded (see the module docstring for what a word is)."""
    return _TOKEN.findall(text.casefold())


def normalize(text: str) -> str:
    """Casefold, strip punctuation (arithmetic symbols stay), collapse whitespace: two texts
    that differ only in case, spacing or punctuation get the same key."""
    return " ".join(tokenize(text))


def _word_hashes(words) -> np.ndarray:
    digests = b"".join(hashlib.blake2b(w.encode("utf-8"), digest_size=8).digest() for w in words)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hashes uint64 [N words], offsets int64 [len(texts) + 1]): text d's word hashes are
    hashes[offsets[d]:offsets[d + 1]]. Each distinct word is hashed once (blake2b, 64 bits)."""
    vocab = defaultdict(itertools.count().__next__)  # a new word gets the next id, in C
    ids, lengths = [], []
    for start in range(0, len(texts), _ENCODE_CHUNK):
        chunk = texts[start:start + _ENCODE_CHUNK]
        joined = " \x00 ".join(t.replace("\x00", " ") for t in chunk).casefold()
        words = _TOKEN_OR_SEP.findall(joined)
        chunk_ids = np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=len(words))
        is_sep = chunk_ids == vocab.get("\x00", -1)
        seps = np.flatnonzero(is_sep)
        ends = np.concatenate([seps - np.arange(len(seps)), [len(words) - len(seps)]])
        lengths.append(np.diff(ends, prepend=0))
        ids.append(chunk_ids[~is_sep])
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    if texts:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    return _word_hashes(vocab)[all_ids], offsets


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the output (the polynomial sum
    alone is linear in the word hashes)."""
    z = values.copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def ngram_hashes(hashes: np.ndarray, offsets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(grams uint64, doc int64): every window of n consecutive words inside one text, hashed
    as mix64(Σ w[i+k]·M^(n−1−k)) over uint64 (wrapping); doc = the text each window is in."""
    total, n_docs = len(hashes), len(offsets) - 1
    if total < n:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    width = total - n + 1
    acc = hashes[:width].copy()
    for k in range(1, n):
        acc *= _MULT
        acc += hashes[k:k + width]
    doc = np.repeat(np.arange(n_docs), np.diff(offsets))[:width]
    valid = np.arange(width) + n <= offsets[doc + 1]
    return mix64(acc[valid]), doc[valid]


def whole_hashes(hashes: np.ndarray, offsets: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """One hash per doc in `docs` over all its words: equal to its only window in
    `ngram_hashes(..., n=len(words))`, so a short text can be found inside a longer one."""
    starts, lengths = offsets[docs], offsets[docs + 1] - offsets[docs]
    acc = np.zeros(len(docs), dtype=np.uint64)
    for k in range(int(lengths.max(initial=0))):
        live = lengths > k
        acc[live] = acc[live] * _MULT + hashes[starts[live] + k]
    return mix64(acc)


def segments(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat indices, owner) of the ranges [starts[i], ends[i]) laid end to end."""
    lengths = (ends - starts).astype(np.int64)
    owner = np.repeat(np.arange(len(starts)), lengths)
    first = np.cumsum(lengths) - lengths
    flat = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(first - starts, lengths)
    return flat, owner
