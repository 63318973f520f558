"""Strategies that revise an answer: self-refine (the model critiques itself) and
Reflexion-style retries (the grader's verdict and feedback drive the next attempt).

Both batch by round: round r sends, in one call, the conversations of every item still
being revised, so items that are done stop costing anything."""
from __future__ import annotations

from corral.graders.base import Sample, check_grader_errors, passed
from corral.graders.judge_prompts import SATISFIED, critique_turn, satisfied
from corral.strategies.base import Outcome, Strategy, item_conversation, outcomes_of

# The one critique (graders/judge_prompts.py), asked as a follow-up turn: the critic sees the
# conversation with the answer, so the request is all the turn needs.
CRITIQUE_PROMPT = critique_turn(
    "Review your answer above for mistakes: wrong facts, wrong arithmetic, steps that do not "
    "follow, or instructions of the request it does not follow.")
REVISE_PROMPT = (
    "A reviewer found these problems with your answer:\n{critique}\n\n"
    "Write an improved answer to the original request that fixes them, following the "
    "request's instructions. Reply with the new answer only.")
RETRY_PROMPT = (
    "Your answer was judged incorrect. Feedback: {feedback}\n\n"
    "Think about what went wrong, then answer the original request again, following its "
    "instructions.")


def is_satisfied(critique: str) -> bool:
    """The one rule SL-CAI uses too (`judge_prompts.satisfied`): the critic's last line is
    NO ISSUES. "No issues, except ..." is a critique, not a pass."""
    return satisfied(critique)


__all__ = ["CRITIQUE_PROMPT", "REVISE_PROMPT", "RETRY_PROMPT", "SATISFIED", "Reflexion",
           "SelfRefine", "feedback_text", "is_satisfied"]


class SelfRefine(Strategy):
    """Generate, then up to `rounds` times: critique (the same generator, or `critic`), stop
    when the critic's reply ends with the line NO ISSUES, else revise with the critique in the
    prompt."""
    kind = "refine"

    def __init__(self, rounds: int, critic=None, spec: str = "", **kw):
        super().__init__(spec, **kw)
        self.rounds, self.critic = rounds, critic

    def run(self, items, generator, grader=None) -> list[Outcome]:
        meter = self._start(items, grader)
        critic = self.critic or generator
        base = [item_conversation(it) for it in items]
        gens = meter.chat(generator, list(range(len(items))), base, self.greedy())
        answers = [g[0].text for g in gens]
        traces = [[{"round": 0, "step": "answer", "text": a}] for a in answers]
        active = list(range(len(items)))
        for r in range(1, self.rounds + 1):
            if not active:
                break
            reviews = [base[i] + [{"role": "assistant", "content": answers[i]},
                                  {"role": "user", "content": CRITIQUE_PROMPT}] for i in active]
            critiques = [g[0].text for g in meter.chat(critic, active, reviews, self.greedy())]
            todo = []
            for i, critique in zip(active, critiques):
                ok = is_satisfied(critique)
                traces[i].append({"round": r, "step": "critique", "text": critique,
                                  "satisfied": ok})
                if not ok:
                    todo.append((i, critique))
            revisions = [base[i] + [{"role": "assistant", "content": answers[i]},
                                    {"role": "user",
                                     "content": REVISE_PROMPT.format(critique=c.strip())}]
                         for i, c in todo]
            owners = [i for i, _ in todo]
            for i, g in zip(owners, meter.chat(generator, owners, revisions, self.greedy())):
                answers[i] = g[0].text
                traces[i].append({"round": r, "step": "revise", "text": answers[i]})
            active = owners
        return outcomes_of(meter, answers, traces)


def feedback_text(score, answer: str) -> str:
    """What the grader said about a wrong answer, without the reference: its `feedback` (or
    `reason`, `critique`), a judge's reply, the instructions not followed; else a plain
    verdict naming the answer it saw."""
    details = getattr(score, "details", None) or {}
    for key in ("feedback", "reason", "critique", "reply"):
        if isinstance(details.get(key), str) and details[key].strip():
            return details[key].strip()
    missed = [str(r.get("id")) for r in details.get("instructions") or []
              if isinstance(r, dict) and not r.get("followed")]
    if missed:
        return "these instructions were not followed: " + ", ".join(missed) + "."
    shown = score.answer if getattr(score, "answer", None) is not None else \
        " ".join(answer.split())[:200]
    return f"your answer {shown!r} was judged incorrect."


class Reflexion(Strategy):
    """Answer, grade, and retry the items the grader failed, up to `rounds` times, each
    retry seeing every earlier attempt and its feedback (the episodic memory of Reflexion).
    It uses the task's grader as the evaluator, so its score is the oracle-feedback upper
    bound of the method, not a deployable number without one."""
    kind = "reflexion"
    needs_grader = True

    def __init__(self, rounds: int, spec: str = "", **kw):
        super().__init__(spec, **kw)
        self.rounds = rounds

    def run(self, items, generator, grader=None) -> list[Outcome]:
        meter = self._start(items, grader)
        history = [item_conversation(it) for it in items]
        answers = [""] * len(items)
        traces: list[list] = [[] for _ in items]
        active = list(range(len(items)))
        for r in range(self.rounds + 1):
            gens = meter.chat(generator, active, [history[i] for i in active], self.greedy())
            for i, g in zip(active, gens):
                answers[i] = g[0].text
            scores = grader.grade_batch([(items[i].grader_item(), Sample.of(answers[i]))
                                         for i in active])
            check_grader_errors(scores, grader)
            failed = []
            for i, score in zip(active, scores):
                ok = passed(score)
                step = {"round": r, "step": "answer", "text": answers[i], "passed": ok}
                if not ok and r < self.rounds:
                    step["feedback"] = feedback_text(score, answers[i])
                    history[i] = history[i] + [
                        {"role": "assistant", "content": answers[i]},
                        {"role": "user", "content": RETRY_PROMPT.format(
                            feedback=step["feedback"])}]
                    failed.append(i)
                traces[i].append(step)
            active = failed
            if not active:
                break
        return outcomes_of(meter, answers, traces)
