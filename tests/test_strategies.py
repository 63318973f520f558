"""Inference-time strategies (issue 13, item 5): the protocols round by round with a scripted
fake model, compute that adds up to the generators' usage, clear errors for specs and tasks
that cannot work, and one `corral eval --strategy` run on the tiny model."""
import json
import math
import xml.etree.ElementTree as ET

import pytest

from corral.cli.app import main
from corral.core.errors import CorralError
from corral.core.records import Item, Message
from corral.graders.base import BaseGrader, Score
from corral.graders.rules import NumericAnswer
from corral.infer.engine import Engine, Generation, SamplingParams
from corral.infer.generators import Generator
from corral.infer.remote import Usage
from corral.strategies import Compute, grader_scorer, parse_strategy, run_strategies, write_svg
from corral.strategies.beam import BeamSearch
from corral.strategies.debate import Debate
from corral.strategies.refine import SATISFIED, Reflexion, SelfRefine, is_satisfied
from corral.strategies.simple import BestOfN, Majority
from corral.tasks import Task
from corral.testing import save_tiny, tiny_model, tiny_tokenizer


class Scripted(Generator):
    """A fake model: `reply(conversation, sample_index)` gives each text. It records every
    chat call's conversations and keeps usage as a local generator does (prompt = characters
    of the conversation, once per conversation; completion = one token per character)."""

    def __init__(self, reply, name="scripted"):
        self.reply, self.name, self.usage, self.calls = reply, name, Usage(), []

    def identity(self):
        return {"kind": "fake", "model": self.name}

    def count_prompt_tokens(self, conversations):
        return prompt_lengths(conversations)

    def chat(self, conversations, params=None, *, return_errors=False):
        self.calls.append([[dict(m) for m in c] for c in conversations])
        out = []
        for i, c in enumerate(conversations):
            texts = [self.reply(c, k) for k in range(params.n)]
            out.append([Generation(t, list(range(len(t))), [0.0] * len(t), "eos", i, k)
                        for k, t in enumerate(texts)])
        self.usage.requests += len(conversations)
        self.usage.prompt_tokens += sum(prompt_lengths(conversations))
        self.usage.completion_tokens += sum(len(g.token_ids) for gens in out for g in gens)
        return out


def prompt_lengths(conversations):
    return [sum(len(m["content"]) for m in c) for c in conversations]


def items(*answers):
    return [Item(messages=(Message("user", f"question {i}"),), fields={"answer": a},
                 source=f"t:{i}") for i, a in enumerate(answers)]


def question(conversation) -> int:
    return int(conversation[0]["content"].split()[-1])


def last(conversation) -> str:
    return conversation[-1]["content"]


def total(outcomes) -> Compute:
    return sum((o.compute for o in outcomes), Compute())


def usage_of(*gens) -> Compute:
    return Compute(sum(g.usage.requests for g in gens), sum(g.usage.prompt_tokens for g in gens),
                   sum(g.usage.completion_tokens for g in gens))


# ---------------------------------------------------------------- self-refine, round by round
def test_refine_critiques_revises_and_stops_when_the_critic_is_satisfied():
    def reply(c, k):
        q = question(c)
        if len(c) == 1:
            return f"draft {q}"
        if "Review your answer" in last(c):  # satisfied with item 0 at once, item 1 after one fix
            return SATISFIED if q == 0 or "fixed" in c[-2]["content"] else "the sum is wrong"
        return f"fixed {q}"

    gen = Scripted(reply)
    out = SelfRefine(3).run(items("1", "2"), gen)
    # one batched call per step: answers, critiques, revision of item 1, its second critique
    assert [len(batch) for batch in gen.calls] == [2, 2, 1, 1]
    revision = gen.calls[2][0]
    assert revision[1] == {"role": "assistant", "content": "draft 1"}
    assert "the sum is wrong" in last(revision)
    assert gen.calls[3][0][1]["content"] == "fixed 1"  # round 2 critiques the revision
    assert [o.answer for o in out] == ["draft 0", "fixed 1"]
    assert [(s["round"], s["step"]) for s in out[1].trace] == \
        [(0, "answer"), (1, "critique"), (1, "revise"), (2, "critique")]
    assert out[0].trace[-1]["satisfied"] and [o.compute.calls for o in out] == [2, 4]
    assert total(out) == usage_of(gen)


def test_refine_parses_the_critic_strictly_and_may_use_a_separate_critic():
    assert is_satisfied("NO ISSUES") and is_satisfied("  no issues. ")
    assert not is_satisfied("No issues, except the last line") and not is_satisfied("")
    gen = Scripted(lambda c, k: "answer" if len(c) == 1 else "better")
    critic = Scripted(lambda c, k: "No issues, but check units")  # not the phrase: revise
    out = SelfRefine(2, critic=critic).run(items("1"), gen)
    assert len(critic.calls) == 2 and len(gen.calls) == 3 and out[0].answer == "better"
    assert total(out) == usage_of(gen, critic)


