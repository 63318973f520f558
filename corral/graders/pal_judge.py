"""The program-aided judge: the one Judge (`judging.Judge`) with `rubric="pal"` verifies a
response by writing a program that computes the answer, running it in the sandbox
(graders/programs.py) and comparing what it printed with the response's final answer.

    judge = Judge(generator_for("smollm2-135m-instruct"), rubric="pal")
    judge.score(conversations, answers)        # 1 when the final answer matches, else 0
    judge.pairwise(conversations, a, b)        # the matching response wins; tie when both
                                               # or neither match; still both orders

The program answers the *question*, not the response: one program per distinct question
(asked once, cached by the judge's cache like any verdict, charged to its call budget), so
pointwise and both pairwise orders of a question share it and swap consistency holds by
construction. A program that fails, loops, prints nothing or prints a non-answer makes the
verdict *unparsed* (counted in `judge.stats.unparsed`), never 0. "Final answer": the
graders' numeric extraction (`rules.extract_number`: `#### n`, `\\boxed{n}`, "answer is n",
else the last number) when the program printed a number; else the response's last line,
case and spacing ignored.

As a grader (an RL reward or a best-of-n scorer): `PalJudgeGrader(judge)`, or the spec
`{"type": "pal_judge", "model": MODEL}` through `pal_judge_grader(spec)`; wrap it in
`cached.CachedGrader` for the reward's cache and budget.
"""
from __future__ import annotations

from dataclasses import replace

from corral.core.errors import CorralError
from corral.core.io import content_hash
from corral.graders.base import BaseGrader, Score
from corral.graders.judge_prompts import question_text
from corral.graders.programs import (
    GENERIC_DEMOS,
    ProgramLimits,
    extract_program,
    pal_conversation,
    printed_answer,
    run_programs,
)
from corral.graders.rules import extract_number, numbers_equal

__all__ = ["PalJudgeGrader", "compare", "computed_answers", "matches", "pal_judge_grader",
           "prompt_hash", "score"]

LIMITS = ProgramLimits()


def prompt_hash(demos=GENERIC_DEMOS) -> str:
    """What the judge is asked, for its identity: a changed prompt is a different judge."""
    return content_hash(pal_conversation("{question}", demos))


def _question(conversation) -> str:
    if isinstance(conversation, str):
        return conversation
    users = [m for m in conversation if m.get("role") == "user"]
    return str(users[-1]["content"]) if users else question_text(conversation)


def computed_answers(judge, conversations, strict: bool = True) -> list:
    """One Verdict per conversation whose value is the answer its question's program printed
    (None when unparsed; error says why), one program per distinct question."""
    from corral.graders.judging import Verdict

    questions = [_question(c) for c in conversations]
    unique = list(dict.fromkeys(questions))

    def batch(prompts):
        replies = judge._chat(prompts)
        programs = ["" if isinstance(r, Exception) else extract_program(r) for r in replies]
        info: dict = {}
        runs = run_programs([p for p in programs if p], LIMITS, info)
        judge.stats.programs += len(runs)
        judge.stats.sandbox_s += info.get("sandbox_s", 0.0)
        runs.reverse()
        out = []
        for reply, program in zip(replies, programs):
            if isinstance(reply, Exception):
                judge.stats.failed += 1
                out.append(Verdict(None, "", 1, f"the judge failed: {type(reply).__name__}: "
                                   f"{reply}", failure=str(getattr(reply, "kind", "") or "")))
                continue
            value, why = printed_answer(runs.pop()) if program else (
                None, "the judge's reply holds no program")
            out.append(Verdict(value, reply, 1, why))
        unparsed = [v for v in out if v.value is None and not v.failure and
                    not v.error.startswith("the judge failed")]
        judge.stats.unparsed += len(unparsed)
        if strict and unparsed and len(unparsed) == len(out) >= 4:
            raise CorralError(
                f"program-aided judge {judge.generator.name}: none of {len(out)} programs "
                f"gave an answer; the last: {unparsed[-1].error} (reply "
                f"{unparsed[-1].reply[:200]!r}). Use a stronger judge model, or a task it can "
                "formalise")
        return out

    # Remembered for the judge's lifetime too (an audit asks pointwise, then pairwise).
    memo = judge.__dict__.setdefault("_pal_answers", {})
    todo = [q for q in unique if q not in memo]
    judge.stats.cache_hits += len(unique) - len(todo)
    if todo:
        verdicts = judge._ask("pal-program", [pal_conversation(q) for q in todo], batch=batch)
        memo.update((q, v) for q, v in zip(todo, verdicts) if not v.error.startswith(
            "the judge failed"))
        fresh = dict(zip(todo, verdicts))
    else:
        fresh = {}
    return [fresh[q] if q in fresh else replace(memo[q], calls=0, cached=True)
            for q in questions]


