"""The docs match the code: tests/doc_checks.py's checks over every doc, one test per check and
file (`-k docs/rl.md` runs one file's), and each check shown failing on a planted bad line."""
from __future__ import annotations

import pytest
from doc_checks import CHECKS, DOCS, ROOT, command_lines, standalone_problems


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("check", list(CHECKS))
def test_doc(check, doc):
    problems = CHECKS[check](doc, (ROOT / doc).read_text())
    assert not problems, "\n".join(problems)


def test_every_doc_is_checked_and_has_commands():
    assert {"README.md", "docs/rl.md", "docs/evaluation.md", "bench/README.md"} <= set(DOCS)
    found = sum(len(command_lines((ROOT / d).read_text())) for d in DOCS)
    assert found >= 60  # the extractor sees the docs' commands (fenced and indented blocks)


PLANTED = """# Planted

See `corral/kvcache.py`, `graders/judge9.py` and [graders](docs/graders.md); `corral.nowhere`.
Old: `corral.sft` → `corral.methods.sft`; `data.pairs` is a module; `tests/test_api_*.py`.
Tested by `test_planted_problems_are_caught`, not by `test_nothing_here`.
Good: `corral/infer/kvcache.py`, [rl](rl.md#resume), `corral.graders.judging.Judge`;
an old `rl.value_coef` is ignored.

    corral eval --model m --task arithmetic -n 8 -k 1,8      # fine
    corral rl --resume RUN
    corral eval --task arithmetic
    corral pairs --model M --task T [--nope 1]
    corral ppo rl.value_coef=0.1
    corral rft rl.n=eight
    corral sft config.yaml train.lr=2e-5 lora.r=16 --resume first # user's file, resume: fine
    corral ppo --help

```bash
corral grpo data.task=arithmetic \\
    rl.preset=dapo train.nope=1
corral <method> [config.yaml] [key=value ...]
corral rft data.task=gsm8k data.task_data=$GSM8K/test.jsonl rl.nope=${X}
```
```yaml
# corral rm
rm: {center_coef: 0.01}
train: {lr: fast}
```
```yaml
# examples/rm.yaml
rm: {center_coef: 0.5}
```
```python
api.train(api.TrainOptions("dpo", overrides=("dpo.beta=0.1", "dpo.nope=1"), resume_from=1))
api.run_eval(api.EvalOptions(model=["m"], task="arithmetic", samples=4))
```

The loss uses `rl.value_coef`, then `ppo.value_coef` and `rl.*`; `dpo.beta` on rl.md.
Bad: `corral rl --resume RUN`, `corral eval --nope`, `corral rft rl.n=8 rl.nope=1`, `--nope-flag`;
fine: `corral eval --strategy`, `corral grade validate|run`, `corral sft --resume RUN`.
Download `../shared/data/gsm8k`, as issue 12 and #12 said; `#### 4` is an answer.
Then `corral sft` takes `rl.n=4`.
Bench: `python bench/sft.py --model tiny --nope 3`; fine: `python bench/eval.py --few-shot 4`.
A span over a line break: `corral grpo --resume RUN
--nope-either`.
"""


def test_planted_problems_are_caught():
    doc = "docs/rl.md"  # links resolve from docs/, keys are scoped to the RL methods
    found = {name: check(doc, PLANTED) for name, check in CHECKS.items()}
    text = {name: "\n".join(p) for name, p in found.items()}
    assert "corral/kvcache.py" in text["paths"] and "corral/graders/judge9.py" in text["paths"]
    assert "corral.nowhere" in text["paths"] and "docs/graders.md" in text["paths"]
    assert "no test named test_nothing_here" in text["paths"] and len(found["paths"]) == 5
    assert len(found["links"]) == 1 and "docs/graders.md" in text["links"]
    bad = {p.split(":")[1] for p in found["commands"]}
    assert bad == {"10", "11", "12", "13", "14", "19", "22"}, text["commands"]
    assert "'rl.value_coef' is now 'ppo.value_coef'" in text["commands"]
    assert "train.nope" in text["commands"] and "unrecognized arguments: --nope" in text["commands"]
    assert [p.split(": ", 1)[1] for p in found["inline_commands"]] == [
        "no command `corral rl`", "`corral eval` has no flag --nope",
        "`corral rft` has no config key rl.nope", "`corral grpo` has no flag --nope-either"]
    assert len(found["yaml"]) == 2 and "'train.lr' must be a number" in text["yaml"]
    assert "differs from examples/rm.yaml" in text["yaml"]
    assert [p.split(": ", 1)[1] for p in found["python"]] == [
        "TrainOptions has no field resume_from",
        "TrainOptions('dpo'): unknown config key 'dpo.nope'; valid keys: loss, beta, "
        "label_smoothing, rpo_alpha, simpo_gamma, orpo_lambda, reference",
        "EvalOptions has no field samples"]
    assert [p.split(": ", 1)[1] for p in found["scripts"]] == ["bench/sft.py has no flag --nope"]
    assert [p.split(": ", 1)[1] for p in found["flags"]] == [
        "no command has the flag --nope-flag"]
    assert [p.split(": ", 1)[1] for p in found["keys"]] == [
        "config key rl.value_coef does not exist for any method",
        "config key dpo.beta does not exist for rft/grpo/ppo",
        "config key rl.nope does not exist for any method",
        "config key rl.n does not exist for sft"]
    assert [p.split(": ", 1)[0] for p in found["standalone"]] == ["docs/rl.md:41"] * 2


def test_planted_issue_numbers_each_caught():
    for line in ("as in issue 12", "see #7", "Issue-3 fixed", "(PR 4)",
                 "github.com/x/y/issues/5", "[r](results.md#evaluation-issue-3)"):
        assert standalone_problems("README.md", line), line
    for line in ("`#### 4`", "a #### -14 answer", "step #", "colour &#39;"):
        assert not standalone_problems("README.md", line), line


def test_commands_in_indented_and_fenced_blocks_are_found():
    lines = command_lines(PLANTED)
    assert [n for n, _ in lines] == [9, 10, 11, 12, 13, 14, 15, 16, 19, 22]
    assert lines[0][1] == ["eval", "--model", "m", "--task", "arithmetic", "-n", "8", "-k",
                           "1,8"]
    assert lines[-2][1][-1] == "train.nope=1"  # the continuation line joined
    assert lines[-1][1][2:] == ["data.task_data=1/test.jsonl", "rl.nope=1"]  # $X stands for 1
