"""The judge's report card and RLAIF labels, on scripted judges whose biases are known, so
every number of the card can be derived by hand."""
import json
import re

import pytest

from corral.core.errors import CorralError
from corral.data.readers import load_feedback_records, load_preference_records
from corral.feedback.audit import audit, format_card
from corral.feedback.judge import Judge
from corral.feedback.label import label_pairs
from tests.test_feedback_judge import Scripted


def questions(n):
    return {f"q:{k}": [{"role": "user", "content": f"What is {k} + {k}?"}] for k in range(n)}


def graded(n):
    """Per question: one right short answer, one wrong short, one wrong long (3× longer)."""
    return {f"q:{k}": [{"text": f"#### {2 * k}", "passed": True},
                       {"text": f"#### {2 * k + 1}", "passed": False},
                       {"text": f"Let me think step by step. #### {2 * k + 7}", "passed": False}]
            for k in range(n)}


def right(text):
    a = int(re.search(r"What is (\d+)", text).group(1))
    return lambda answer: answer.strip().endswith(f"#### {2 * a}")


def oracle(conv):
    """Scores and compares by the truth; ties when both answers are equally right."""
    text = conv[0]["content"]
    ok = right(text)
    if "<response_a>" in text:
        a = text.split("<response_a>")[1].split("</response_a>")[0]
        b = text.split("<response_b>")[1].split("</response_b>")[0]
        return "[[A]]" if ok(a) and not ok(b) else "[[B]]" if ok(b) and not ok(a) else "[[C]]"
    answer = text.split("<response>")[1].split("</response>")[0]
    return "Score: 1" if ok(answer) else "Score: 0"


def test_an_oracle_judge_gets_a_perfect_card():
    card = audit(Judge(Scripted(oracle), rubric="correctness"), questions(6), graded(6))
    assert card["verification"]["balanced_accuracy"] == 1.0
    assert card["verification"]["accuracy"]["value"] == 1.0
    assert card["agreement"]["value"] == 1.0 and card["agreement"]["n"] == 12  # 1 right × 2
    assert card["swap_consistency"]["value"] == 1.0
    assert card["length_bias"]["n"] == 0  # it never picks between two wrong answers: ties
    assert card["generation_accuracy"]["value"] == pytest.approx(1 / 3)
    assert card["verifies_better_than_generates"] is True
    text = format_card(card)
    assert "agreement with the grader on right-vs-wrong pairs: 1.00" in text


def test_a_position_biased_judge_is_caught():
    def biased(conv):
        return "[[A]]" if "<response_a>" in conv[0]["content"] else "Score: 1"
    card = audit(Judge(Scripted(biased), rubric="correctness"), questions(6), graded(6))
    assert card["swap_consistency"]["value"] == 0.0
    assert card["position_bias"]["value"] == 1.0
    assert card["agreement"]["value"] == 0.0
    v = card["verification"]  # says pass to everything: all right pass, no wrong fails
    assert v["pass_recall"]["value"] == 1.0 and v["fail_recall"]["value"] == 0.0
    assert v["balanced_accuracy"] == 0.5


def test_length_bias_and_self_preference():
    def longer(conv):
        text = conv[0]["content"]
        if "<response_a>" not in text:
            return "Score: 1"
        a = text.split("<response_a>")[1].split("</response_a>")[0]
        b = text.split("<response_b>")[1].split("</response_b>")[0]
        return "[[A]]" if len(a) > len(b) else "[[B]]"
    padding = " (checked twice, carefully, and explained at great length)"
    other = {k: [{"text": v[1]["text"] + padding, "passed": False}]
             for k, v in graded(6).items()}
    card = audit(Judge(Scripted(longer)), questions(6), graded(6), other=other)
    assert card["length_bias"]["value"] == 1.0 and card["length_bias"]["n"] == 6
    assert card["self_preference"]["value"] == 0.0  # the other model's answers are longer


def test_audit_needs_graded_answers():
    with pytest.raises(CorralError, match="no graded answers"):
        audit(Judge(Scripted(oracle)), questions(2), {"q:0": [{"text": "x"}]})


