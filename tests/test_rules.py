"""Rule graders: number extraction, math equivalence, regex, JSON schema, registry."""
import sys
from fractions import Fraction

import pytest

from corral.core.errors import CorralError
from corral.graders.base import Sample, Score
from corral.graders.jsonschema_subset import check_schema_subset, subset_schema_errors
from corral.graders.rules import (
    RULE_GRADERS,
    MathEquivalence,
    NumericAnswer,
    extract_number,
    format_number,
    make_rule_grader,
    numbers_equal,
)


@pytest.mark.parametrize("text,expected", [
    ("Natalia sold 48/2 = 24 clips in May.\nAltogether 48+24 = 72.\n#### 72", "72"),
    ("#### 1,234", "1234"),
    ("She earns $18 per hour.", "18"),
    ("It costs 18 dollars.", "18"),
    ("They walked 5 km.", "5"),
    ("Total: -$3,000.00", "-3000"),
    ("The result is 18.0", "18"),
    ("3.50", "3.5"),
    ("+7", "7"),
    ("The temperature is -3.5 degrees.", "-3.5"),
    ("price −4", "-4"),  # Unicode minus
    ("The answer is 1/4", "0.25"),
    ("ratio 1/3", "1/3"),
    ("It rose by 25%", "25"),
    (".5 cups", "0.5"),
    ("x is 2. The answer is 42 apples. Then 7 more.", "42"),
    ("Final Answer: **$1,234**", "1234"),
    ("answer: -12", "-12"),
    ("The answer is below.\n\nIt is 9", "9"),
    ("So $\\boxed{\\frac{1}{4}}$.", "0.25"),
    ("\\boxed{1{,}234} and later 5", "1234"),
    ("\\boxed{-\\frac{3}{2}}", "-1.5"),
    ("it takes 5-7 days", "7"),  # a range, not minus seven
    ("1/0 then 9", "9"),
    ("No number here.", None),
    ("", None),
    (None, None),
    ("日本語 ５ items 12", "12"),
])
def test_extract_number(text, expected):
    assert extract_number(text) == expected


@pytest.mark.parametrize("a,b,equal", [
    ("1/4", "0.25", True), ("0.3333333", "1/3", True), (18, "18.0", True), ("1,000", 1000, True),
    ("1e-7", "2e-7", False), ("3", "4", False), ("abc", "abc", False), (0.1 + 0.2, "0.3", True),
    ("-0", "0", True), (True, 1, False),
])
def test_numbers_equal(a, b, equal):
    assert numbers_equal(a, b) is equal


