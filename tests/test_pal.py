"""Program-aided answers, judge and teacher (issue 25): the `pal` strategy with a scripted
model writing programs that really run in the sandbox — majority over executed answers,
unparsed programs counted, compute — the judge pointwise and pairwise in both orders, the
teacher path, and the refusal without bubblewrap."""
import pytest

from corral.core.errors import CorralError
from corral.core.records import Item, Message
from corral.graders import programs as programs_mod
from corral.graders import sandbox
from corral.graders.judge_cache import JudgeCache
from corral.graders.judging import Judge
from corral.graders.programs import extract_program, printed_answer
from corral.graders.rules import NumericAnswer
from corral.infer.engine import Generation
from corral.infer.generators import Generator
from corral.infer.remote import Usage
from corral.strategies import parse_strategy
from corral.strategies.pal import ProgramAided, pal_counts

pytestmark = pytest.mark.skipif(not sandbox.sandbox_status()[0],
                                reason=f"no sandbox here: {sandbox.sandbox_status()[1]}")


class Scripted(Generator):
    """A fake model: `reply(question, sample_index)` gives each text, where question is the
    conversation's last user turn. Usage as a local generator keeps it."""

    def __init__(self, reply, name="scripted"):
        self.reply, self.name, self.usage, self.calls = reply, name, Usage(), []

    def identity(self):
        return {"kind": "fake", "model": self.name}

    def count_prompt_tokens(self, conversations):
        return [sum(len(m["content"]) for m in c) for c in conversations]

    def chat(self, conversations, params=None, *, return_errors=False):
        self.calls.append([[dict(m) for m in c] for c in conversations])
        out = []
        for i, c in enumerate(conversations):
            question = [m for m in c if m["role"] == "user"][-1]["content"]
            texts = [self.reply(question, k) for k in range(params.n)]
            out.append([Generation(t, list(range(len(t))), [0.0] * len(t), "eos", i, k)
                        for k, t in enumerate(texts)])
        self.usage.requests += len(conversations)
        self.usage.prompt_tokens += sum(self.count_prompt_tokens(conversations))
        self.usage.completion_tokens += sum(len(g.token_ids) for gens in out for g in gens)
        return out


def items(*pairs):
    return [Item(messages=(Message("user", q),), fields={"answer": a}, source=f"t:{i}")
            for i, (q, a) in enumerate(pairs)]


def fenced(code):
    return f"Here you go:\n```python\n{code}\n```\nDone."


# ---------------------------------------------------------------- programs in replies
def test_extract_program_forms():
    assert extract_program(fenced("print(1)")) == "print(1)"
    assert extract_program("```\nx = 2\nprint(x)") == "x = 2\nprint(x)"  # unclosed: to the end
    assert extract_program("print(3)") == "print(3)"
    assert extract_program("   ") == ""


@pytest.mark.parametrize("stdout,error,answer", [
    ("1\n2\n42\n", None, "42"), ("", None, None), ("None\n", None, None),
    ("<function f at 0x7f00>\n", None, None), ("7\n", "error: ValueError: x", None),
    ("nan\n", None, None)])
def test_printed_answer(stdout, error, answer):
    assert printed_answer(programs_mod.ProgramRun(stdout, error))[0] == answer


# ---------------------------------------------------------------- the strategy
def test_pal_greedy_runs_the_program_and_counts_compute():
    gen = Scripted(lambda q, k: fenced("a = 23\nb = 58\nprint(a + b)") if "23" in q
                   else "7 * 6")
    its = items(("What is 23 + 58?", "81"), ("What is 7 * 6?", "42"))
    strategy = parse_strategy("pal")
    out = strategy.run(its, gen, NumericAnswer())
    assert [o.answer for o in out] == ["81", "42"]
    assert len(gen.calls) == 1 and gen.calls[0][0][0]["role"] == "system"  # instruction first
    assert gen.calls[0][0][-1]["content"] == "What is 23 + 58?"
    assert sum(o.compute.calls for o in out) == 2
    assert sum(o.compute.prompt_tokens for o in out) == gen.usage.prompt_tokens
    assert sum(o.compute.completion_tokens for o in out) == gen.usage.completion_tokens
    programs, pick = out[0].trace
    assert programs["sandbox_s"] > 0 and pick["answered"] and pick["unparsed"] == 0
    assert pal_counts(out)["programs"] == 2 and pal_counts(out)["unparsed"] == 0


