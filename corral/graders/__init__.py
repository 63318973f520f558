"""Graders: the one scoring interface. `grade(item, sample) -> Score`."""
from corral.graders.base import Grader, Sample, Score

__all__ = ["Grader", "Sample", "Score"]
