"""AI feedback jobs over the one judge (`corral.graders.judging`): its audit (audit.py),
judge-labelled preference rows (label.py), a constitution's principles (principles.py) and
constitutional critique-and-revise (constitutional.py); the commands as library calls
(commands.py). `judge.py`, `prompts.py` and `constitution.py` are old import paths."""
