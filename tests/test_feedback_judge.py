"""The judge: strict verdict parsing, retries, both-order bookkeeping on a rigged judge, the
cache (a hit makes no call) and the call budget."""
import pytest

from corral.core.errors import CorralError
from corral.feedback.judge import BudgetSpent, Judge, JudgeCache, PairVerdict, Verdict
from corral.feedback.prompts import fill, parse_points, parse_preference, satisfied
from corral.infer.engine import Generation, SamplingParams
from corral.infer.remote import Usage


class Scripted:
    """A generator whose reply is reply(conversation) (or an Exception to return)."""
    name = "scripted"

    def __init__(self, reply):
        self.reply, self.usage, self.calls, self.seen = reply, Usage(), 0, []

    def identity(self):
        return {"kind": "scripted"}

    def chat(self, conversations, params=None, *, return_errors=False):
        params = params or SamplingParams()
        self.calls += len(conversations)
        out = []
        for k, conv in enumerate(conversations):
            self.seen.append(conv)
            text = self.reply(conv)
            out.append(text if isinstance(text, Exception) else
                       [Generation(text, [1], [0.0], "stop", k, 0)])
        return out


@pytest.mark.parametrize("reply, value", [
    ("Score: 4", 4.0), ("The answer is right.\nScore: 3", 3.0), ("[[2]]", 2.0), ("5", 5.0),
    ("**Score:** 1", 1.0), ("Rubric says Score: 5 for perfect ones... Score: 2", 2.0),
    ("Score: 7", None), ("It is a good answer.", None), ("Score: lots", None)])
def test_points_are_read_strictly(reply, value):
    got, why = parse_points(reply, 0, 5)
    assert got == value and (why == "") == (value is not None)


@pytest.mark.parametrize("reply, value", [
    ("[[A]]", "A"), ("B is clearer and correct. [[B]]", "B"), ("[[C]]", "tie"),
    ("Final verdict: A", "A"), ("B", "B"), ("tie", "tie"), ("[[A]] ... no, [[B]]", None),
    ("Assistant A is a good model", None), ("Both are fine.", None)])
def test_preferences_are_read_strictly(reply, value):
    assert parse_preference(reply)[0] == value


def test_fill_leaves_braces_of_answers_and_rubrics_alone():
    text = fill("Q: {question} A: {answer} {other}{principle}", question="{answer}",
                answer="x {y}", principle="")
    assert text == "Q: {answer} A: x {y} {other}"
    assert "Judge by this principle: Be brief." in fill("{principle}", principle="Be brief.")
    assert satisfied("NO ISSUES") and satisfied("Looks fine.\nNO ISSUES.")
    assert not satisfied("There are NO ISSUES with style, but the sum is wrong.")


def first_position_judge(conv):
    return "[[A]]"  # rigged: whatever is shown first wins


def test_a_judge_that_always_prefers_position_a_is_never_consistent():
    judge = Judge(Scripted(first_position_judge))
    pairs = judge.pairwise([[{"role": "user", "content": f"q{k}"}] for k in range(5)],
                           [f"a{k}" for k in range(5)], [f"b{k}" for k in range(5)])
    assert [p.outcome for p in pairs] == ["inconsistent"] * 5
    assert all(p.first_position_won == [True, True] for p in pairs)
    assert judge.stats.calls == 10  # each pair asked in both orders


def content_judge(conv):
    text = conv[0]["content"]  # prefers the response that says "good", wherever it is
    a = text.split("<response_a>")[1].split("</response_a>")[0]
    b = text.split("<response_b>")[1].split("</response_b>")[0]
    return "[[A]]" if "good" in a and "good" not in b else \
        "[[B]]" if "good" in b and "good" not in a else "[[C]]"


def test_consistent_verdicts_name_the_better_answer_in_the_callers_order():
    judge = Judge(Scripted(content_judge))
    pairs = judge.pairwise(["q1", "q2", "q3"], ["good", "meh", "good"], ["meh", "good", "good"])
    assert [p.outcome for p in pairs] == ["a", "b", "tie"]
    assert PairVerdict(Verdict("A", ""), Verdict(None, "")).outcome == "unparsed"


def test_an_unparsed_reply_is_asked_again_and_then_counted_not_zeroed():
    def judge_reply(conv):  # rambles on the first ask, answers when reminded
        if conv[0]["content"].count("q-stubborn"):
            return "I like it."
        return "Score: 3" if len(conv) > 1 else "Hmm, nice."
    gen = Scripted(judge_reply)
    judge = Judge(gen, rubric="additive", retries=2)
    verdicts = judge.score(["q-easy", "q-stubborn"], ["x", "y"])
    assert verdicts[0].value == 3.0 and verdicts[0].calls == 2
    assert verdicts[1].value is None and verdicts[1].calls == 3 and "no 'Score" in verdicts[1].error
    assert judge.stats.unparsed == 1 and judge.stats.retries == 3 and gen.calls == 5
    assert gen.seen[-1][-1]["content"].startswith("Your reply did not end with a score")