@pytest.mark.parametrize("value,text", [
    (Fraction(18), "18"), (Fraction(-7, 2), "-3.5"), (Fraction(1, 4), "0.25"),
    (Fraction(1, 3), "1/3"), (Fraction(1800), "1800"), (Fraction(0), "0"),
])
def test_format_number(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize("reference,output,value", [
    ("Janet has 3 + 4 = 7 eggs.\n#### 7", "She has 7 eggs.", 1.0),
    ("#### 1,200", "The answer is $1200.00", 1.0),
    (72, "#### 72", 1.0),
    ("0.25", "\\boxed{\\frac{1}{4}}", 1.0),
    ("#### 7", "7 eggs, no wait, 8", 0.0),
    ("#### 7", "", 0.0),
])
def test_numeric_answer(reference, output, value):
    score = NumericAnswer().grade({"answer": reference}, Sample.of(output))
    assert score.value == value and score.passed is (value == 1.0)
    assert score.answer == score.details["extracted"] == extract_number(output)


def test_numeric_answer_errors():
    with pytest.raises(CorralError, match="answer_field"):
        NumericAnswer().grade({"solution": "5"}, Sample.of("5"))
    with pytest.raises(CorralError, match="no number"):
        NumericAnswer().grade({"answer": "Paris"}, Sample.of("5"))
    assert NumericAnswer("target").grade({"target": "5"}, Sample.of("5")).value == 1.0


@pytest.mark.parametrize("reference,output,value,method", [
    ("\\frac{1}{2}", "The answer is $\\boxed{0.5}$", 1.0, "math-verify"),
    ("x^2+2x+1", "$\\boxed{(x+1)^2}$", 1.0, "math-verify"),
    ("x^2+2x+1", "$\\boxed{(x+2)^2}$", 0.0, "math-verify"),
    ("\\sqrt{2}", "\\boxed{\\sqrt 2}", 1.0, "math-verify"),
    ("#### 72", "so 72", 1.0, "math-verify"),
    ("3", "no answer given", 0.0, "numeric"),
])
def test_math_equivalence(reference, output, value, method):
    pytest.importorskip("math_verify")
    score = MathEquivalence().grade({"answer": reference}, Sample.of(output))
    assert score.value == value and score.details["method"] == method


def test_math_equivalence_votes_on_canonical_numbers():
    pytest.importorskip("math_verify")
    grader = MathEquivalence()
    answers = {grader.grade({"answer": "1/2"}, Sample.of(t)).answer
               for t in ("$\\boxed{0.5}$", "$\\boxed{\\frac{1}{2}}$", "0.50")}
    assert answers == {"0.5"}


def test_math_equivalence_without_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # import now raises ImportError
    with pytest.raises(CorralError, match="pip install math-verify"):
        MathEquivalence()


@pytest.mark.parametrize("kwargs,item,output,value", [
    ({"pattern": r"\d{3}"}, {}, "code 123!", 1.0),
    ({"pattern": r"\d{3}", "fullmatch": True}, {}, "code 123!", 0.0),
    ({"pattern": r"yes|no", "fullmatch": True, "flags": "i"}, {}, " YES\n", 1.0),
    ({"field": "re"}, {"re": "^A"}, "Apple", 1.0),
    ({"field": "re"}, {"re": "^A"}, "Banana", 0.0),
])
def test_regex(kwargs, item, output, value):
    assert make_rule_grader("regex", **kwargs).grade(item, Sample.of(output)).value == value


@pytest.mark.parametrize("kwargs,message", [
    ({}, "exactly one"), ({"pattern": "(", }, "invalid pattern"),
    ({"pattern": "a", "flags": "q"}, "flag"), ({"pattern": "a", "field": "b"}, "exactly one"),
])
def test_regex_errors(kwargs, message):
    with pytest.raises(CorralError, match=message):
        make_rule_grader("regex", **kwargs)


@pytest.mark.parametrize("output,value", [
    ('{"a": 1}', 1.0), ('```json\n[1, 2]\n```', 1.0), ("null", 1.0), ("{a: 1}", 0.0), ("", 0.0),
])
def test_json_valid(output, value):
    assert make_rule_grader("json_valid").grade({}, Sample.of(output)).value == value


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
        "id": {"anyOf": [{"type": "string", "pattern": "^x"}, {"type": "integer"}]},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("value,n_errors", [
    ({"name": "Ann", "age": 30}, 0),
    ({"name": "Ann", "age": 30.0, "tags": ["a", "b"], "id": "x1"}, 0),
    ({"name": "Ann", "age": 30, "id": 5}, 0),
    ({"name": "Ann"}, 1),  # missing age
    ({"name": "", "age": 30}, 1),  # minLength
    ({"name": "Ann", "age": -1}, 1),  # minimum
    ({"name": "Ann", "age": 151}, 1),  # maximum
    ({"name": "Ann", "age": 1.5}, 1),  # not an integer
    ({"name": "Ann", "age": True}, 1),  # a boolean is not an integer
    ({"name": "Ann", "age": 3, "tags": ["c"]}, 1),  # enum inside items
    ({"name": "Ann", "age": 3, "id": "y"}, 1),  # anyOf
    ({"name": "Ann", "age": 3, "extra": 1}, 1),  # additionalProperties false
    ({"name": "Anne-Marie Smith", "age": 3}, 1),  # maxLength
    ([], 1),  # wrong type
])
def test_schema_subset(value, n_errors):
    assert len(subset_schema_errors(value, PERSON)) == n_errors


def test_schema_subset_rejects_what_it_cannot_check():
    with pytest.raises(CorralError, match="jsonschema"):
        check_schema_subset({"type": "object", "properties": {"a": {"format": "email"}}})
    with pytest.raises(CorralError, match="unknown type"):
        check_schema_subset({"type": "float"})
    check_schema_subset(PERSON)


@pytest.mark.parametrize("kwargs,item,output,value", [
    ({"schema": PERSON}, {}, '{"name": "Ann", "age": 30}', 1.0),
    ({"schema": PERSON}, {}, '{"name": "Ann"}', 0.0),
    ({"schema": '{"type": "array", "maxItems": 1}'}, {}, "```\n[1]\n```", 1.0),
    ({"field": "schema"}, {"schema": {"type": "string"}}, '"hi"', 1.0),
    ({"field": "schema"}, {"schema": {"type": "string"}}, "not json", 0.0),
])
def test_json_schema_grader(kwargs, item, output, value):
    score = make_rule_grader("json_schema", **kwargs).grade(item, Sample.of(output))
    assert score.value == value and (score.value == 1.0) == (not score.details["errors"])


@pytest.mark.parametrize("name,kwargs,item,output,value", [
    ("exact", {}, {"answer": "Paris"}, "  paris. ", 1.0),
    ("exact", {"normalize": False}, {"answer": "Paris"}, "paris", 0.0),
    ("exact", {}, {"answer": ["NYC", "New York"]}, "new  york", 1.0),
    ("exact", {}, {"answer": "Ｐａｒｉｓ"}, "Paris", 1.0),  # NFKC
    ("contains", {"substring": "Paris"}, {}, "It is PARIS.", 1.0),
    ("contains", {"substring": "Paris", "ignore_case": False}, {}, "It is PARIS.", 0.0),
    ("contains", {"field": "city"}, {"city": ["Rome", "Paris"]}, "to paris", 1.0),
    ("contains", {"field": "city"}, {"city": "Rome"}, "", 0.0),
])
def test_exact_and_contains(name, kwargs, item, output, value):
    assert make_rule_grader(name, **kwargs).grade(item, Sample.of(output)).value == value


# name -> (kwargs, item, a passing output); every registered grader must appear here.
EXAMPLES = {
    "numeric": ({}, {"answer": "#### 18"}, "The answer is $18."),
    "math": ({}, {"answer": "\\frac{1}{2}"}, "$\\boxed{0.5}$"),
    "regex": ({"pattern": "^yes$", "fullmatch": True}, {}, "yes"),
    "json_valid": ({}, {}, '{"ok": true}'),
    "json_schema": ({"schema": {"type": "object", "required": ["ok"]}}, {}, '{"ok": 1}'),
    "exact": ({}, {"answer": "Paris"}, "Paris"),
    "contains": ({"substring": "cat"}, {}, "a cat"),
    "ifeval": ({}, {"instructions": [{"id": "punctuation:no_comma", "kwargs": {}}]}, "no commas"),
}


def test_every_rule_grader_has_an_example():
    assert set(EXAMPLES) == set(RULE_GRADERS)


@pytest.mark.parametrize("name", sorted(RULE_GRADERS))
def test_conformance(name):
    if name == "math":
        pytest.importorskip("math_verify")
    kwargs, item, good = EXAMPLES[name]
    grader = make_rule_grader(name, **kwargs)
    assert grader.name == name
    for text in (good, "", "Ünïcödé ✓ 日本語, 42", "x" * 5000):
        score = grader.grade(item, Sample.of(text))
        assert isinstance(score, Score) and 0.0 <= score.value <= 1.0
    assert grader.grade(item, Sample.of(good)).value == 1.0
    batch = grader.grade_batch([(item, Sample.of(good)), (item, Sample.of(""))])
    assert [s.value for s in batch] == [1.0, 0.0]


@pytest.mark.parametrize("name,kwargs,message", [
    ("numric", {}, "did you mean 'numeric'"),
    ("zzz", {}, "choose from"),
    ("exact", {"feild": "a"}, "no option 'feild'"),
    ("json_valid", {"x": 1}, "no options"),
])
def test_make_rule_grader_errors(name, kwargs, message):
    with pytest.raises(CorralError, match=message):
        make_rule_grader(name, **kwargs)