# ---------------------------------------------------------------- debate, round by round
def test_debate_shares_the_other_agents_answers_between_rounds():
    def reply(c, k):
        q = question(c)
        if len(c) == 1:  # round 1: agent k's own answer
            return f"#### {q + k}"
        return f"#### {q}"  # convinced in round 2: everyone agrees on q

    gen = Scripted(reply)
    out = Debate(3, 2).run(items("0", "1"), gen, NumericAnswer())
    first, second = gen.calls
    assert len(first) == 2 and len(second) == 6  # round 1: n=3 per item; round 2: 3 per item
    agent1_item1 = second[3 + 1]
    assert agent1_item1[1] == {"role": "assistant", "content": "#### 2"}  # its own answer
    shown = last(agent1_item1)
    assert "Agent 1: #### 1" in shown and "Agent 3: #### 3" in shown and "#### 2" not in shown
    assert [o.answer for o in out] == ["#### 0", "#### 1"]
    assert out[1].trace[-1]["votes"] == ["1", "1", "1"]
    assert [s["round"] for s in out[0].trace[:-1]] == [1, 1, 1, 2, 2, 2]
    assert [o.compute.calls for o in out] == [4, 4] and total(out) == usage_of(gen)


def test_debate_final_vote_or_judge():
    gen = Scripted(lambda c, k: ["#### 7", "#### 7", "#### 9"][k])  # one round: just the vote
    assert Debate(3, 1).run(items("9"), gen, NumericAnswer())[0].answer == "#### 7"

    class Prefers9:
        def score(self, conversations, answers):
            return [float("9" in a) for a in answers]
    out = Debate(3, 1, scorer=Prefers9()).run(items("9"), gen)
    assert out[0].answer == "#### 9" and out[0].trace[-1]["scores"] == [0.0, 0.0, 1.0]


# ---------------------------------------------------------------- the other strategies
def test_best_of_n_majority_and_reflexion():
    gen = Scripted(lambda c, k: ["#### 3", "#### 5", "#### 5", "#### 4"][k])
    its = items("4", "5")
    scorer = grader_scorer(NumericAnswer(), its)
    picks = BestOfN(4, scorer).run(its, gen)
    assert [o.answer for o in picks] == ["#### 4", "#### 5"]
    assert [o.answer for o in Majority(4).run(its, gen, NumericAnswer())] == ["#### 5"] * 2
    with pytest.raises(CorralError, match="needs a scorer"):
        BestOfN(4).run(its, gen)

    def retry(c, k):  # right only once told it was wrong
        return "#### 5" if "judged incorrect" in last(c) else "#### 3"
    gen = Scripted(retry)
    out = Reflexion(2).run(items("5", "3"), gen, NumericAnswer())
    assert [o.answer for o in out] == ["#### 5", "#### 3"] and len(gen.calls) == 2
    assert gen.calls[1] == [[{"role": "user", "content": "question 0"},
                             {"role": "assistant", "content": "#### 3"},
                             {"role": "user", "content": gen.calls[1][0][2]["content"]}]]
    assert "your answer '3' was judged incorrect" in gen.calls[1][0][2]["content"]
    assert out[0].trace[0]["passed"] is False and out[0].trace[1]["passed"] is True


def test_reflexion_passes_on_the_graders_own_feedback_and_needs_a_grader():
    class Explains(BaseGrader):
        name = "explains"

        def grade(self, item, sample):
            ok = "please" in sample.output_text
            return Score(float(ok), {"feedback": "you forgot to say please"}, passed=ok)
    gen = Scripted(lambda c, k: "fine, please" if "forgot to say please" in last(c) else "fine")
    out = Reflexion(1).run(items("x"), gen, Explains())
    assert out[0].answer == "fine, please"
    with pytest.raises(CorralError, match="reflexion:1 needs a grader"):
        Reflexion(1, spec="reflexion:1").run(items("x"), gen)


