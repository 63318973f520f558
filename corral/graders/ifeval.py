"""Verifiable instructions (IFEval style): registry, prompt rendering, sampling, grader.

`sample_instructions` + `describe` build procedural prompts; `IFEvalGrader` scores replies.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from corral.core.errors import CorralError
from corral.core.registry import Registry
from corral.graders import ifeval_checks as checks
from corral.graders.base import BaseGrader, Sample, Score


@dataclass(frozen=True)
class Instruction:
    """One instruction kind. `template` is str.format-ed with the kwargs (lists rendered
    as quoted, comma-separated words); `sample(rng)` draws kwargs for procedural prompts."""
    id: str
    template: str
    check: Callable[..., bool]
    example: dict
    sample: Callable[[random.Random], dict]
    conflicts: frozenset = field(default_factory=frozenset)


# Disjoint pools, so a sampled keyword is never also a forbidden word.
KEYWORDS = ("river", "lantern", "garden", "harvest", "compass", "library", "winter", "bridge",
            "orchestra", "signal", "meadow", "engine", "festival", "canvas", "harbor")
FORBIDDEN = ("very", "really", "basically", "thing", "stuff", "actually", "just", "good",
             "nice", "literally")
END_PHRASES = ("Is there anything else I can help with?", "Let me know if you have more questions.",
               "That is all for now.", "Any other questions?")
FIRST_WORDS = ("today", "imagine", "first", "sometimes", "honestly", "yes", "well")
LETTERS = "abcdeghilmnoprstw"  # common letters, so "at least N" needs no contortions


def _relation(rng: random.Random, *, exact: bool = True) -> str:
    return rng.choice(("at least", "at most", "exactly") if exact else ("at least", "at most"))


def _spec(id_, template, check, example, sample, conflicts=()):
    return Instruction(id_, template, check, example, sample, frozenset(conflicts))


_LOWER, _UPPER = "change_case:english_lowercase", "change_case:english_capital"
_CAPS, _REPEAT = "change_case:capital_word_frequency", "combination:repeat_prompt"
_TWO, _JSON = "combination:two_responses", "detectable_format:json_format"
_SECTIONS, _PARAS = "detectable_format:multiple_sections", "length_constraints:number_paragraphs"
_TITLE, _FIRST = "detectable_format:title", "startend:first_word"
_LETTER, _END = "detectable_format:sentence_start_letter", "startend:end_checker"
_WORDS, _SENTS = "length_constraints:number_words", "length_constraints:number_sentences"
_BULLETS, _PS = "detectable_format:number_bullet_lists", "detectable_content:postscript"
_QUOTE, _COMMA = "startend:quotation", "punctuation:no_comma"
_FORBID = "keywords:forbidden_words"

_SPECS = [
    _spec(_WORDS, "Answer with {relation} {num_words} words.", checks.number_words,
          {"relation": "at least", "num_words": 5},
          lambda r: {"relation": _relation(r, exact=False),
                     "num_words": r.choice(range(50, 401, 25))},
          [_SENTS]),
    _spec(_SENTS, "Your response should contain {relation} {num_sentences} sentences.",
          checks.number_sentences, {"relation": "exactly", "num_sentences": 2},
          lambda r: {"relation": _relation(r), "num_sentences": r.randint(2, 10)}, [_WORDS]),
    _spec(_PARAS, "There should be exactly {num_paragraphs} paragraphs. Paragraphs are separated "
          "from each other by the markdown divider: ***", checks.number_paragraphs,
          {"num_paragraphs": 2}, lambda r: {"num_paragraphs": r.randint(2, 5)},
          [_SECTIONS, _BULLETS, _TWO]),
    _spec(_LETTER, "Every sentence of your response must start with the letter {letter}.",
          checks.sentence_start_letter, {"letter": "t"},
          lambda r: {"letter": r.choice("tswa")},
          [_SECTIONS, _FIRST, _REPEAT, _PS, _END, _TITLE, _BULLETS]),
    _spec("keywords:existence", "Include the keywords {keywords} in the response.",
          checks.keywords_existence, {"keywords": ["river", "lantern"]},
          lambda r: {"keywords": r.sample(KEYWORDS, r.randint(1, 3))}),
    _spec(_FORBID, "Do not include the words {forbidden_words} in the response.",
          checks.forbidden_words, {"forbidden_words": ["very", "really"]},
          lambda r: {"forbidden_words": r.sample(FORBIDDEN, r.randint(1, 3))}, [_REPEAT]),
    _spec("keywords:frequency", "In your response, the word {keyword} should appear "
          "{relation} {frequency} times.", checks.keyword_frequency,
          {"keyword": "river", "frequency": 2, "relation": "at least"},
          lambda r: {"keyword": r.choice(KEYWORDS), "frequency": r.randint(2, 4),
                     "relation": "at least"}),
    _spec("keywords:letter_frequency", "In your response, the letter {letter} should appear "
          "{relation} {let_frequency} times.", checks.letter_frequency,
          {"letter": "z", "let_frequency": 3, "relation": "at least"},
          lambda r: {"letter": r.choice(LETTERS), "let_frequency": r.randint(3, 12),
                     "relation": "at least"}),
    _spec(_LOWER, "Your entire response should be in English, and in all lowercase letters. "
          "No capital letters are allowed.", checks.english_lowercase, {}, lambda r: {},
          [_UPPER, _CAPS, _REPEAT, _SECTIONS, _PS, _END]),
    _spec(_UPPER, "Your entire response should be in English, and in all capital letters.",
          checks.english_capital, {}, lambda r: {}, [_LOWER, _CAPS, _REPEAT]),
    _spec(_CAPS, "In your response, words with all capital letters should appear {relation} "
          "{capital_frequency} times.", checks.capital_word_frequency,
          {"relation": "at least", "capital_frequency": 2},
          lambda r: {"relation": _relation(r, exact=False), "capital_frequency": r.randint(2, 10)},
          [_LOWER, _UPPER]),
    _spec(_BULLETS, "Your answer must contain exactly {num_bullets} bullet points. Use markdown "
          "bullet points such as:\n* This is point 1.\n* This is point 2",
          checks.number_bullet_lists, {"num_bullets": 2},
          lambda r: {"num_bullets": r.randint(2, 6)}, [_PARAS, _LETTER]),
    _spec(_SECTIONS, "Your response must have exactly {num_sections} sections. Mark the beginning "
          "of each section with {section_spliter} X, such as: {section_spliter} 1",
          checks.multiple_sections, {"num_sections": 2, "section_spliter": "SECTION"},
          lambda r: {"num_sections": r.randint(2, 5),
                     "section_spliter": r.choice(["SECTION", "PART"])},
          [_PARAS, _LOWER, _LETTER, _FIRST, _TWO]),
    _spec(_TITLE, "Your answer must contain a title, wrapped in double angular brackets, such as "
          "<<poem of joy>>.", checks.title, {}, lambda r: {}, [_LETTER, _FIRST]),
    _spec(_END, "Finish your response with this exact phrase: \"{end_phrase}\" No other words "
          "should follow this phrase.", checks.end_checker, {"end_phrase": "Any other questions?"},
          lambda r: {"end_phrase": r.choice(END_PHRASES)}, [_PS, _LOWER, _LETTER]),
    _spec(_JSON, "Entire output should be wrapped in JSON format. You can use markdown ticks "
          "such as ```.", checks.json_format, {}, lambda r: {}),
    _spec(_COMMA, "In your entire response, refrain from the use of any commas.", checks.no_comma,
          {}, lambda r: {}, [_REPEAT]),
    _spec(_QUOTE, "Wrap your entire response with double quotation marks.", checks.quotation, {},
          lambda r: {}, [_TWO, _REPEAT]),
    _spec("detectable_content:number_placeholders", "The response must contain at least "
          "{num_placeholders} placeholders represented by square brackets, such as [address].",
          checks.number_placeholders, {"num_placeholders": 2},
          lambda r: {"num_placeholders": r.randint(1, 4)}),
    _spec(_PS, "At the end of your response, please explicitly add a postscript starting with "
          "{postscript_marker}", checks.postscript, {"postscript_marker": "P.S."},
          lambda r: {"postscript_marker": r.choice(["P.S.", "P.P.S."])}, [_END, _LOWER, _LETTER]),
    _spec("detectable_format:number_highlighted_sections", "Highlight at least {num_highlights} "
          "sections in your answer with markdown, i.e. *highlighted section*.",
          checks.number_highlighted_sections, {"num_highlights": 2},
          lambda r: {"num_highlights": r.randint(1, 4)}),
    _spec(_FIRST, "The very first word of your response should be \"{first_word}\".",
          checks.first_word, {"first_word": "today"},
          lambda r: {"first_word": r.choice(FIRST_WORDS)}, [_TITLE, _SECTIONS, _REPEAT, _LETTER]),
    _spec(_REPEAT, "First repeat the request above word for word without change, then give your "
          "answer (do not say anything before repeating the request; the request to repeat does "
          "not include this sentence).", checks.repeat_prompt,
          {"prompt_to_repeat": "Write a haiku about rain."},
          lambda r: {"prompt_to_repeat": ""},  # filled in by sample_instructions
          [_LOWER, _UPPER, _QUOTE, _TWO, _FIRST, _LETTER, _COMMA, _FORBID]),
    _spec(_TWO, "Give two different responses. Responses and only responses should be separated "
          "by 6 asterisk symbols: ******.", checks.two_responses, {}, lambda r: {},
          # Counts and start/end positions would be ambiguous across two responses.
          [_QUOTE, _REPEAT, _PARAS, _SECTIONS, _BULLETS, _WORDS, _SENTS, _END, _FIRST, _PS]),
]

# JSON output leaves no room for layout instructions; only these combine with it.
_JSON_COMPATIBLE = {"keywords:existence", _FORBID, "keywords:frequency",
                    "keywords:letter_frequency", _LOWER, _UPPER, _WORDS}


def _build_registry(specs: list[Instruction]) -> dict[str, Instruction]:
    ids = {s.id for s in specs}
    conflicts = {s.id: set(s.conflicts) for s in specs}
    conflicts[_JSON] |= ids - _JSON_COMPATIBLE - {_JSON}
    for a in list(conflicts):  # a conflict is symmetric, whichever side declared it
        for b in conflicts[a]:
            conflicts[b].add(a)
    return {s.id: Instruction(s.id, s.template, s.check, s.example, s.sample,
                              frozenset(conflicts[s.id])) for s in specs}


INSTRUCTIONS: dict[str, Instruction] = _build_registry(_SPECS)


def _lookup() -> Registry:
    """INSTRUCTIONS behind the plug-in lookup with did-you-mean."""
    registry = Registry("instruction id")
    for instruction_id, instruction in INSTRUCTIONS.items():
        registry.add(instruction_id, instruction)
    return registry


_LOOKUP = _lookup()


def get_instruction(instruction_id: str) -> Instruction:
    return _LOOKUP.get(instruction_id)


def sample_instructions(rng: random.Random, k: int, prompt: str | None = None) -> list[dict]:
    """Pick 1..k mutually compatible instructions with random kwargs, reproducibly from rng.
    `combination:repeat_prompt` is only picked when the request text `prompt` is given."""
    if k < 1:
        raise CorralError(f"ifeval: number of instructions must be >= 1, got {k}.")
    candidates = sorted(i for i in INSTRUCTIONS if prompt is not None or i != _REPEAT)
    chosen: list[str] = []
    for _ in range(rng.randint(1, k)):
        allowed = [i for i in candidates
                   if i not in chosen and not INSTRUCTIONS[i].conflicts & set(chosen)]
        if not allowed:
            break
        chosen.append(rng.choice(allowed))
    out = []
    for instruction_id in chosen:
        kwargs = INSTRUCTIONS[instruction_id].sample(rng)
        if instruction_id == _REPEAT:
            kwargs = {"prompt_to_repeat": prompt}
        out.append({"id": instruction_id, "kwargs": kwargs})
    return out


def _render(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(f'"{v}"' for v in value)
    return str(value)


def _unpack(inst) -> tuple[Instruction, dict]:
    """(spec, kwargs) of one `{"id": ..., "kwargs": {...}}`. None-valued kwargs are dropped:
    the Hugging Face copy of IFEval stores every kwarg name, null where unused."""
    if not isinstance(inst, dict) or "id" not in inst:
        raise CorralError(f"ifeval: an instruction is a {{'id': ..., 'kwargs': {{...}}}} "
                          f"object, got {inst!r}.")
    kwargs = {k: v for k, v in (inst.get("kwargs") or {}).items() if v is not None}
    return get_instruction(inst["id"]), kwargs


def describe(instructions: list[dict]) -> str:
    """The instruction text to append to a request, one instruction per line."""
    lines = []
    for inst in instructions:
        spec, kwargs = _unpack(inst)
        kwargs = {k: _render(v) for k, v in kwargs.items()}
        try:
            lines.append(spec.template.format(**kwargs))
        except KeyError as exc:
            raise CorralError(f"ifeval instruction {spec.id!r} needs kwarg {exc}; "
                              f"example: {spec.example}.") from None
    return "\n".join(lines)


def _loose_variants(response: str) -> list[str]:
    """IFEval's loose mode: also try without the first/last line and without '*' markup,
    forgiving a chatty preamble ("Sure, here it is:") or a sign-off."""
    lines = response.split("\n")
    cuts = [response, "\n".join(lines[1:]), "\n".join(lines[:-1]), "\n".join(lines[1:-1])]
    return cuts + [c.replace("*", "") for c in cuts]


class IFEvalGrader(BaseGrader):
    """Score = fraction of `item["instructions"]` followed; `passed` = all were followed."""
    name = "ifeval"

    def __init__(self, loose: bool = False, field: str = "instructions"):
        self.loose = loose
        self.field = field

    def grade(self, item: dict, sample: Sample) -> Score:
        instructions = item.get(self.field)
        if not instructions:
            raise CorralError(f"ifeval grader: the item has no {self.field!r} list; give it a "
                              f"list of {{'id': ..., 'kwargs': {{...}}}}.")
        results = []
        for inst in instructions:
            spec, kwargs = _unpack(inst)
            results.append({"id": spec.id,
                            "followed": self._follows(sample.output_text, spec, kwargs)})
        followed = sum(r["followed"] for r in results)
        return Score(value=followed / len(results), passed=followed == len(results),
                     details={"instructions": results})

    def _follows(self, response: str, spec: Instruction, kwargs: dict) -> bool:
        variants = _loose_variants(response) if self.loose else [response]
        try:
            # As in IFEval, an empty reply follows nothing (it would pass "no commas" etc.).
            return any(v.strip() and spec.check(v, **kwargs) for v in variants)
        except (TypeError, ValueError) as exc:
            raise CorralError(f"ifeval instruction {spec.id!r}: bad kwargs {sorted(kwargs)} "
                              f"({exc}); example: {spec.example}.") from None
