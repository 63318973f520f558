"""Program-aided answers and judges through the existing commands (issue 25): `corral eval
--strategy pal:N`, `corral chat --strategy pal`, `corral synth distill --strategy pal:N`,
`corral judge audit --rubric pal` and `corral feedback label --rubric pal`, each with a
scripted model whose programs really run in the sandbox, and one eval on the tiny model."""
import json
import re

import pytest

from corral.cli.app import main
from corral.graders import sandbox
from corral.infer.engine import Generation, SamplingParams
from corral.infer.remote import Usage
from corral.tasks import get_task
from corral.testing import save_tiny

pytestmark = pytest.mark.skipif(not sandbox.sandbox_status()[0],
                                reason=f"no sandbox here: {sandbox.sandbox_status()[1]}")
SUM = re.compile(r"What is (-?\d+) ([-+*]) (-?\d+)")


class Coder:
    """A model that writes a program for "What is A op B" (the right one on even samples, one
    that crashes on odd ones) and answers anything else "#### 0"."""

    def __init__(self, name="coder"):
        self.name, self.usage, self.asked = name, Usage(), 0

    def identity(self):
        return {"kind": "scripted", "model": self.name}

    def chat(self, conversations, params=None, *, return_errors=False):
        params = params or SamplingParams()
        out = []
        for k, conv in enumerate(conversations):
            self.asked += 1
            self.usage.requests += 1
            self.usage.completion_tokens += params.n
            sums = SUM.search(conv[-1]["content"])
            texts = [("```python\nprint(%s %s %s)\n```" % sums.groups() if j % 2 == 0 else
                      "```python\nraise ValueError('lost')\n```") if sums else "#### 0"
                     for j in range(params.n)]
            out.append([Generation(t, [1], [0.0], "stop", k, j) for j, t in enumerate(texts)])
        return out


@pytest.fixture
def coder(monkeypatch, tmp_path):
    import corral.eval.commands as eval_commands
    import corral.infer.generators as generators

    made = []

    def fake(spec, *args, **kw):
        made.append(Coder(spec))
        return made[-1]
    monkeypatch.setattr(generators, "generator_for", fake)
    monkeypatch.setattr(eval_commands, "load_generator", fake)
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return made


def test_eval_strategy_pal(coder, tmp_path, capsys):
    argv = ["eval", "--model", "m", "--task", "arithmetic", "--limit", "3", "--name", "p",
            "--strategy", "pal,pal:4"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "pal:4" in capsys.readouterr().out
    rows = [json.loads(x) for x in (tmp_path / "runs/p/samples.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"pal", "pal:4"} and len(rows) == 6
    assert all(r["passed"] for r in rows)  # the printed value is the graded answer
    four = [r for r in rows if r["strategy"] == "pal:4"]
    assert all(r["trace"][1]["unparsed"] == 2 and r["trace"][0]["sandbox_s"] > 0 for r in four)


def test_chat_strategy_pal(coder):
    from corral.strategies.chat import ChatOptions, chat

    reply = chat(ChatOptions(model="m", prompt="What is 6 * 7?", strategy="pal"))
    assert reply.text == "42" and reply.compute.calls == 1


def test_synth_distill_with_a_pal_teacher(coder, tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text("".join(
        json.dumps({"messages": [{"role": "user", "content": f"What is {i} + {i + 1}?"}]})
        + "\n" for i in range(3)))
    argv = ["synth", "distill", "--task", "in.jsonl", "--strategy", "pal:2", "--out",
            "d.jsonl"]
    assert main(argv) == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "d.jsonl.manifest.json").read_text())
    assert manifest["generator"]["strategy"] == "pal:2"  # lineage names the tool use
    rows = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [r["messages"][-1]["content"] for r in rows] == ["1", "3", "5"]


def samples_file(path, limit=6):
    with open(path, "w") as f:
        for it in get_task("arithmetic", split="dev", limit=limit).items:
            answer = it.fields["answer"]
            f.write(json.dumps({"source": it.source, "samples": [
                {"text": f"{answer}\n#### {answer}", "passed": True},
                {"text": f"#### {int(answer) + 1}", "passed": False}]}) + "\n")


def test_judge_audit_with_the_pal_rubric(coder, tmp_path, capsys):
    samples_file(tmp_path / "samples.jsonl")
    argv = ["judge", "audit", "--task", "arithmetic", "--limit", "6", "--samples",
            "samples.jsonl", "--rubric", "pal", "--out", "card.json"]
    assert main(argv) == 0, capsys.readouterr().err
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["judge"]["rubric"] == "pal" and "programs" in card["judge"]
    assert card["verification"]["balanced_accuracy"] == 1.0
    assert card["agreement"]["value"] == 1.0 and card["swap_consistency"]["value"] == 1.0
    assert card["judge_stats"]["programs"] == 6  # one program per question, all checks
    assert coder[-1].asked == 6


def test_feedback_label_with_the_pal_rubric(coder, tmp_path, capsys):
    samples_file(tmp_path / "samples.jsonl")
    argv = ["feedback", "label", "--task", "arithmetic", "--limit", "6", "--samples",
            "samples.jsonl", "--rubric", "pal", "--out", "pairs.jsonl"]
    assert main(argv) == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert all("\n####" in r["chosen"][-1]["content"] for r in rows)  # the right answers won


def test_pal_rubric_with_logprob_verdicts_refused(coder, tmp_path, capsys):
    samples_file(tmp_path / "samples.jsonl")
    argv = ["judge", "audit", "--task", "arithmetic", "--limit", "6", "--samples",
            "samples.jsonl", "--rubric", "pal", "--verdict", "logprob", "--out", "card.json"]
    assert main(argv) == 2
    assert "drop --verdict logprob" in capsys.readouterr().err


def test_pal_judge_as_a_cached_reward():
    from corral.graders.base import Sample
    from corral.graders.cached import CachedGrader
    from corral.graders.pal_judge import pal_judge_grader

    grader = CachedGrader(pal_judge_grader({"type": "pal_judge"}, generator=Coder()))
    item = {"messages": [{"role": "user", "content": "What is 3 * 4?"}]}
    scores = grader.grade_batch([(item, Sample.of("#### 12")), (item, Sample.of("13"))])
    assert [s.value for s in scores] == [1.0, 0.0] and grader.calls == 2
    assert grader.grade_batch([(item, Sample.of("#### 12"))])[0].value == 1.0
    assert grader.calls == 2  # cached


def test_eval_pal_on_the_tiny_model(tmp_path, monkeypatch, capsys):
    """The real path end to end: the tiny model's random programs are unparsed and shown."""
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    tiny = str(save_tiny(tmp_path / "tiny"))
    argv = ["eval", "--model", tiny, "--task", "arithmetic", "--limit", "2",
            "--max-new-tokens", "8", "--name", "t", "--strategy", "pal:2"]
    assert main(argv) == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (tmp_path / "runs/t/samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["trace"][1]["programs"] == 2 for r in rows)
    assert all(r["compute"]["completion_tokens"] > 0 for r in rows)
