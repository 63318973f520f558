"""IFEval-style instructions: every checker passes and fails, splitter, sampler, grader."""
import itertools
import random

import pytest

from corral.core.errors import CorralError
from corral.graders.base import Sample, Score
from corral.graders.ifeval import INSTRUCTIONS, IFEvalGrader, describe, sample_instructions
from corral.graders.text import count_words, split_paragraphs, split_sentences

# id -> (kwargs, a response that follows it, a response that does not)
CASES = {
    "length_constraints:number_words": [
        ({"relation": "at least", "num_words": 5}, "one two three four five", "one two three"),
        ({"relation": "at most", "num_words": 3}, "don't stop now", "one two three four"),
        ({"relation": "exactly", "num_words": 2}, "well-known 3.5", "a b c"),
    ],
    "length_constraints:number_sentences": [
        ({"relation": "exactly", "num_sentences": 2}, "Dr. Who came. He left.", "One. Two. Three."),
        ({"relation": "at most", "num_sentences": 1}, "It is 3.5 m long.", "Hi. Bye."),
        ({"relation": "less than", "num_sentences": 2}, "Only one.", "One. Two."),
    ],
    "length_constraints:number_paragraphs": [
        ({"num_paragraphs": 2}, "First part.\n***\nSecond part.", "Just one paragraph."),
        ({"num_paragraphs": 3}, "a\n\nb\n\n\nc", "a\n\nb"),
    ],
    "detectable_format:sentence_start_letter": [
        ({"letter": "t"}, "Tom ran. Then he slept! \"Truly?\"", "Tom ran. He slept."),
    ],
    "keywords:existence": [
        ({"keywords": ["river", "lantern"]}, "A Lantern by the river.",
         "A lantern by the riverbank."),
    ],
    "keywords:forbidden_words": [
        ({"forbidden_words": ["very", "really"]}, "Everything is fine.", "It is Very fine."),
    ],
    "keywords:frequency": [
        ({"keyword": "river", "frequency": 2}, "River to river.", "One river."),
        ({"keyword": "river", "frequency": 2, "relation": "less than"}, "One river.",
         "river river"),
    ],
    "keywords:letter_frequency": [
        ({"letter": "z", "let_frequency": 3}, "Zebras zigzag lazily.", "Zebras run."),
        ({"letter": "z", "let_frequency": 2, "let_relation": "less than"}, "Zoo.", "Zz."),
    ],
    "change_case:english_lowercase": [({}, "all lower, café.", "Not lower.")],
    "change_case:english_capital": [({}, "ALL CAPS, CAFÉ!", "ALL CAPS but one.")],
    "change_case:capital_word_frequency": [
        ({"relation": "at least", "capital_frequency": 2}, "This is VERY VERY loud.",
         "I am A cat."),
        ({"relation": "at most", "capital_frequency": 1}, "Only ONE here.", "TWO BIG words."),
        ({"capital_relation": "less than", "capital_frequency": 2}, "ONE.", "TWO BIG."),
    ],
    "detectable_format:number_bullet_lists": [
        ({"num_bullets": 2}, "Intro:\n* one\n- two\n***\nend", "* one\n* two\n* three"),
    ],
    "detectable_format:multiple_sections": [
        ({"num_sections": 2}, "SECTION 1\nHello.\nSECTION 2\nBye.", "SECTION 1\nHello."),
        ({"num_sections": 2, "section_spliter": "PART"}, "PART 1 a\nPART 2 b",
         "Section 1\nSection 2"),
    ],
    "detectable_format:title": [({}, "<<My Poem>>\nRoses.", "<< >> no title, <<\nbroken>>")],
    "startend:end_checker": [
        ({"end_phrase": "Any other questions?"}, "Done. Any other questions?\n",
         "Any other questions? Yes."),
        ({"end_phrase": "That is all"}, "\"Good. That is all\"", "That is all folks"),
    ],
    "detectable_format:json_format": [
        ({}, '```json\n{"a": [1, 2]}\n```', "{'a': 1}"),
        ({}, '  {"a": 1}  ', "Here is JSON: {\"a\": 1}"),
    ],
    "punctuation:no_comma": [({}, "No commas here.", "Well, yes."), ({}, "ok", "中文，逗号")],
    "startend:quotation": [({}, ' "Quoted answer." ', '"Half quoted.'), ({}, "“curly”", '"')],
    "detectable_content:number_placeholders": [
        ({"num_placeholders": 2}, "Dear [name], at [address].", "Dear [name], at []."),
    ],
    "detectable_content:postscript": [
        ({"postscript_marker": "P.S."}, "Hello.\n\nP.S. Bring cake.", "Hello. P.S. inline."),
        ({"postscript_marker": "P.P.S."}, "Hi.\nP. P. S. later", "Hi.\nP.S. later"),
    ],
    "detectable_format:number_highlighted_sections": [
        ({"num_highlights": 2}, "*first* and **second**", "* bullet one\n* bullet *two"),
    ],
    "startend:first_word": [
        ({"first_word": "today"}, "\"Today, we go.", "Yesterday today."),
    ],
    "combination:repeat_prompt": [
        ({"prompt_to_repeat": "Write a haiku about rain."},
         "Write a  haiku about rain.\nDrops fall...", "Sure! Write a haiku about rain."),
    ],
    "combination:two_responses": [
        ({}, "First answer.\n******\nSecond answer.", "Same.\n******\nSame."),
        ({}, "A\n******\nB", "A ****** B ****** C"),
    ],
}