def test_beam_extends_by_lines_and_keeps_the_best():
    def reply(c, k):  # first lines a/b, then ", 2" lines, then DONE
        if "first line" in last(c):
            return ["a", "b"][k]
        return "DONE" if c[-2]["content"].count("\n") else ["1", "2"][k]

    class LikesB2:
        def score(self, conversations, answers):
            return [answer.count("b") + answer.count("2") for answer in answers]
    gen = Scripted(reply)
    out = BeamSearch(2, 4, LikesB2()).run(items("x"), gen)
    assert out[0].answer == "b\n2"
    assert [len(batch) for batch in gen.calls] == [1, 2, 2]  # stops once every beam is DONE
    assert out[0].trace[1]["kept"][0] == {"text": "b\n2", "score": 2.0, "done": False}
    assert total(out) == usage_of(gen)
    rated = Scripted(lambda c, k: "7" if "Rate" in last(c) else ["a", "b"][k])
    out = BeamSearch(2, 1).run(items("x"), rated)  # no scorer: the model rates itself
    assert "Rate" in last(rated.calls[1][0]) and out[0].trace[0]["kept"][0]["score"] == 7.0


def test_compute_adds_up_across_strategies_and_their_graders():
    gen = Scripted(lambda c, k: f"#### {len(c) + k}")
    its = items("1", "2", "3")
    specs = ["greedy", "majority:3", "best-of-n:2", "refine:2", "reflexion:2", "debate:2x3",
             "beam:2x2"]
    strategies = [parse_strategy(s, max_new_tokens=8) for s in specs]
    for s in strategies:
        if s.kind in ("best-of-n", "beam"):
            s.scorer = grader_scorer(NumericAnswer(), its)
    results = run_strategies(strategies, its, gen, NumericAnswer())
    assert sum((total(r.outcomes) for r in results), Compute()) == usage_of(gen)
    for r in results:
        n = len(r.outcomes)
        assert r.row["calls"] == sum(o.compute.calls for o in r.outcomes) / n
        assert r.row["prompt_tokens"] == sum(o.compute.prompt_tokens for o in r.outcomes) / n
    greedy = results[0].outcomes  # one call per item, one token per character of the answer
    assert [o.compute for o in greedy] == [Compute(1, 10, len(o.answer)) for o in greedy]
    assert Compute(1, 2, 3) + Compute(4, 5, 6) == Compute(5, 7, 9)


def test_compute_on_a_local_model_matches_its_usage():
    gen = Generator.from_engine(Engine.hf(tiny_model(), tiny_tokenizer(), batch_size=8), "tiny")
    its = items("1", "2")
    gen.chat([[{"role": "user", "content": "warm up"}]])  # usage before the strategies ran
    before = usage_of(gen)
    out = SelfRefine(1, max_new_tokens=4).run(its, gen) + \
        Majority(2, max_new_tokens=4).run(its, gen)
    after = usage_of(gen)
    assert total(out) == Compute(after.calls - before.calls,
                                 after.prompt_tokens - before.prompt_tokens,
                                 after.completion_tokens - before.completion_tokens)
    assert gen.count_prompt_tokens([[{"role": "user", "content": "question 0"}]])[0] > 0


def test_endpoint_usage_is_shared_out_exactly_when_token_ids_are_unknown():
    class Endpointish(Scripted):
        def count_prompt_tokens(self, conversations):
            return None

        def chat(self, conversations, params=None, *, return_errors=False):
            out = super().chat(conversations, params)
            for gens in out:
                for g in gens:
                    g.token_ids = []
            return out
    gen = Endpointish(lambda c, k: "#### 1" * (question(c) + 1))
    out = Majority(2, max_new_tokens=8).run(items("1", "2", "3"), gen)
    assert total(out) == usage_of(gen)
    assert out[0].compute.completion_tokens < out[2].compute.completion_tokens


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("spec,needle", [
    ("beem:4x3", "did you mean 'beam:BxD"), ("majority", "needs its size"),
    ("majority:0", "at least 1"), ("majority:many", "whole number of samples"),
    ("debate:3", "agents x rounds"), ("greedy:2", "takes no arguments"),
    ("refine:2:rm.json", "takes no scorer"), ("debate:1x2", "at least 2 agents"),
])
def test_bad_specs_say_what_was_wrong_and_the_accepted_forms(spec, needle):
    with pytest.raises(CorralError, match=needle) as err:
        parse_strategy(spec)
    assert "accepted forms are" in str(err.value) or "agents" in str(err.value)


def test_sampling_strategies_refuse_temperature_zero_and_beam_needs_steps():
    with pytest.raises(CorralError, match="temperature above 0"):
        parse_strategy("majority:4", temperature=0.0)
    one_line = Task("short", items("x"), NumericAnswer(), solutions=["42"])
    with pytest.raises(CorralError, match="answers in one line"):
        parse_strategy("beam:2x2").check(one_line)
    with pytest.raises(CorralError, match="no reference solutions"):
        parse_strategy("beam:2x2").check(Task("none", items("x"), NumericAnswer()))
    parse_strategy("beam:2x2").check(Task("steps", items("x"), NumericAnswer(),
                                          solutions=["1 + 1 = 2\n#### 2"]))


