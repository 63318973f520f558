"""Rule graders: numeric answers, math equivalence, regex, JSON, exact/contains, IFEval.

Standard library only; `math-verify` and `jsonschema` are imported lazily when present.
"""
from __future__ import annotations

import inspect
import json
import math
import re
import threading
import unicodedata
from decimal import Decimal
from fractions import Fraction

from corral.core.config import closest
from corral.core.errors import CorralError
from corral.graders.base import BaseGrader, Sample, Score
from corral.graders.ifeval import IFEvalGrader
from corral.graders.ifeval_checks import strip_code_fence
from corral.graders.jsonschema_subset import check_schema, schema_errors

# A sign only when glued to the number and not the minus of "5-3"; thousands commas; an
# optional "/den" for fractions. Exponents are not read: "2e" in prose is too common.
_NUMBER = re.compile(r"""
    (?:(?<![\w)\]])(?P<sign>[-+−]))?
    [$€£¥]?
    (?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|\d+(?:\.\d+)?|(?<![\d.])\.\d+)
    (?:[ \t]*/[ \t]*(?P<den>\d+)(?![\d.]))?
""", re.VERBOSE)
_LATEX_FRACTION = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*([\d.,]+)\s*\}")
_ANSWER_PHRASE = re.compile(r"\banswer\b(?:\s+is)?[\s:=*]*", re.IGNORECASE)


def _clean_latex(text: str) -> str:
    text = _LATEX_FRACTION.sub(r"\1/\2", text)
    for old, new in (("{,}", ","), ("\\!", ""), ("\\,", ""), ("\\$", "$"), ("\\%", "%")):
        text = text.replace(old, new)
    return text


def _to_fraction(match: re.Match) -> Fraction | None:
    value = Fraction(match.group("num").replace(",", ""))
    if match.group("den"):
        if int(match.group("den")) == 0:
            return None
        value /= int(match.group("den"))
    return -value if match.group("sign") in ("-", "−") else value


def format_number(value: Fraction) -> str:
    """Canonical text: "18", "-3.5", "0.25"; "1/3" when the decimal would not terminate."""
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _first_number(text: str) -> str | None:
    for match in _NUMBER.finditer(text):
        value = _to_fraction(match)
        if value is not None:
            return format_number(value)
    return None


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    return None


def extract_number(text) -> str | None:
    """The final numeric answer in model output, in canonical form (see `format_number`).

    Looks, in order, at: GSM8K's `#### n`, the last `\\boxed{n}`, the last "answer is n" /
    "answer: n", and otherwise the last number in the text. Commas, currency signs, units,
    trailing zeros, a leading + and % are dropped ("$1,234.50" -> "1234.5", "25%" -> "25")."""
    if text is None:
        return None
    text = _clean_latex(str(text))
    if "####" in text:
        found = _first_number(text.rsplit("####", 1)[1])
        if found is not None:
            return found
    boxed = _last_boxed(text)
    if boxed is not None and _first_number(boxed) is not None:
        return _first_number(boxed)
    for phrase in reversed(list(_ANSWER_PHRASE.finditer(text))):
        line = text[phrase.end():].split("\n", 1)[0]
        if _first_number(line) is not None:
            return _first_number(line)
    numbers = [_to_fraction(m) for m in _NUMBER.finditer(text)]
    numbers = [n for n in numbers if n is not None]
    return format_number(numbers[-1]) if numbers else None