def test_a_judge_that_never_gives_a_verdict_stops_with_its_reply_shown():
    judge = Judge(Scripted(lambda conv: "What a lovely question!"), retries=1)
    with pytest.raises(CorralError, match="no parsable verdict in any of 4.*lovely question"):
        judge.score(["a", "b", "c", "d"], ["1", "2", "3", "4"])


def test_cached_verdicts_make_no_second_call_even_in_a_new_process(tmp_path):
    gen = Scripted(lambda conv: "Score: 1")
    cache = tmp_path / "judge.cache.jsonl"
    Judge(gen, rubric="correctness", cache=JudgeCache(cache)).score(["q1", "q2"], ["a", "b"])
    assert gen.calls == 2
    again = Judge(gen, rubric="correctness", cache=JudgeCache(cache))
    verdicts = again.score(["q2", "q1", "q3"], ["b", "a", "c"])
    assert gen.calls == 3 and again.stats.cache_hits == 2  # only q3 was asked
    assert [v.cached for v in verdicts] == [True, True, False] and verdicts[0].value == 1.0
    other_rubric = Judge(gen, rubric="additive", cache=JudgeCache(cache))
    other_rubric.score(["q1"], ["a"])
    assert gen.calls == 4  # a different template is a different question


def test_failed_calls_are_errors_and_are_not_cached(tmp_path):
    flaky = Scripted(lambda conv: RuntimeError("503") if "q1" in conv[0]["content"]
                     else "Score: 1")
    cache = JudgeCache(tmp_path / "c.jsonl")
    verdicts = Judge(flaky, rubric="correctness", cache=cache).score(["q1", "q2"], ["a", "b"])
    assert verdicts[0].value is None and "503" in verdicts[0].error and verdicts[1].value == 1
    assert len(JudgeCache(tmp_path / "c.jsonl").entries) == 1
    with pytest.raises(CorralError, match="every call failed"):
        Judge(Scripted(lambda conv: RuntimeError("down"))).score(["q"], ["a"])


def test_the_budget_stops_before_the_call_that_would_exceed_it():
    gen = Scripted(lambda conv: "Score: 2")
    judge = Judge(gen, max_calls=3, batch_size=2)
    judge.score(["q1", "q2"], ["a", "b"])
    with pytest.raises(BudgetSpent, match="budget of 3 calls is spent"):
        judge.score(["q3", "q4"], ["c", "d"])
    assert gen.calls == 2


def test_a_rubric_without_an_answer_field_is_refused():
    with pytest.raises(CorralError, match="no {answer} field"):
        Judge(Scripted(lambda c: ""), rubric="Rate the question {question}")


def test_logprob_verdicts_from_a_local_model_match_an_unpadded_forward(tmp_path):
    import torch

    from corral.infer.generators import generator_for
    from corral.testing import save_tiny

    gen = generator_for(save_tiny(tmp_path / "tiny"))
    convs = [[{"role": "user", "content": "Is 2 + 2 = 4? " * k}] for k in (1, 5)]
    rows = gen.choice_logprobs(convs, ["Yes", "No"])
    model, tok = gen.engine.backend.model, gen.engine.tokenizer
    for conv, row in zip(convs, rows):  # the left-padded batch changes nothing
        ids = torch.tensor([gen._prompt_ids(conv)])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), -1)
        first = [tok(o, add_special_tokens=False)["input_ids"][0] for o in ("Yes", "No")]
        assert row == pytest.approx(logp[first].tolist(), abs=1e-4)
    judge = Judge(gen, rubric="correctness", verdict="logprob")
    verdicts = judge.score(["q1", "q2", "q3"], ["a", "b", "c"])
    assert all(v.value in (0.0, 1.0) and v.reply.startswith("logprob Yes:") for v in verdicts)
    pairs = judge.pairwise(["q"], ["x"], ["y"])
    assert pairs[0].outcome in ("a", "b", "inconsistent") and judge.stats.calls == 5
    assert gen.usage.completion_tokens == 0 and gen.usage.requests == 2 + 5
    with pytest.raises(CorralError, match="whole points 0..9"):
        Judge(gen, rubric="Rate {answer}", high=10, verdict="logprob").score(["q"], ["a"])
    with pytest.raises(CorralError, match="only a local model"):
        Judge(Scripted(lambda c: ""), verdict="logprob")
