"""`corral advise`: which rung to climb next, from measurements of the task and the models.

signals.py measures (dev scores, pass@k, the model as a judge of its own answers, data and
memory), cache.py keeps the measurements per model under `<root>/advise/`, rules.py turns them
into ranked recommendations (a pure function), lines.py writes the commands they name,
commands.py is the library call (`AdviseOptions`, `advise`, `Advice`) and report.py its text.
"""
