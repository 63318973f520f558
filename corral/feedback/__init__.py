"""AI feedback: judges (judge.py, prompts.py), their audit (audit.py), judge-labelled
preference rows (label.py) and constitutional critique-and-revise (constitutional.py)."""