def _rows():
    for instruction_id, cases in CASES.items():
        for kwargs, good, bad in cases:
            yield pytest.param(instruction_id, kwargs, good, bad, id=instruction_id)


def test_every_instruction_has_cases_and_twenty_kinds():
    assert set(CASES) == set(INSTRUCTIONS)
    assert len(INSTRUCTIONS) >= 20


@pytest.mark.parametrize("instruction_id,kwargs,good,bad", list(_rows()))
def test_check_passes_and_fails(instruction_id, kwargs, good, bad):
    check = INSTRUCTIONS[instruction_id].check
    assert check(good, **kwargs) is True
    assert check(bad, **kwargs) is False


@pytest.mark.parametrize("instruction_id", sorted(INSTRUCTIONS))
def test_conformance_example_kwargs_render_and_grade(instruction_id):
    spec = INSTRUCTIONS[instruction_id]
    inst = [{"id": instruction_id, "kwargs": spec.example}]
    assert describe(inst).strip()
    for text in ("", "Plain text.", "日本語の文です。ÉTÉ — naïve café!"):  # empty and Unicode
        score = IFEvalGrader().grade({"instructions": inst}, Sample.of(text))
        assert isinstance(score, Score) and 0.0 <= score.value <= 1.0
        assert score.passed == (score.value == 1.0)
        if not text:
            assert score.value == 0.0


