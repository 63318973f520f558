"""evaluate(): per-sample grading, summary, and best-of-n where the chooser sees the prompt."""
from types import SimpleNamespace

from corral.core.records import Item, Message
from corral.eval.evaluate import evaluate
from corral.graders.base import BaseGrader, Score
from corral.infer.engine import SamplingParams


class FakeEngine:
    def generate_chat(self, conversations, params, template=None):
        return [[SimpleNamespace(text=t, finish_reason="eos") for t in ("1", "22", "333")]
                for _ in conversations]


class Exact(BaseGrader):
    def grade(self, item, sample):
        return Score(float(sample.output_text == item["answer"]), answer=sample.output_text)


class LongestWithPrompt(BaseGrader):
    """Prefers longer outputs; fails loudly if the prompt is missing (as a reward model would)."""
    def grade(self, item, sample):
        assert item["messages"][0]["content"] == "q"
        return Score(float(len(sample.output_text)))


def test_best_of_n_and_pass_at_k():
    items = [Item(messages=(Message("user", "q"),), fields={"answer": "333"}, source="a"),
             Item(messages=(Message("user", "q"),), fields={"answer": "1"}, source="b")]
    result = evaluate(FakeEngine(), items, Exact(), SamplingParams(n=3), ks=(1, 3),
                      chooser=LongestWithPrompt())
    assert result.metrics["pass@3"] == 1.0
    assert abs(result.metrics["pass@1"] - 1 / 3) < 1e-9
    assert result.metrics["best_of_n"] == 0.5  # picks "333": right for a, wrong for b
    assert len(result.samples) == 6