def parse_number(value) -> Fraction | None:
    """A number from an int, float or a string holding one number ("1/4", "$1,200", "-3.5")."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return Fraction(value) if math.isfinite(value) else None
    match = _NUMBER.search(_clean_latex(str(value)))
    return _to_fraction(match) if match else None


def numbers_equal(a, b, rel_tol: float = 1e-6) -> bool:
    """Equal as numbers: exact for fractions and decimals, else within a relative tolerance."""
    x, y = parse_number(a), parse_number(b)
    if x is None or y is None:
        return False
    return x == y or math.isclose(float(x), float(y), rel_tol=rel_tol)


def _reference(item: dict, field: str) -> str:
    if field not in item:
        raise CorralError(f"item has no field {field!r} with the reference answer; add it or set "
                          f"the grader's answer_field.")
    text = str(item[field])
    return text.rsplit("####", 1)[1].strip() if "####" in text else text


class NumericAnswer(BaseGrader):
    """1.0 when the number extracted from the output equals the reference number."""
    name = "numeric"

    def __init__(self, answer_field: str = "answer"):
        self.answer_field = answer_field

    def reference(self, item: dict) -> str:
        number = extract_number(_reference(item, self.answer_field))
        if number is None:
            raise CorralError(f"item field {self.answer_field!r} = {item[self.answer_field]!r} "
                              f"holds no number; fix the data or use another grader.")
        return number

    def grade(self, item: dict, sample: Sample) -> Score:
        reference = self.reference(item)
        extracted = extract_number(sample.output_text)
        correct = extracted is not None and numbers_equal(extracted, reference)
        return Score(value=float(correct), passed=correct, answer=extracted,
                     details={"extracted": extracted, "reference": reference})


def _import_math_verify():
    try:
        import math_verify
    except ImportError:
        raise CorralError("the 'math' grader needs the math-verify package: "
                          "pip install math-verify") from None
    return math_verify


class MathEquivalence(BaseGrader):
    """Symbolic equivalence with math-verify (1/2 == 0.5 == \\frac{1}{2}); falls back to
    `NumericAnswer` when either side does not parse."""
    name = "math"

    def __init__(self, answer_field: str = "answer"):
        self.answer_field = answer_field
        self._math_verify = _import_math_verify()
        self._numeric = NumericAnswer(answer_field)

    def _parse(self, text: str, timeout: int | None) -> list:
        try:
            return self._math_verify.parse(text, parsing_timeout=timeout)
        except Exception:  # noqa: BLE001 - math-verify raises assorted sympy/antlr errors
            return []

    def grade(self, item: dict, sample: Sample) -> Score:
        # math-verify times out with SIGALRM, which only works in the main thread.
        timeout = 5 if threading.current_thread() is threading.main_thread() else None
        reference = _reference(item, self.answer_field)
        gold = self._parse(reference, timeout)
        if not gold and "$" not in reference:  # bare LaTeX (\sqrt{2}) parses only in $...$
            gold = self._parse(f"${reference}$", timeout)
        pred = self._parse(sample.output_text, timeout)
        if not gold or not pred:
            score = self._numeric.grade(item, sample)
            return Score(score.value, {**score.details, "method": "numeric"}, score.passed,
                         score.answer)
        try:
            correct = bool(self._math_verify.verify(gold, pred, timeout_seconds=timeout))
        except Exception:  # noqa: BLE001 - as in _parse: odd input is simply not equal
            correct = False
        # maj@k votes on sympy's canonical text, with numbers in our form: 1/2, 0.50 -> "0.5".
        answer = str(pred[0]).replace(" ", "")
        number = parse_number(answer) if _NUMBER.fullmatch(answer) else None
        answer = format_number(number) if number is not None else answer
        return Score(value=float(correct), passed=correct, answer=answer,
                     details={"extracted": answer, "reference": str(gold[-1]),
                              "method": "math-verify"})


_FLAG_LETTERS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


def _one_of(grader: str, **options) -> None:
    given = [k for k, v in options.items() if v is not None]
    if len(given) != 1:
        raise CorralError(f"the {grader!r} grader needs exactly one of "
                          f"{' or '.join(options)}, got {given or 'neither'}.")


def _item_field(item: dict, field: str, grader: str):
    if field not in item:
        raise CorralError(f"the {grader!r} grader reads item field {field!r}, which this item "
                          f"lacks; add it to the data.")
    return item[field]


class RegexMatch(BaseGrader):
    """1.0 when the output matches `pattern` (or the item's `field` pattern).
    Search mode by default; `fullmatch=True` requires the whole stripped output to match.
    `flags`: an int of re flags or letters from "imsx"."""
    name = "regex"

    def __init__(self, pattern: str | None = None, field: str | None = None,
                 flags: int | str = 0, fullmatch: bool = False):
        _one_of("regex", pattern=pattern, field=field)
        if isinstance(flags, str):
            unknown = set(flags) - set(_FLAG_LETTERS)
            if unknown:
                raise CorralError(f"regex grader: unknown flag letters {sorted(unknown)}; "
                                  f"use letters from 'imsx'.")
            flags = sum(_FLAG_LETTERS[c] for c in set(flags))
        self.pattern, self.field, self.flags, self.fullmatch = pattern, field, flags, fullmatch
        if pattern is not None:
            self._compile(pattern)

    def _compile(self, pattern: str) -> re.Pattern:
        try:
            return re.compile(pattern, self.flags)
        except re.error as exc:
            raise CorralError(f"regex grader: invalid pattern {pattern!r} ({exc}).") from None

    def grade(self, item: dict, sample: Sample) -> Score:
        pattern = self.pattern or str(_item_field(item, self.field, "regex"))
        regex = self._compile(pattern)
        text = sample.output_text
        match = regex.fullmatch(text.strip()) if self.fullmatch else regex.search(text)
        found = match.group(0) if match else None
        return Score(value=float(match is not None), passed=match is not None, answer=found,
                     details={"pattern": pattern, "match": found})


def _load_json(text: str):
    """(value, None) or (None, error message); a ```json fence around the output is allowed."""
    try:
        return json.loads(strip_code_fence(text)), None
    except ValueError as exc:
        return None, str(exc)


class JsonValid(BaseGrader):
    """1.0 when the output (optionally inside a ``` fence) parses as JSON."""
    name = "json_valid"

    def grade(self, item: dict, sample: Sample) -> Score:
        _, error = _load_json(sample.output_text)
        return Score(value=float(error is None), passed=error is None,
                     details={"error": error} if error else {})


class JsonSchema(BaseGrader):
    """1.0 when the output is JSON valid against `schema` (or the item's `field` schema).

    Uses the `jsonschema` package when installed; otherwise corral's subset validator
    (see `corral.graders.jsonschema_subset`), which rejects keywords it cannot check."""
    name = "json_schema"

    def __init__(self, schema: dict | str | None = None, field: str | None = None):
        _one_of("json_schema", schema=schema, field=field)
        self.field = field
        self.schema = _as_schema(schema) if schema is not None else None
        if self.schema is not None:
            check_schema(self.schema)  # reject a bad schema now, not mid-run

    def grade(self, item: dict, sample: Sample) -> Score:
        schema = self.schema
        if schema is None:
            schema = _as_schema(_item_field(item, self.field, "json_schema"))
            check_schema(schema)
        value, error = _load_json(sample.output_text)
        errors = [f"not JSON: {error}"] if error else schema_errors(value, schema)
        return Score(value=float(not errors), passed=not errors, details={"errors": errors[:10]})


def _as_schema(schema) -> dict | bool:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise CorralError(f"json_schema grader: the schema is not valid JSON ({exc}).") \
                from None
    if not isinstance(schema, (dict, bool)):
        raise CorralError(f"json_schema grader: a schema is a JSON object, got {schema!r}.")
    return schema


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split()).strip(" .\"'“”")


class ExactMatch(BaseGrader):
    """1.0 when the output equals item[field] (a list means any of them). With
    `normalize`, case, Unicode form, whitespace, surrounding quotes and a final period
    are ignored."""
    name = "exact"

    def __init__(self, field: str = "answer", normalize: bool = True):
        self.field, self.normalize = field, normalize

    def grade(self, item: dict, sample: Sample) -> Score:
        references = _item_field(item, self.field, "exact")
        references = references if isinstance(references, list) else [references]
        norm = _normalize if self.normalize else (lambda s: s)
        output = norm(sample.output_text)
        hit = any(output == norm(str(r)) for r in references)
        return Score(value=float(hit), passed=hit, answer=output,
                     details={"output": output, "references": [str(r) for r in references]})


class Contains(BaseGrader):
    """1.0 when the output contains `substring` or item[field] (a list means any of them)."""
    name = "contains"

    def __init__(self, substring: str | None = None, field: str | None = None,
                 ignore_case: bool = True):
        _one_of("contains", substring=substring, field=field)
        self.substring, self.field, self.ignore_case = substring, field, ignore_case

    def grade(self, item: dict, sample: Sample) -> Score:
        needles = self.substring if self.field is None else \
            _item_field(item, self.field, "contains")
        needles = [str(n) for n in (needles if isinstance(needles, list) else [needles])]
        fold = str.casefold if self.ignore_case else (lambda s: s)
        text = fold(sample.output_text)
        found = next((n for n in needles if fold(n) in text), None)
        return Score(value=float(found is not None), passed=found is not None,
                     details={"needles": needles, "found": found})


RULE_GRADERS: dict[str, type[BaseGrader]] = {
    "numeric": NumericAnswer,
    "math": MathEquivalence,
    "regex": RegexMatch,
    "json_valid": JsonValid,
    "json_schema": JsonSchema,
    "exact": ExactMatch,
    "contains": Contains,
    "ifeval": IFEvalGrader,
}


def make_rule_grader(name: str, **kwargs) -> BaseGrader:
    """Build a rule grader by registry name, e.g. make_rule_grader("regex", pattern="^A")."""
    if name not in RULE_GRADERS:
        close = closest(name, RULE_GRADERS)
        hint = f"did you mean {close!r}?" if close else f"choose from {sorted(RULE_GRADERS)}."
        raise CorralError(f"unknown rule grader {name!r}: {hint}")
    cls = RULE_GRADERS[name]
    accepted = list(inspect.signature(cls).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise CorralError(f"rule grader {name!r} has no option {unknown[0]!r}; "
                          f"it accepts {accepted or 'no options'}.")
    return cls(**kwargs)