def test_labels_keep_consistent_pairs_and_load_as_dpo_and_kto_rows(tmp_path):
    samples = {k: v[:2] for k, v in graded(5).items()}  # right vs wrong per question
    judge = Judge(Scripted(oracle), rubric="correctness")
    rows, kto, counts = label_pairs(judge, questions(5), samples, seed=1)
    assert counts["pairs"] == 5 and counts["consistent"] == 5
    assert counts["agrees_with_grader"] == 5 and len(kto) == 10
    assert all(r["chosen"][0]["content"] == f"#### {2 * int(r['provenance']['source'][2:])}"
               for r in rows)
    pref, fb = tmp_path / "pref.jsonl", tmp_path / "kto.jsonl"
    pref.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fb.write_text("".join(json.dumps(r) + "\n" for r in kto))
    assert len(load_preference_records(str(pref))) == 5
    assert [f.label for f in load_feedback_records(str(fb))] == [True, False] * 5


def test_labels_drop_what_follows_the_position_and_count_it():
    judge = Judge(Scripted(lambda conv: "[[A]]"))
    rows, kto, counts = label_pairs(judge, questions(4), graded(4))
    assert rows == [] and kto == [] and counts["inconsistent"] == 4
    with pytest.raises(CorralError, match="no pair of distinct answers"):
        label_pairs(judge, questions(2), {"q:0": [{"text": "a"}, {"text": " a "}]})


def test_contrast_pairs_come_one_from_each_configuration():
    strong = {k: [v[0]] for k, v in graded(3).items()}
    weak = {k: [v[1]] for k, v in graded(3).items()}
    rows, _, counts = label_pairs(Judge(Scripted(oracle)), questions(3), strong, other=weak)
    assert counts["consistent"] == 3 and all(r["provenance"]["grader_agrees"] for r in rows)


def test_a_labelling_job_killed_midway_resumes_from_the_verdict_cache(tmp_path):
    from corral.feedback.judge import JudgeCache

    class Dies(Scripted):  # the endpoint goes away after the first batch
        def chat(self, conversations, params=None, *, return_errors=False):
            if self.calls >= 4:
                raise KeyboardInterrupt
            return super().chat(conversations, params, return_errors=return_errors)

    samples = {k: v[:2] for k, v in graded(6).items()}
    cache = tmp_path / "verdicts.jsonl"
    with pytest.raises(KeyboardInterrupt):
        label_pairs(Judge(Dies(oracle), batch_size=4, cache=JudgeCache(cache)), questions(6),
                    samples)
    assert len(JudgeCache(cache).entries) == 4  # the finished batch is on disk
    gen = Scripted(oracle)
    rows, _, counts = label_pairs(Judge(gen, batch_size=4, cache=JudgeCache(cache)),
                                  questions(6), samples)
    assert counts["consistent"] == 6 and gen.calls == 12 - 4  # nothing asked twice


class BiasedLogprobs(Scripted):
    """A local-looking judge whose log-prob margin is +3 for position A (a pure position
    bias) plus ±1 for the answer that is right: raw verdicts always say A."""

    def choice_logprobs(self, conversations, options):
        rows = []
        for conv in conversations:
            text = conv[0]["content"]
            ok = right(text)
            if "<response_a>" not in text:  # pointwise: Yes for a right answer
                answer = text.split("<response>")[1].split("</response>")[0]
                rows.append([1.0, 0.0] if ok(answer) else [0.0, 1.0])
                continue
            a = text.split("<response_a>")[1].split("</response_a>")[0]
            rows.append([3.0 + (1.0 if ok(a) else -1.0), 0.0])
        return rows


def test_calibration_cancels_a_position_bias_the_raw_verdicts_show():
    samples = {k: v[:2] for k, v in graded(5).items()}
    judge = Judge(BiasedLogprobs(oracle), verdict="logprob")
    rows, _, counts = label_pairs(judge, questions(5), samples)
    assert rows == [] and counts["inconsistent"] == 5  # raw: position A wins every time
    rows, _, counts = label_pairs(judge, questions(5), samples, calibrated=True)
    assert counts["consistent"] == 5 and counts["agrees_with_grader"] == 5
    assert judge.stats.cache_hits == 0 and judge.stats.calls == 20
    card = audit(Judge(BiasedLogprobs(oracle), verdict="logprob"), questions(5), samples)
    assert card["swap_consistency"]["value"] == 0.0
    assert card["calibrated_agreement"]["value"] == 1.0
    assert "position bias cancelled): 1.00" in format_card(card)