@pytest.mark.parametrize("text,expected", [
    ("Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
    ("It costs 3.5 dollars. Cheap!", ["It costs 3.5 dollars.", "Cheap!"]),
    ("Use fruit, e.g. apples, i.e. food. Done?", ["Use fruit, e.g. apples, i.e. food.", "Done?"]),
    ("Wait... what? Yes... Then we left.", ["Wait... what?", "Yes...", "Then we left."]),
    ("J. K. Rowling wrote it. See No. 5 here.", ["J. K. Rowling wrote it.", "See No. 5 here."]),
    ("I said no. Fine.", ["I said no.", "Fine."]),
    ('He said "Hi." Then left.', ['He said "Hi."', "Then left."]),
    ("<<Title>>\n* one\n* two", ["<<Title>>", "* one", "* two"]),
    ("日本語です。次の文！", ["日本語です。", "次の文！"]),
    ("tom ran. then he slept, e.g. soundly.", ["tom ran.", "then he slept, e.g. soundly."]),
    ("TOM MET DR. WHO. THEN LEFT.", ["TOM MET DR. WHO.", "THEN LEFT."]),
    ("", []),
    ("   \n\n ", []),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize("text,n", [
    ("", 0), ("don't stop", 2), ("well-known fact", 2), ("pi is 3.14", 3), ("1,234 apples", 2),
    ("naïve café", 2), ("— * ***", 0),
])
def test_count_words(text, n):
    assert count_words(text) == n


def test_split_paragraphs():
    assert split_paragraphs("a\n\nb\n***\nc\n \n\n d ") == ["a", "b", "c", "d"]
    assert split_paragraphs("") == []


def _conflicting_pairs(instructions):
    ids = [i["id"] for i in instructions]
    return [(a, b) for a, b in itertools.combinations(ids, 2)
            if b in INSTRUCTIONS[a].conflicts or a == b]


def test_conflicts_are_symmetric():
    for spec in INSTRUCTIONS.values():
        for other in spec.conflicts:
            assert spec.id in INSTRUCTIONS[other].conflicts
    assert "change_case:english_capital" in INSTRUCTIONS["change_case:english_lowercase"].conflicts
    assert "detectable_format:number_bullet_lists" in INSTRUCTIONS[
        "detectable_format:json_format"].conflicts


def test_sample_instructions_compatible_and_reproducible():
    for seed in range(300):
        prompt = "Describe a river." if seed % 2 else None
        picked = sample_instructions(random.Random(seed), 5, prompt=prompt)
        assert 1 <= len(picked) <= 5
        assert not _conflicting_pairs(picked)
        assert picked == sample_instructions(random.Random(seed), 5, prompt=prompt)
        for inst in picked:
            if inst["id"] == "combination:repeat_prompt":
                assert inst["kwargs"] == {"prompt_to_repeat": prompt}
        assert describe(picked) == "\n".join(describe([inst]) for inst in picked)
    seen = {i["id"] for s in range(300) for i in sample_instructions(random.Random(s), 3, "p")}
    assert seen == set(INSTRUCTIONS)  # every kind is reachable


def test_sample_without_prompt_never_repeats_prompt_and_k_checked():
    for seed in range(100):
        ids = [i["id"] for i in sample_instructions(random.Random(seed), 4)]
        assert "combination:repeat_prompt" not in ids
    with pytest.raises(CorralError):
        sample_instructions(random.Random(0), 0)


def test_describe_renders_kwargs():
    text = describe([{"id": "keywords:existence", "kwargs": {"keywords": ["river", "bridge"]}},
                     {"id": "length_constraints:number_words",
                      "kwargs": {"relation": "at most", "num_words": 50}}])
    assert text == ('Include the keywords "river", "bridge" in the response.\n'
                    "Answer with at most 50 words.")


def test_grader_fraction_details_and_loose_mode():
    item = {"instructions": [
        {"id": "change_case:english_lowercase", "kwargs": {}},
        {"id": "keywords:existence", "kwargs": {"keywords": ["river"]}},
        {"id": "punctuation:no_comma", "kwargs": {}},
    ]}
    score = IFEvalGrader().grade(item, Sample.of("a calm river, flowing"))
    assert score.value == pytest.approx(2 / 3) and score.passed is False
    assert [r["followed"] for r in score.details["instructions"]] == [True, True, False]
    chatty = "Sure, here it is:\n**a calm river flowing**"
    assert IFEvalGrader().grade(item, Sample.of(chatty)).value < 1.0
    assert IFEvalGrader(loose=True).grade(item, Sample.of(chatty)).passed is True


def test_grader_accepts_hugging_face_ifeval_rows():
    """google/IFEval rows list every kwarg name with null values where unused."""
    item = {"instructions": [{"id": "keywords:letter_frequency", "kwargs": {
        "letter": "q", "let_frequency": 2, "let_relation": "at least", "num_words": None}}]}
    assert IFEvalGrader().grade(item, Sample.of("Quiet queens.")).passed is True


@pytest.mark.parametrize("item,message", [
    ({"instructions": ["keywords:existence"]}, "'id'"),
    ({}, "instructions"),
    ({"instructions": [{"id": "keywords:existance", "kwargs": {}}]}, "did you mean"),
    ({"instructions": [{"id": "keywords:existence", "kwargs": {}}]}, "example"),
    ({"instructions": [{"id": "length_constraints:number_words",
                        "kwargs": {"num_words": 3, "relation": "about"}}]}, "relation"),
])
def test_grader_errors_name_the_fix(item, message):
    with pytest.raises(CorralError, match=message):
        IFEvalGrader().grade(item, Sample.of("text"))
