"""Old import path, kept working: the judge's prompts and parsers now live in
`corral.graders.judge_prompts`."""
import sys

from corral.graders import judge_prompts

sys.modules[__name__] = judge_prompts
