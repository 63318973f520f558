"""evaluate(): per-sample grading, summary, and best-of-n where the chooser sees the prompt."""
from types import SimpleNamespace

from corral.core.records import Item, Message
from corral.eval.evaluate import evaluate
from corral.graders.base import BaseGrader, Sample, Score
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


def test_training_evaluator_numbers_match_sampling_through_the_engine(tmp_path):
    """task_evaluator goes through a Generator now; its numbers are what the engine's own
    generate_chat gives (greedy and sampled with a seed, with and without a template)."""
    from corral.core.sections import EvalConfig, ModelConfig
    from corral.eval import metrics as M
    from corral.eval.evaluate import task_evaluator
    from corral.infer.engine import engine_for
    from corral.model.policy import load_policy
    from corral.tasks import get_task
    from corral.testing import save_tiny

    policy = load_policy(ModelConfig(name=str(save_tiny(tmp_path / "tiny"))), None,
                         for_training=False)
    template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                "assistant:")
    for n, temperature, tpl in [(1, 0.0, None), (2, 0.9, None), (1, 0.0, template)]:
        cfg = EvalConfig(task="arithmetic", limit=3, n=n, k=(1, n), temperature=temperature,
                         max_new_tokens=5)
        got = task_evaluator(cfg, template=tpl)(policy, 0)
        task = get_task("arithmetic", split="dev", limit=3)
        items = task.prompt_items()
        gens = engine_for(policy).generate_chat(
            [[{"role": m.role, "content": m.content} for m in it.messages] for it in items],
            SamplingParams(max_new_tokens=5, n=n, temperature=temperature, seed=0),
            template=tpl)
        scores = [task.grader.grade_batch([(it.grader_item(), Sample.of(g.text)) for g in gs])
                  for it, gs in zip(items, gens)]
        want = M.summarize(scores, sorted({1, n}))
        assert got == {f"dev/{k}": v for k, v in want.items() if not k.endswith("_stderr")}


def test_one_path_for_plain_sampling_and_strategies():
    """A strategy goes through evaluate like plain sampling: greedy answers graded the same,
    with compute per item; an Engine-like object and a Generator give the same numbers."""
    from corral.infer.engine import Generation
    from corral.infer.generators import Generator
    from corral.infer.remote import Usage
    from corral.strategies import parse_strategy

    class Echo(Generator):
        name, usage = "echo", Usage()

        def identity(self):
            return {"kind": "fake"}

        def chat(self, conversations, params=None, *, return_errors=False):
            self.usage.completion_tokens += len(conversations) * params.n
            return [[Generation(c[-1]["content"][-1], [7], [0.0], "eos", i, k)
                     for k in range(params.n)] for i, c in enumerate(conversations)]

    items = [Item(messages=(Message("user", f"q{a}"),), fields={"answer": "1"}, source=str(a))
             for a in (1, 2, 1)]
    plain = evaluate(Echo(), items, Exact(), SamplingParams(temperature=0.0))
    greedy = evaluate(Echo(), items, Exact(), strategy=parse_strategy("greedy"))
    assert plain.metrics["mean"] == greedy.metrics["mean"] == 2 / 3
    assert plain.metrics["pass@1"] == greedy.metrics["pass@1"]
    assert [r["output"] for r in plain.samples] == [r["output"] for r in greedy.samples]
    assert set(plain.samples[0]) >= {"sample", "finish_reason"}
    assert set(greedy.samples[0]) >= {"compute", "trace"}
    assert greedy.compute.calls == 3 and greedy.compute.completion_tokens == 3
    row = greedy.summary_row("greedy")
    assert row["score"] == 2 / 3 and row["calls"] == 1.0