def test_svg_curve_is_well_formed(tmp_path):
    rows = [{"strategy": "greedy", "score": 0.5, "score_stderr": 0.1, "completion_tokens": 12.0},
            {"strategy": "maj<8>", "score": 0.7, "score_stderr": math.nan,
             "completion_tokens": 96.0}]
    write_svg(rows, tmp_path / "c.svg")
    root = ET.parse(tmp_path / "c.svg").getroot()
    assert "maj<8>" in "".join(root.itertext())


# ---------------------------------------------------------------- the command
@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return str(save_tiny(tmp_path / "tiny"))


def test_eval_strategies_end_to_end(tiny, tmp_path, capsys):
    argv = ["eval", "--model", tiny, "--task", "arithmetic", "--limit", "2",
            "--max-new-tokens", "4", "--name", "cmp", "--plot", "curve.svg",
            "--strategy", "greedy,majority:2,refine:1,debate:2x2"]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "debate:2x2" in printed and "gen tok/item" in printed
    rows = [json.loads(x) for x in (tmp_path / "runs/cmp/samples.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"greedy", "majority:2", "refine:1", "debate:2x2"}
    assert len(rows) == 8 and all(r["compute"]["calls"] >= 1 for r in rows)
    metrics = json.loads((tmp_path / "runs/cmp/metrics.jsonl").read_text().splitlines()[-1])
    assert "debate:2x2/completion_tokens" in metrics
    ET.parse(tmp_path / "curve.svg")


@pytest.mark.parametrize("extra,needle", [
    (["--strategy", "beam:2x2", "--task", "ifeval-like"], "no reference solutions"),
    (["--strategy", "majorty:2", "--task", "arithmetic"], "did you mean 'majority:N'"),
    (["--strategy", "greedy", "-n", "4", "--task", "arithmetic"], "-n and -k do not apply"),
    (["--plot", "x.svg", "--task", "arithmetic"], "give --strategy"),
])
def test_eval_strategy_mistakes_are_one_error_and_no_run(tiny, tmp_path, capsys, extra, needle):
    assert main(["eval", "--model", tiny, "--limit", "2", *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("corral: error:") == 1
    assert not (tmp_path / "runs").exists()


def test_best_of_n_with_the_model_as_judge_is_charged_the_judges_compute():
    from corral.cli.strategies import JudgeScorer

    def model(c, k):  # answers "#### k+3"; as a judge, passes only "#### 4"
        text = last(c)
        if "<response>" in text:
            return "Score: 1" if "#### 4" in text.split("<response>")[1] else "Score: 0"
        return f"#### {k + 3}"
    gen = Scripted(model)
    its = items("4", "4")
    out = BestOfN(3, JudgeScorer(gen, 64)).run(its, gen)
    assert [o.answer for o in out] == ["#### 4"] * 2  # the judge's pick, not the first sample
    assert total(out) == usage_of(gen)  # sampling and judging, all charged
    assert all(o.compute.calls == 1 + 3 for o in out)  # one sampling call, three verdicts


def test_a_strategy_is_a_generator_for_teachers():
    from corral.strategies.generator import StrategyGenerator

    def model(c, k):  # critic satisfied at once; answers "#### 7"
        return SATISFIED if last(c).startswith("Review your answer") else "#### 7"
    inner = Scripted(model)
    teacher = StrategyGenerator(parse_strategy("refine:1"), inner)
    out = teacher.chat([[{"role": "user", "content": "question 0"}]] * 2)
    assert [g[0].text for g in out] == ["#### 7", "#### 7"] and teacher.usage is inner.usage
    assert teacher.identity()["strategy"] == "refine:1" and len(inner.calls) == 2
    with pytest.raises(CorralError, match="one answer per prompt"):
        teacher.chat([[{"role": "user", "content": "q"}]], SamplingParams(n=2))
    with pytest.raises(CorralError, match="needs a grader"):
        StrategyGenerator(Reflexion(1), inner)


def test_synth_distill_through_a_strategy(tiny, tmp_path, capsys):
    argv = ["synth", "distill", "--model", tiny, "--task", "arithmetic", "--limit", "2",
            "--max-new-tokens", "4", "--strategy", "majority:2", "--out", "d.jsonl"]
    assert main(argv) == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "d.jsonl.manifest.json").read_text())
    assert manifest["generator"]["strategy"] == "majority:2"
    assert manifest["usage"]["completion_tokens"] > 0
    assert main([*argv[:-2], "-n", "3", "--out", "e.jsonl"]) == 2
    assert "gives one answer per prompt" in capsys.readouterr().err
