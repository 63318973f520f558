"""`corral judge audit` and `corral feedback label` end to end: a scripted judge through the
CLI (card file, labelled rows, manifest with the card), the tiny model as a judge that never
gives a verdict (a clear stop), and missing inputs."""
import json
import re

import pytest

from corral.cli.app import main
from corral.data.readers import load_preference_records
from corral.tasks import get_task
from corral.testing import save_tiny
from tests.test_feedback_judge import Scripted


def arithmetic_oracle(conv):
    """Knows the sums: passes right answers, prefers a right one to a wrong one."""
    text = conv[0]["content"]
    a, op, b = re.search(r"What is (-?\d+) ([-+*]) (-?\d+)", text).groups()
    truth = str(eval(f"{a}{op}{b}"))  # the task's own small sums, not user input
    ok = lambda answer: answer.strip().endswith(f"#### {truth}")  # noqa: E731
    if "<response_a>" in text:
        x = text.split("<response_a>")[1].split("</response_a>")[0]
        y = text.split("<response_b>")[1].split("</response_b>")[0]
        return "[[A]]" if ok(x) and not ok(y) else "[[B]]" if ok(y) and not ok(x) else "[[C]]"
    return "Score: 1" if ok(text.split("<response>")[1].split("</response>")[0]) else "Score: 0"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    items = get_task("arithmetic", split="dev", limit=6).items
    with open("samples.jsonl", "w") as f:
        for it in items:
            answer = it.fields["answer"]
            f.write(json.dumps({"source": it.source, "samples": [
                {"text": f"#### {answer}", "passed": True},
                {"text": f"#### {int(answer) + 1}", "passed": False}]}) + "\n")
    return tmp_path


def test_audit_and_label_through_the_cli(workdir, monkeypatch, capsys):
    import corral.infer.generators as generators
    monkeypatch.setattr(generators, "generator_for",
                        lambda *a, **k: Scripted(arithmetic_oracle))
    args = ["--task", "arithmetic", "--limit", "6", "--samples", "samples.jsonl"]
    assert main(["judge", "audit", *args, "--out", "card.json"]) == 0
    card = json.loads((workdir / "card.json").read_text())
    assert card["agreement"]["value"] == 1.0 and card["verification"]["balanced_accuracy"] == 1
    assert "swap consistency: 1.00" in capsys.readouterr().out
    assert main(["feedback", "label", *args, "--out", "pairs.jsonl", "--kto-out",
                 "kto.jsonl"]) == 0
    out = capsys.readouterr().out
    assert "6 pairs judged in both orders: 6 consistent" in out
    assert "agrees with the grader on 6/6" in out
    assert len(load_preference_records(str(workdir / "pairs.jsonl"))) == 6
    manifest = json.loads((workdir / "pairs.jsonl.manifest.json").read_text())
    assert manifest["report_card"]["agreement"]["value"] == 1.0
    assert manifest["counts"]["consistent"] == 6 and manifest["judge"]["rubric"] == "correctness"
    assert (workdir / "kto.jsonl").read_text().count('"label": true') == 6


def test_a_judge_that_never_answers_in_format_stops_the_audit(workdir, capsys):
    tiny = save_tiny(workdir / "tiny")
    code = main(["judge", "audit", "--judge", tiny, "--task", "arithmetic", "--limit", "6",
                 "--samples", "samples.jsonl", "--retries", "1", "--judge-max-new-tokens", "8",
                 "--no-reasoning"])
    assert code == 2
    assert "gave no parsable verdict" in capsys.readouterr().err


def test_missing_inputs_are_one_line(workdir, capsys):
    assert main(["judge", "audit", "--task", "arithmetic", "--samples", "nope.jsonl"]) == 2
    assert "--samples nope.jsonl does not exist" in capsys.readouterr().err
    assert main(["feedback", "label", "--task", "arithmetic", "--split", "train", "--samples",
                 "samples.jsonl", "--out", "p.jsonl"]) == 2
    assert "no samples for the questions" in capsys.readouterr().err
    assert main(["judge", "audit", "--task", "arithmetic", "--samples", "samples.jsonl",
                 "--rubric", "mine.txt"]) == 2
    assert "--rubric mine.txt" in capsys.readouterr().err
    assert not (workdir / "p.jsonl").exists()
