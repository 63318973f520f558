"""Program-aided answers (PAL, Gao et al. 2022; Program of Thoughts, Chen et al. 2022): the
model writes a short Python program, corral runs it in the python graders' sandbox, and the
printed value is the answer.

    pal      one greedy program per item
    pal:N    N programs sampled at the strategy's temperature; the majority of the executed
             answers (votes are the grader's extracted answers where it extracts them)

The prompt is the item's last user turn after an instruction and code demonstrations: the
task's own (`task.code_few_shot`, (question, program) pairs) where it has them, else a
generic arithmetic set (`graders.programs.GENERIC_DEMOS`). A program that fails, loops, prints
nothing or prints a non-answer is *unparsed*: it does not vote, the trace counts it, and an
item whose every program is unparsed gets an empty answer (its trace says so) rather than a
silent wrong one. Compute: calls and tokens through the Meter like every strategy, and the
sandbox's wall seconds per item in the trace (`sandbox_s`); `pal_counts(outcomes)` totals
programs, unparsed programs, unanswered items and sandbox seconds for a summary.
"""
from __future__ import annotations

from corral.core.errors import CorralError
from corral.graders.base import Sample
from corral.graders.programs import (
    GENERIC_DEMOS,
    ProgramLimits,
    ProgramRun,
    extract_program,
    last_user_text,
    pal_conversation,
    printed_answer,
    require_program_sandbox,
    run_programs,
)
from corral.graders.rules import MathEquivalence, NumericAnswer
from corral.strategies.base import (
    Outcome,
    Strategy,
    item_conversation,
    majority_index,
    normalise,
    outcomes_of,
)

_EXTRACTORS = (NumericAnswer, MathEquivalence)

__all__ = ["ProgramAided", "pal_counts"]


class ProgramAided(Strategy):
    kind = "pal"

    def __init__(self, n: int | None = None, spec: str = "", demos=None,
                 limits: ProgramLimits = ProgramLimits(), **kw):
        super().__init__(spec, **kw)
        self.n, self.sample = n or 1, n is not None
        self.demos, self.limits = tuple(demos) if demos else GENERIC_DEMOS, limits
        if self.sample and self.n > 1 and self.temperature <= 0:
            raise CorralError(f"strategy {self.spec} samples {self.n} programs, which at "
                              "temperature 0 are one program repeated; give a temperature "
                              "above 0")
        require_program_sandbox(f"strategy {self.spec}")  # before any model loads

    def check(self, task) -> None:
        demos = getattr(task, "code_few_shot", None)
        if demos:
            self.demos = tuple((str(q), str(code)) for q, code in demos)

    def run(self, items, generator, grader=None) -> list[Outcome]:
        meter = self._start(items, grader)
        conversations = [pal_conversation(last_user_text(item_conversation(it)), self.demos)
                         for it in items]
        params = self.sampled(self.n) if self.sample else self.greedy()
        gens = meter.chat(generator, list(range(len(items))), conversations, params)
        replies = [[g.text for g in per_item] for per_item in gens]
        programs = [extract_program(t) for per_item in replies for t in per_item]
        runnable = [k for k, p in enumerate(programs) if p]
        info: dict = {}
        done = run_programs([programs[k] for k in runnable], self.limits, info)
        runs = [ProgramRun("", "error: the reply holds no program")] * len(programs)
        for k, run in zip(runnable, done):
            runs[k] = run
        share = (info.get("startup_s") or 0.0) / max(1, len(items))
        return self._pick(meter, items, replies, programs, runs, grader, share)

    def _pick(self, meter, items, replies, programs, runs, grader, startup) -> list[Outcome]:
        checked = [printed_answer(r) for r in runs]
        values, whys = [v for v, _ in checked], [w for _, w in checked]
        owners = [it for it, per_item in zip(items, replies) for _ in per_item]
        parsed = [k for k, v in enumerate(values) if v is not None]
        keys: list[str | None] = [None] * len(values)
        for k, key in zip(parsed, _keys([owners[k] for k in parsed],
                                        [values[k] for k in parsed], grader)):
            keys[k] = key
        for k in parsed:  # the grader extracts answers and found none in this one
            if keys[k] is None:
                whys[k] = f"no answer in what it printed: {values[k][:80]!r}"
        answers, traces, i = [], [], 0
        for per_item in replies:
            mine = range(i, i + len(per_item))
            i += len(per_item)
            votes = [keys[k] for k in mine]
            unparsed = sum(v is None for v in votes)
            pick = majority_index(votes) if unparsed < len(votes) else None
            answers.append("" if pick is None else values[mine[pick]])
            seconds = startup + sum(runs[k].seconds for k in mine)
            traces.append([
                {"step": "programs", "replies": per_item, "programs": [programs[k] for k in mine],
                 "outputs": [runs[k].stdout[-500:] for k in mine],
                 "unparsed_why": [whys[k] or None for k in mine], "votes": votes,
                 "sandbox_s": round(seconds, 4)},
                {"step": "pick", "index": pick, "answer": None if pick is None else votes[pick],
                 "programs": len(votes), "unparsed": unparsed, "answered": pick is not None}])
        return outcomes_of(meter, answers, traces)


def _keys(owners, values: list[str], grader) -> list[str | None]:
    """Each printed value's vote: the grader's extracted answer where the grader extracts
    answers (a numeric or math grader always does: a value it finds none in is no vote),
    else the value, case and spacing ignored."""
    if grader is None or not values:
        return [normalise(v) for v in values]
    scores = grader.grade_batch([(it.grader_item(), Sample.of(v))
                                 for it, v in zip(owners, values)])
    answers = [getattr(s, "answer", None) for s in scores]
    if any(a is not None for a in answers) or isinstance(grader, _EXTRACTORS):
        return [None if a is None else str(a) for a in answers]
    return [normalise(v) for v in values]


def pal_counts(outcomes) -> dict:
    """Programs written, unparsed programs, items left without an answer and sandbox seconds,
    over the outcomes of a program-aided run (a summary row's extra columns)."""
    picks = [s for o in outcomes for s in o.trace if s.get("step") == "pick" and "answered" in s]
    runs = [s for o in outcomes for s in o.trace if s.get("step") == "programs"]
    return {"programs": sum(p["programs"] for p in picks),
            "unparsed": sum(p["unparsed"] for p in picks),
            "unanswered": sum(not p["answered"] for p in picks),
            "sandbox_s": round(sum(r.get("sandbox_s", 0.0) for r in runs), 4)}