def test_pal_n_takes_the_majority_of_executed_answers():
    scripts = ["print(40 + 2)", "while True: pass", "raise ValueError('no')", "print(41)",
               "x = 1", "print(None)", "print(6 * 7)", "print(41)"]
    gen = Scripted(lambda q, k: fenced(scripts[k]))
    strategy = ProgramAided(8, spec="pal:8", temperature=0.8)
    strategy.limits = programs_mod.ProgramLimits(timeout_s=1, cpu_s=10)
    [out] = strategy.run(items(("What is 40 + 2?", "42")), gen, NumericAnswer())
    assert out.answer == "42"
    programs, pick = out.trace
    assert pick["unparsed"] == 4 and pick["programs"] == 8 and pick["answer"] == "42"
    assert programs["votes"] == ["42", None, None, "41", None, None, "42", "41"]
    why = programs["unparsed_why"]
    assert why[1].startswith("the program failed: timeout") and "ValueError" in why[2]
    assert why[4] == "the program printed nothing" and "non-answer" in why[5]
    assert out.compute.calls == 1  # 8 samples of one conversation are one call


def test_every_program_unparsed_leaves_the_answer_empty_and_counted():
    gen = Scripted(lambda q, k: "I think the answer is 5" if k == 0 else fenced("print()"))
    out = ProgramAided(2, spec="pal:2").run(items(("What is 2 + 3?", "5")), gen,
                                             NumericAnswer())
    assert out[0].answer == ""
    assert out[0].trace[1] == {"step": "pick", "index": None, "answer": None, "programs": 2,
                               "unparsed": 2, "answered": False}
    assert pal_counts(out)["unanswered"] == 1


def test_a_printed_non_number_is_unparsed_for_a_numeric_grader():
    scripts = ["print('many')", "print(5)"]
    gen = Scripted(lambda q, k: fenced(scripts[k]))
    [out] = ProgramAided(2, spec="pal:2").run(items(("What is 2 + 3?", "5")), gen,
                                               NumericAnswer())
    assert out.answer == "5" and out.trace[1]["unparsed"] == 1
    assert "no answer in what it printed" in out.trace[0]["unparsed_why"][0]


def test_task_code_demonstrations_replace_the_generic_set():
    class T:
        code_few_shot = [("What is 1 + 1?", "print(1 + 1)")]

    gen = Scripted(lambda q, k: "print(2)")
    strategy = parse_strategy("pal")
    strategy.check(T())
    strategy.run(items(("What is 1 + 1?", "2")), gen)
    sent = gen.calls[0][0]
    assert len(sent) == 4 and sent[2]["content"] == "```python\nprint(1 + 1)\n```"


@pytest.mark.parametrize("spec,message", [
    ("pal:0", "whole number of samples"), ("pal:x", "whole number of samples"),
    ("pal:4:judge", "takes no scorer")])
def test_bad_specs(spec, message):
    with pytest.raises(CorralError, match=message):
        parse_strategy(spec)


def test_pal_n_at_temperature_zero_refused():
    with pytest.raises(CorralError, match="temperature above 0"):
        parse_strategy("pal:4", temperature=0.0)


def test_refused_without_bwrap_unless_opted_in(monkeypatch):
    monkeypatch.setattr(sandbox, "_status", (False, "bubblewrap (bwrap) is not installed"))
    monkeypatch.setattr(sandbox, "_allow", False)
    with pytest.raises(CorralError, match="only in the bubblewrap sandbox.*"
                       "--allow-unsandboxed-graders"):
        parse_strategy("pal:4")
    monkeypatch.setattr(sandbox, "_allow", True)
    monkeypatch.setattr(sandbox, "_warned", True)
    gen = Scripted(lambda q, k: "print(3 + 4)")
    out = parse_strategy("pal").run(items(("What is 3 + 4?", "7")), gen)
    assert out[0].answer == "7"  # opted in: the weaker child process ran it


def test_chat_and_teacher_go_through_the_strategy_generator():
    from corral.strategies.generator import StrategyGenerator

    gen = Scripted(lambda q, k: fenced("print(12 * 3)"))
    teacher = StrategyGenerator(parse_strategy("pal:2"), gen)
    assert teacher.identity()["strategy"] == "pal:2"  # the job's lineage names the tool use
    [[reply]] = teacher.chat([[{"role": "user", "content": "What is 12 * 3?"}]])
    assert reply.text == "36"


# ---------------------------------------------------------------- the judge
def judge_for(program_of, **kw):
    gen = Scripted(lambda q, k: fenced(program_of(q)))
    return Judge(gen, rubric="pal", **kw), gen


def program_of(question):
    a, op, b = question.split()[2:5]
    return f"print({a} {op} {b.rstrip('?')})"


def test_judge_pointwise_compares_final_answers():
    judge, gen = judge_for(program_of)
    convs = [[{"role": "user", "content": "What is 12 * 3?"}]] * 3
    verdicts = judge.score(convs, ["12 * 3 = 36\n#### 36", "The answer is 35.", "thirty"])
    assert [v.value for v in verdicts] == [1.0, 0.0, 0.0]
    assert len(gen.calls) == 1 and len(gen.calls[0]) == 1  # one program per question
    assert judge.stats.programs == 1 and judge.stats.sandbox_s > 0


def test_judge_unparsed_when_the_program_fails():
    judge, _ = judge_for(lambda q: "raise ValueError('stuck')")
    [v] = judge.score([[{"role": "user", "content": "What is 1 + 1?"}]], ["2"])
    assert v.value is None and "ValueError" in v.error and judge.stats.unparsed == 1


