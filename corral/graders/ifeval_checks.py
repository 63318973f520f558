"""Checkers for verifiable instructions (IFEval style): `check(response, **kwargs) -> bool`.

Written for corral; the registry with templates and samplers is in `ifeval.py`.
"""
from __future__ import annotations

import json
import re

from corral.graders.text import count_words, split_paragraphs, split_sentences, words

RELATIONS = ("at least", "at most", "exactly", "less than")


def compare(count: int, relation: str, n: int) -> bool:
    if relation == "at least":
        return count >= n
    if relation == "at most":
        return count <= n
    if relation == "exactly":
        return count == n
    if relation == "less than":  # IFEval's own spelling of the upper bound
        return count < n
    raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


# --- length ---------------------------------------------------------------------------
def number_words(response: str, num_words: int, relation: str = "at least") -> bool:
    return compare(count_words(response), relation, num_words)


def number_sentences(response: str, num_sentences: int, relation: str = "at least") -> bool:
    return compare(len(split_sentences(response)), relation, num_sentences)


def number_paragraphs(response: str, num_paragraphs: int) -> bool:
    return len(split_paragraphs(response)) == num_paragraphs


# --- keywords -------------------------------------------------------------------------
def keywords_existence(response: str, keywords: list[str]) -> bool:
    return all(_has_word(response, k) for k in keywords)


def forbidden_words(response: str, forbidden_words: list[str]) -> bool:
    return not any(_has_word(response, w) for w in forbidden_words)


def keyword_frequency(response: str, keyword: str, frequency: int,
                      relation: str = "at least") -> bool:
    found = re.findall(rf"(?<!\w){re.escape(keyword)}(?!\w)", response, re.IGNORECASE)
    return compare(len(found), relation, frequency)


def letter_frequency(response: str, letter: str, let_frequency: int,
                     relation: str = "at least", let_relation: str | None = None) -> bool:
    # `let_relation` is IFEval's own kwarg name, accepted so its data grades unchanged.
    return compare(response.lower().count(letter.lower()), let_relation or relation,
                   let_frequency)


# --- case -----------------------------------------------------------------------------
def english_lowercase(response: str) -> bool:
    return response.islower()  # False when there is no letter at all


def english_capital(response: str) -> bool:
    return response.isupper()


def capital_word_frequency(response: str, capital_frequency: int, relation: str = "at least",
                           capital_relation: str | None = None) -> bool:
    # Single letters ("I", "A") are ordinary words, not emphasis, so they do not count.
    capitals = [w for w in words(response) if len(w) > 1 and w.isupper()]
    return compare(len(capitals), capital_relation or relation, capital_frequency)


# --- format ---------------------------------------------------------------------------
_BULLET = re.compile(r"^[ \t]*[*-][ \t]+\S", re.MULTILINE)
_HIGHLIGHT = re.compile(r"\*{1,2}([^\n*]+)\*{1,2}")
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]+\]")
_TITLE = re.compile(r"<<([^\n<>]+)>>")


def number_bullet_lists(response: str, num_bullets: int) -> bool:
    return len(_BULLET.findall(response)) == num_bullets


def multiple_sections(response: str, num_sections: int, section_spliter: str = "SECTION") -> bool:
    markers = re.findall(rf"^[ \t#*]*{re.escape(section_spliter)}[ \t]+\d+", response,
                         re.MULTILINE)
    return len(markers) == num_sections


def title(response: str) -> bool:
    return any(t.strip() for t in _TITLE.findall(response))


def number_highlighted_sections(response: str, num_highlights: int) -> bool:
    # Bullet markers ("* item") would pair with a later "*" and fake a highlight.
    text = _BULLET.sub(lambda m: m.group(0)[-1], response)
    found = [h for h in _HIGHLIGHT.findall(text) if h.strip()]
    return len(found) >= num_highlights


def number_placeholders(response: str, num_placeholders: int) -> bool:
    return len(_PLACEHOLDER.findall(response)) >= num_placeholders


def postscript(response: str, postscript_marker: str = "P.S.") -> bool:
    # "P.S." written as "P. S." or "p.s." still counts: the marker is what is checked.
    marker = r"\s*".join(re.escape(part) for part in postscript_marker.split())
    marker = marker.replace(r"\.", r"\.\s*")
    return re.search(rf"^\s*{marker}", response, re.MULTILINE | re.IGNORECASE) is not None


def strip_code_fence(text: str) -> str:
    """Remove one surrounding ``` or ```json fence: chat models add it unasked."""
    text = text.strip()
    match = re.fullmatch(r"```[\w-]*[ \t]*\n(.*)\n?```", text, re.DOTALL)
    return match.group(1).strip() if match else text


def json_format(response: str) -> bool:
    try:
        json.loads(strip_code_fence(response))
    except ValueError:
        return False
    return True


def no_comma(response: str) -> bool:
    return "," not in response and "，" not in response


def quotation(response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and text[0] in "\"“" and text[-1] in "\"”"


def two_responses(response: str) -> bool:
    parts = [p.strip() for p in response.split("******")]
    return len(parts) == 2 and all(parts) and parts[0] != parts[1]


# --- start and end --------------------------------------------------------------------
def end_checker(response: str, end_phrase: str) -> bool:
    text = response.strip().strip("\"“”").strip().lower()
    return text.endswith(end_phrase.strip().lower())


def first_word(response: str, first_word: str) -> bool:
    found = words(response)
    return bool(found) and found[0].lower() == first_word.lower()


def sentence_start_letter(response: str, letter: str) -> bool:
    sentences = split_sentences(response)
    starts = [next((c for c in s if c.isalpha()), None) for s in sentences]
    starts = [c for c in starts if c is not None]  # "***" or "42." have no letter
    return bool(starts) and all(c.lower() == letter.lower() for c in starts)


def repeat_prompt(response: str, prompt_to_repeat: str) -> bool:
    def squash(text: str) -> str:
        return " ".join(text.split()).lower()
    return squash(response).startswith(squash(prompt_to_repeat))
