"""Old import path, kept working: the judge now lives in `corral.graders.judging`."""
import sys

from corral.graders import judging

sys.modules[__name__] = judging
