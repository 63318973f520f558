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
