"""A judge as the RL reward: cached scores (same item and answer → one call, also across
processes), failed gradings asked again, and the budget that stops training cleanly."""
import pytest

from corral.core.errors import BudgetSpent
from corral.graders.base import BaseGrader, Sample, Score
from corral.graders.cached import CachedGrader
from corral.methods.rl import run_grpo
from corral.store.runs import read_jsonl
from tests.test_rl import config, tiny_policy, write_task


class Counting(BaseGrader):
    name = "counting"

    def __init__(self):
        self.asked = []

    def grade(self, item, sample):
        self.asked.append(sample.output_text)
        if sample.output_text == "boom":
            return Score(0.0, {"error_kind": "model_grader_server_error", "error": "503"})
        return Score(float(len(sample.output_text)), {"why": "length"}, answer="x")


def pairs(*texts):
    return [({"q": 1}, Sample.of(t)) for t in texts]


def test_same_item_and_answer_are_graded_once(tmp_path):
    inner = Counting()
    grader = CachedGrader(inner, str(tmp_path / "cache.jsonl"))
    scores = grader.grade_batch(pairs("ab", "abc", "ab", "boom"))
    assert [s.value for s in scores] == [2.0, 3.0, 2.0, 0.0] and inner.asked == ["ab", "abc",
                                                                                "boom"]
    grader.grade_batch(pairs("abc", "boom"))
    assert inner.asked[-1] == "boom" and len(inner.asked) == 4  # failures are asked again
    again = CachedGrader(Counting(), str(tmp_path / "cache.jsonl"))  # a new process
    assert again.grade_batch(pairs("ab"))[0].details == {"why": "length"}
    assert again.inner.asked == [] and again.hits == 1


def test_the_budget_refuses_the_batch_that_would_exceed_it():
    grader = CachedGrader(Counting(), max_calls=3)
    grader.grade_batch(pairs("a", "b"))
    grader.grade_batch(pairs("a", "b"))  # cache hits cost nothing
    with pytest.raises(BudgetSpent, match="budget of 3 grader calls"):
        grader.grade_batch(pairs("c", "d"))
    assert grader.calls == 2 and grader.inner.asked == ["a", "b"]


def test_rl_stops_cleanly_when_the_reward_budget_is_spent(tmp_path):
    data, grader = write_task(tmp_path, "a")
    store = run_grpo(config(tmp_path, data, grader, "train.max_steps=6", "rl.signal_check=off",
                            "rl.max_reward_calls=40", "train.save_every=1",
                            f"rl.reward_cache={tmp_path / 'cache.jsonl'}"),
                     policy=tiny_policy(), log=lambda s: None)
    rows = read_jsonl(store.path / "metrics.jsonl")
    stop = [r for r in rows if "stopped" in r]
    assert len(stop) == 1 and "budget of 40 grader calls" in stop[0]["stopped"]
    done = stop[0]["step"]
    assert 1 <= done < 6 and (store.path / "final").is_dir()
    assert store.checkpoint_dir(done).is_dir()
    assert len(read_jsonl(tmp_path / "cache.jsonl")) <= 40
