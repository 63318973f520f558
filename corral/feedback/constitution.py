"""Old import path, kept working: a constitution's principles now live in
`corral.feedback.principles` (this name collided with `constitutional.py`, the CAI jobs)."""
import sys

from corral.feedback import principles

sys.modules[__name__] = principles
