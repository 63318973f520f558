"""Several graders as one weighted sum (RL rewards mixing correctness and format, say)."""
from __future__ import annotations

import math

from corral.graders.base import BaseGrader, Score, score_error


class WeightedGraders(BaseGrader):
    """Several graders as one: reward = Σ weight_i · value_i (details keep each value)."""
    name = "weighted"

    def __init__(self, parts: list):
        self.parts = [(g, float(w)) for g, w in parts]

    def grade_batch(self, pairs):
        columns = [(g.grade_batch(pairs), w, getattr(g, "name", f"grader{i}"))
                   for i, (g, w) in enumerate(self.parts)]
        out = []
        for j in range(len(pairs)):
            scores = [(c[j], w, name) for c, w, name in columns]
            value = math.fsum(w * s.value for s, w, _ in scores)
            first = scores[0][0]
            details = {name: s.value for s, _, name in scores}
            failed = [(name, score_error(s)) for s, _, name in scores if score_error(s)]
            if failed:  # a part that could not grade is an error of the sum, not a quiet 0
                details.update(error=f"{failed[0][0]}: {failed[0][1]}", error_kind="other_error")
            out.append(Score(value=value, passed=first.passed, answer=first.answer,
                             details=details))
        return out

    def grade(self, item, sample):
        return self.grade_batch([(item, sample)])[0]
