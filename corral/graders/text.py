"""Text units for instruction checks: sentences, words and paragraphs, by regex alone.

No tokenizer data is downloaded (unlike nltk's punkt), so graders run anywhere.
"""
from __future__ import annotations

import re

# Abbreviations whose final period does not end a sentence ("Dr. Smith", "e.g. apples").
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "cf", "al", "inc", "ltd",
    "co", "corp", "dept", "est", "govt", "approx", "e.g", "i.e", "a.m", "p.m", "u.s", "u.k",
    "ph.d", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"})
# These are also ordinary words ("I said no."), so they are abbreviations only before a digit.
_NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "vol", "fig", "figs", "p", "pp"})

_SENTENCE_END = re.compile(r"([.!?…]+)([\"'”’)\]]*)(?=\s|$)")
_CJK_END = re.compile(r"(?<=[。！？])")
_TOKEN_BEFORE = re.compile(r"([\w.]+)$")
_WORD = re.compile(r"\d+(?:[.,]\d+)+|\w+(?:['’\-]\w+)*")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n|^[ \t]*\*{3}[ \t]*$", re.MULTILINE)


def words(text: str) -> list[str]:
    """Words: runs of letters/digits; "don't", "well-known" and "3.5" count as one word."""
    return _WORD.findall(text)


def count_words(text: str) -> int:
    return len(words(text))


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs are separated by blank lines or by a line holding only `***`."""
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def split_sentences(text: str) -> list[str]:
    """Split on . ! ? … (and 。！？), skipping abbreviations, initials, decimals and
    ellipses that continue in lower case. Line breaks also end a sentence, because model
    output puts titles, list items and section headers on lines of their own."""
    # In all-lowercase text a lowercase next word is no sign that the sentence goes on.
    cased = not text.islower()
    sentences = []
    for line in text.splitlines():
        for chunk in _CJK_END.split(line):
            sentences.extend(_split_line(chunk, cased))
    return sentences


def _split_line(line: str, cased: bool) -> list[str]:
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(line):
        if _is_boundary(line, match, cased):
            pieces.append(line[start:match.end()])
            start = match.end()
    pieces.append(line[start:])
    return [p.strip() for p in pieces if p.strip()]


def _is_boundary(line: str, match: re.Match, cased: bool) -> bool:
    rest = line[match.end():].lstrip()
    if not rest:
        return True
    if "!" in match.group(1) or "?" in match.group(1):
        return True
    if cased and rest[0].islower():  # "approx. ten", "wait... what": the sentence goes on
        return False
    if match.group(1) != ".":
        return True
    token = _TOKEN_BEFORE.search(line[:match.start()])
    token = token.group(1).lower() if token else ""
    if token in _ABBREVIATIONS:
        return False
    if token in _NUMBER_ABBREVIATIONS and rest[0].isdigit():
        return False
    # A single capital letter before the period is an initial ("J. K. Rowling").
    return not (len(token) == 1 and token.isalpha() and line[match.start() - 1].isupper())
