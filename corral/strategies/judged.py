"""best-of-n:N:judge's scorer: the model being evaluated judges its own samples through the
one judge (`corral.graders.judging.Judge`)."""
from __future__ import annotations

from corral.graders.judging import Judge
from corral.strategies.base import Compute


class JudgeScorer:
    """best-of-n:N:judge — the model being evaluated judges its own samples (correctness
    rubric, verdict only: the likelier of Yes/No for a local model), and each answer is
    charged its share of the judge's calls and tokens (`last_compute`), so the strategy is
    compared at what it really costs."""

    def __init__(self, generator, max_new_tokens: int):
        verdict = "logprob" if hasattr(generator, "choice_logprobs") else "generate"
        self.judge = Judge(generator, rubric="correctness", reasoning=False,
                           max_new_tokens=min(32, max_new_tokens), verdict=verdict)
        self.last_compute: list[Compute] = []

    def score(self, conversations, answers) -> list[float]:
        usage = self.judge.generator.usage
        before = (self.judge.stats.calls, usage.prompt_tokens, usage.completion_tokens)
        verdicts = self.judge.score(conversations, answers)
        spent = (self.judge.stats.calls - before[0], usage.prompt_tokens - before[1],
                 usage.completion_tokens - before[2])
        n = max(1, len(answers))
        self.last_compute = [Compute(*(x // n + (k < x % n) for x in spent))
                             for k in range(len(answers))]
        return [v.value if v.value is not None else -1.0 for v in verdicts]
