"""Step-wise beam search for tasks whose answers have steps (one step = one line): each beam
is extended by sampled next lines, the partial solutions are scored by a critic, and the
best `width` per item survive, for up to `depth` steps.

The critic is a Scorer when one is given (a process reward model, a judge), else the same
generator asked to rate each partial solution from 0 to 10; its calls are the strategy's
compute too. A beam ends when the model replies DONE (or nothing) for its next line."""
from __future__ import annotations

import re
from dataclasses import dataclass

from corral.core.errors import CorralError
from corral.strategies.base import Outcome, Strategy, item_conversation, outcomes_of

FIRST_STEP = "Write only the first line of your answer; the next lines come later."
NEXT_STEP = ("Continue your answer above: write only its next line. If the answer is already "
             "complete, reply DONE.")
RATE_PROMPT = ("Rate your partial answer above from 0 to 10: how likely is it to lead to a "
               "correct, complete answer to the request? Reply with the number only.")
DONE = "DONE"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Beam:
    steps: tuple[str, ...]
    score: float = 0.0
    done: bool = False

    @property
    def text(self) -> str:
        return "\n".join(self.steps)


def step_conversation(base: list[dict], steps: tuple[str, ...]) -> list[dict]:
    """Ask for one more line: the partial answer stands as the assistant's turn (chat
    templates cannot continue an open assistant turn, so the model is asked to)."""
    if not steps:
        last = base[-1]
        return base[:-1] + [{**last, "content": f"{last['content']}\n\n{FIRST_STEP}"}]
    return base + [{"role": "assistant", "content": "\n".join(steps)},
                   {"role": "user", "content": NEXT_STEP}]


def parse_rating(text: str) -> float:
    """The critic's first number, clamped to 0..10; a reply without one rates 0."""
    found = _NUMBER.search(text)
    return min(max(float(found.group()), 0.0), 10.0) if found else 0.0


def is_done(step: str) -> bool:
    return not step or step.strip().rstrip(".").upper() == DONE


class BeamSearch(Strategy):
    """`width` beams per item, `depth` steps at most; `width` sampled next lines per beam."""
    kind = "beam"

    def __init__(self, width: int, depth: int, scorer=None, spec: str = "", **kw):
        super().__init__(spec, **kw)
        self.width, self.depth, self.scorer = width, depth, scorer
        if self.temperature <= 0 and width > 1:
            raise CorralError(f"strategy {self.spec} samples {width} next lines per beam, which "
                              "at temperature 0 are one line repeated; give a temperature above 0")

    def check(self, task) -> None:
        solutions = [s for s in getattr(task, "solutions", None) or [] if s]
        name = getattr(task, "name", "this task")
        if not solutions:
            raise CorralError(f"strategy {self.spec} searches over the lines of an answer, and "
                              f"task '{name}' has no reference solutions to show that its "
                              "answers have steps; use best-of-n, majority, refine or debate")
        stepped = sum(len([x for x in s.splitlines() if x.strip()]) >= 2 for s in solutions)
        if 2 * stepped < len(solutions):
            raise CorralError(f"strategy {self.spec} searches over the lines of an answer, and "
                              f"task '{name}' answers in one line; use best-of-n, majority, "
                              "refine or debate")

    def run(self, items, generator, grader=None) -> list[Outcome]:
        meter = self._start(items, grader)
        base = [item_conversation(it) for it in items]
        beams = [[Beam(())] for _ in items]
        traces: list[list] = [[] for _ in items]
        for depth in range(1, self.depth + 1):
            open_ = [(i, b) for i, bs in enumerate(beams) for b in bs if not b.done]
            if not open_:
                break
            gens = meter.chat(generator, [i for i, _ in open_],
                              [step_conversation(base[i], b.steps) for i, b in open_],
                              self.sampled(self.width, stop=("\n",)))
            candidates = [[b for b in bs if b.done] for bs in beams]
            fresh = []
            for (i, parent), samples in zip(open_, gens):
                for g in samples:
                    step = g.text.strip()
                    child = Beam(parent.steps, parent.score, True) if is_done(step) else \
                        Beam(parent.steps + (step,))
                    if any(c.steps == child.steps and c.done == child.done
                           for c in candidates[i]):
                        continue
                    candidates[i].append(child)
                    if not child.done:
                        fresh.append((i, len(candidates[i]) - 1))
            for (i, k), value in zip(fresh, self._rate(meter, generator, base, candidates,
                                                        fresh)):
                candidates[i][k] = Beam(candidates[i][k].steps, value)
            for i, cands in enumerate(candidates):
                ranked = sorted(range(len(cands)), key=lambda k: -cands[k].score)
                beams[i] = [cands[k] for k in ranked[:self.width]] or beams[i]
                traces[i].append({"depth": depth, "kept": [
                    {"text": b.text, "score": b.score, "done": b.done} for b in beams[i]]})
        answers = [max(bs, key=lambda b: b.score).text for bs in beams]
        return outcomes_of(meter, answers, traces)

    def _rate(self, meter, generator, base, candidates, fresh) -> list[float]:
        """Scores of the new partial solutions: the Scorer's, or the model's own 0-10 rating."""
        if not fresh:
            return []
        texts = [candidates[i][k].text for i, k in fresh]
        if self.scorer is not None:
            return [float(v) for v in self.scorer.score([base[i] for i, _ in fresh], texts)]
        asks = [base[i] + [{"role": "assistant", "content": t},
                           {"role": "user", "content": RATE_PROMPT}]
                for (i, _), t in zip(fresh, texts)]
        replies = meter.chat(generator, [i for i, _ in fresh], asks, self.greedy(8))
        return [parse_rating(g[0].text) for g in replies]