def test_judge_pairwise_both_orders():
    judge, gen = judge_for(program_of)
    convs = [[{"role": "user", "content": f"What is {q}?"}] for q in ("2 + 3", "4 * 4",
                                                                     "9 - 1", "7 + 7")]
    a = ["5", "15", "8", "1"]
    b = ["6", "16", "8", "2"]
    pairs = judge.pairwise(convs, a, b)
    assert [p.outcome for p in pairs] == ["a", "b", "tie", "tie"]
    assert [p.forward.value for p in pairs] == ["A", "B", "tie", "tie"]
    assert [p.backward.value for p in pairs] == ["B", "A", "tie", "tie"]
    assert sum(len(c) for c in gen.calls) == 4  # both orders share each question's program


def test_judge_cache_and_budget(tmp_path):
    cache = JudgeCache(str(tmp_path / "cache.jsonl"))
    judge, gen = judge_for(program_of, cache=cache)
    conv = [[{"role": "user", "content": "What is 3 * 3?"}]]
    assert judge.score(conv, ["9"])[0].value == 1.0
    again, gen2 = judge_for(program_of, cache=JudgeCache(str(tmp_path / "cache.jsonl")))
    v = again.score(conv, ["8"])[0]
    assert v.value == 0.0 and v.cached and not gen2.calls  # the program's answer was cached
    tight, _ = judge_for(program_of, max_calls=1)
    tight.score(conv, ["9"])
    from corral.core.errors import BudgetSpent
    with pytest.raises(BudgetSpent):
        tight.score([[{"role": "user", "content": "What is 5 * 5?"}]], ["25"])


def test_judge_pal_refuses_what_it_cannot_do():
    judge, _ = judge_for(program_of)
    with pytest.raises(CorralError, match="pal"):
        judge.critique([[{"role": "user", "content": "x"}]], ["y"])


def test_best_of_n_picks_with_the_pal_judge_as_scorer():
    from corral.graders.pal_judge import pal_judge_grader
    from corral.strategies.base import grader_scorer
    from corral.strategies.simple import BestOfN

    judge_model = Scripted(lambda q, k: fenced(program_of(q)))
    its = items(("What is 6 * 7?", "42"))
    scorer = grader_scorer(pal_judge_grader({"type": "pal_judge"}, generator=judge_model), its)
    answers = ["#### 41", "#### 42", "#### 43"]
    policy = Scripted(lambda q, k: answers[k])
    [out] = BestOfN(3, scorer, temperature=0.8).run(its, policy)
    assert out.answer == "#### 42" and out.trace[0]["scores"] == [0.0, 1.0, 0.0]
    assert len(judge_model.calls) == 1  # one program for the question, three checks


def test_pal_judge_grader_spec_mistakes():
    from corral.graders.pal_judge import pal_judge_grader

    with pytest.raises(CorralError, match="unknown field.*rubric"):
        pal_judge_grader({"type": "pal_judge", "model": "m", "rubric": "x"})
    with pytest.raises(CorralError, match='give "model"'):
        pal_judge_grader({"type": "pal_judge"})


def test_a_lone_non_number_is_unparsed_for_a_numeric_grader():
    gen = Scripted(lambda q, k: fenced("print('many')"))
    [out] = parse_strategy("pal").run(items(("What is 2 + 3?", "5")), gen, NumericAnswer())
    assert out.answer == "" and out.trace[1]["unparsed"] == 1


def test_the_strategy_table_shows_unparsed_programs_and_unanswered_items():
    """The summary row counts what the program-aided picks report (per item), and the table
    grows its two columns only when some strategy reports them."""
    from corral.eval.outcomes import Outcome
    from corral.eval.report import format_strategy_table, summary_row
    from corral.graders.base import Score

    gen = Scripted(lambda q, k: "I think the answer is 5" if k == 0 else fenced("print()"))
    unanswered = ProgramAided(2, spec="pal:2").run(items(("What is 2 + 3?", "5")), gen,
                                                   NumericAnswer())
    answered = ProgramAided(2, spec="pal:2").run(
        items(("What is 2 + 3?", "5")), Scripted(lambda q, k: fenced("print(5)")),
        NumericAnswer())
    row = summary_row("pal:2", unanswered + answered, [Score(0.0), Score(1.0)])
    assert row["unparsed"] == 1.0 and row["unanswered"] == 0.5  # 2 of 4 programs; 1 of 2
    plain = summary_row("greedy", [Outcome("5"), Outcome("4")], [Score(1.0), Score(0.0)])
    assert "unparsed" not in plain
    table = format_strategy_table([plain, row])
    assert "unparsed/item" in table.splitlines()[0]
    assert table.splitlines()[1].split()[-2:] == ["-", "-"]
    assert table.splitlines()[2].split()[-2:] == ["1.00", "0.50"]
    assert "unparsed" not in format_strategy_table([plain])