def matches(computed: str, response: str) -> bool:
    """Does the response's final answer equal the program's printed answer?"""
    expected = extract_number(computed)
    if expected is not None:
        got = extract_number(response)
        return got is not None and numbers_equal(got, expected)
    lines = [line for line in str(response).splitlines() if line.strip()]
    norm = (lambda t: " ".join(t.lower().split()).rstrip("."))
    return bool(lines) and norm(lines[-1]).endswith(norm(computed))


def score(judge, conversations, answers, strict: bool = True) -> list:
    """Pointwise: 1.0 when the response's final answer matches, 0.0 when not, None (with the
    reason) when the program gave no answer."""
    from corral.graders.judging import Verdict

    out = []
    for c, answer in zip(computed_answers(judge, conversations, strict), answers):
        if c.value is None:
            out.append(Verdict(None, c.reply, c.calls, c.error, c.cached, failure=c.failure))
            continue
        ok = matches(c.value, answer)
        out.append(Verdict(float(ok), f"{c.reply}\n[the program printed {c.value!r}]",
                           c.calls, "", c.cached))
    return out


def compare(judge, conversations, answers_a, answers_b) -> list:
    """One order (answers_a shown as A): "A" when only A matches, "B" when only B does,
    "tie" when both or neither do; None when the program gave no answer."""
    from corral.graders.judging import Verdict

    out = []
    for c, a, b in zip(computed_answers(judge, conversations), answers_a, answers_b):
        if c.value is None:
            out.append(Verdict(None, c.reply, c.calls, c.error, c.cached, failure=c.failure))
            continue
        ma, mb = matches(c.value, a), matches(c.value, b)
        value = "A" if ma and not mb else "B" if mb and not ma else "tie"
        out.append(Verdict(value, f"{c.reply}\n[the program printed {c.value!r}]", c.calls,
                           "", c.cached))
    return out


class PalJudgeGrader(BaseGrader):
    """The program-aided judge as a grader: each (item, sample) asks about the item's last
    user turn; an unparsed verdict scores 0 with `error_kind` "pal_judge_unparsed" (not
    cached by CachedGrader, so it is asked again), never silently."""
    type = "pal_judge"

    def __init__(self, judge, name: str = "pal_judge"):
        self.judge, self.name = judge, name

    def grade(self, item, sample) -> Score:
        return self.grade_batch([(item, sample)])[0]

    def grade_batch(self, pairs) -> list[Score]:
        conversations = [[m for m in item.get("messages", []) if isinstance(m, dict)]
                         or [{"role": "user", "content": str(item.get("question", ""))}]
                         for item, _ in pairs]
        verdicts = score(self.judge, conversations, [s.output_text for _, s in pairs],
                         strict=False)
        return [Score(v.value, {"reply": v.reply[-500:]}, v.value == 1.0) if v.ok else
                Score(0.0, {"error_kind": "pal_judge_unparsed", "error": v.error}, False)
                for v in verdicts]


def pal_judge_grader(spec: dict, generator=None) -> PalJudgeGrader:
    """`{"type": "pal_judge", "model": MODEL, "name": ..., "max_new_tokens": 256}` → the
    grader; `model` is any generator spec (a run, a hub id, `openai:MODEL`)."""
    from corral.graders.judging import Judge

    unknown = set(spec) - {"type", "model", "name", "max_new_tokens", "root"}
    if unknown:
        raise CorralError(f"pal_judge grader: unknown field(s) {', '.join(sorted(unknown))}; "
                          "it takes model, name and max_new_tokens")
    if generator is None:
        if not spec.get("model"):
            raise CorralError("pal_judge grader: give \"model\", the judge model that writes "
                              "the programs (a run, a hub id or openai:MODEL)")
        from corral.infer.generators import generator_for

        generator = generator_for(spec["model"], root=spec.get("root", "runs"), key="model")
    judge = Judge(generator, rubric="pal", retries=0,
                  max_new_tokens=int(spec.get("max_new_tokens", 256)))
    return PalJudgeGrader(judge, spec.get("name", "pal_judge"))
