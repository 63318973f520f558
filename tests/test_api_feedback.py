"""The judge and feedback commands as library calls: each command's CLI run and its library
call with the same options write the same files (`corral judge audit`, `corral feedback
label`, `corral feedback constitutional`), and the commands that make training data refuse
sealed unseen prompts (`--split unseen`, or a prompt file that is a sealed unseen split)."""
import json
import re
from pathlib import Path

import pytest

from corral.api.feedback import (
    AuditOptions,
    ConstitutionalOptions,
    LabelOptions,
    constitutional,
    judge_audit,
    label,
)
from corral.cli.app import main
from corral.infer.engine import Generation, SamplingParams
from corral.infer.remote import Usage
from corral.tasks import get_task

VOLATILE = {"created", "wall_s", "corral_version", "started", "finished", "updated"}


class Scripted:
    """A generator answering from reply(conversation): an arithmetic oracle as a judge, a
    versioning policy and a critic for constitutional AI."""

    def __init__(self, name):
        self.name, self.usage = name, Usage()

    def identity(self):
        return {"kind": "scripted", "name": self.name}

    def chat(self, conversations, params=None, *, return_errors=False):
        params = params or SamplingParams()
        out = []
        for k, conv in enumerate(conversations):
            self.usage.requests += 1
            out.append([Generation(reply(conv, j), [1], [0.0], "stop", k, j)
                        for j in range(params.n)])
        return out


def reply(conv, j) -> str:
    text = conv[-1]["content"]
    sums = re.search(r"What is (-?\d+) ([-+*]) (-?\d+)", conv[0]["content"])
    if "<critique>" in text:  # a revision
        return "a shorter answer"
    if "NO ISSUES" in text:  # a critique
        return "NO ISSUES" if "shorter" in text else "Too long."
    if sums and ("<response" in text):  # the judge
        truth = str(eval("".join(sums.groups())))  # the task's own small sums
        ok = lambda a: a.strip().endswith(f"#### {truth}")  # noqa: E731
        if "<response_a>" in text:
            x = text.split("<response_a>")[1].split("</response_a>")[0]
            y = text.split("<response_b>")[1].split("</response_b>")[0]
            return "[[A]]" if ok(x) and not ok(y) else "[[B]]" if ok(y) and not ok(x) \
                else "[[C]]"
        return "Score: 1" if ok(text.split("<response>")[1].split("</response>")[0]) \
            else "Score: 0"
    return f"a long answer {j}"


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    import corral.infer.generators as generators

    made = []

    def fake(spec, root="runs", batch_size=16, **kw):
        made.append(Scripted(spec))
        return made[-1]
    monkeypatch.setattr(generators, "generator_for", fake)
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    return made


def samples_file(folder: Path) -> None:
    items = get_task("arithmetic", split="dev", limit=6).items
    with open(folder / "samples.jsonl", "w") as f:
        for it in items:
            answer = it.fields["answer"]
            f.write(json.dumps({"source": it.source, "samples": [
                {"text": f"#### {answer}", "passed": True},
                {"text": f"#### {int(answer) + 1}", "passed": False}]}) + "\n")


def prompts_file(path: Path, n: int = 3) -> str:
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content":
                                                      f"Tell me about the number {i}."}]})
                            + "\n" for i in range(n)))
    return str(path)


def stable(value):
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def contents(folder: Path) -> dict:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            try:
                value = json.loads(text)
            except ValueError:
                value = [json.loads(line) for line in text.splitlines() if line.strip()]
            out[str(path.relative_to(folder))] = stable(value)
    return out


def same_files(tmp_path, monkeypatch, prepare, argv, library):
    """Run the CLI in one folder and the library call in another; their files agree."""
    cli, lib = tmp_path / "cli", tmp_path / "lib"
    for folder in (cli, lib):
        folder.mkdir()
        prepare(folder)
    monkeypatch.chdir(cli)
    assert main(argv) == 0
    monkeypatch.chdir(lib)
    result = library()
    assert contents(cli) == contents(lib) and len(contents(cli)) > 1
    return result


def test_judge_audit_cli_and_library_write_the_same_card(tmp_path, monkeypatch, fakes):
    argv = ["judge", "audit", "--task", "arithmetic", "--limit", "6", "--samples",
            "samples.jsonl", "--out", "card.json"]
    result = same_files(tmp_path, monkeypatch, samples_file, argv, lambda: judge_audit(
        AuditOptions(task="arithmetic", limit=6, samples="samples.jsonl", out="card.json")))
    assert result.card["agreement"]["value"] == 1.0 and "swap consistency" in result.text
    assert (tmp_path / "lib" / "card.json").is_file()


def test_feedback_label_cli_and_library_write_the_same_rows(tmp_path, monkeypatch, fakes):
    argv = ["feedback", "label", "--task", "arithmetic", "--limit", "6", "--samples",
            "samples.jsonl", "--out", "pairs.jsonl", "--kto-out", "kto.jsonl"]
    result = same_files(tmp_path, monkeypatch, samples_file, argv, lambda: label(
        LabelOptions(task="arithmetic", limit=6, samples="samples.jsonl", out="pairs.jsonl",
                     kto_out="kto.jsonl")))
    assert result.counts["consistent"] == 6 and "agrees with the grader on 6/6" in result.summary
    names = sorted(p.name for p in (tmp_path / "lib").iterdir())
    assert {"pairs.jsonl", "pairs.jsonl.manifest.json", "kto.jsonl"} <= set(names)


def test_feedback_constitutional_cli_and_library_write_the_same_rows(tmp_path, monkeypatch,
                                                                      fakes):
    argv = ["feedback", "constitutional", "--prompts", "prompts.jsonl", "--rounds", "2",
            "--out", "cai.jsonl"]
    result = same_files(tmp_path, monkeypatch, lambda f: prompts_file(f / "prompts.jsonl"),
                        argv, lambda: constitutional(ConstitutionalOptions(
                            prompts="prompts.jsonl", rounds=2, out="cai.jsonl")))
    assert result.mode == "sl" and result.counts["written"] == 3
    assert result.counts["revised"] == 3 and result.counts["satisfied_later"] == 3
    rows = [json.loads(line) for line in (tmp_path / "lib" / "cai.jsonl").read_text().splitlines()]
    assert rows[0]["messages"][-1]["content"] == "a shorter answer"


# ---------------------------------------------------------------- the sealed-split guard
def sealed_prompts(tmp_path, monkeypatch) -> str:
    """A prompt file that is the unseen part of a `corral split` (sealed in CORRAL_HOME)."""
    from corral.data.splits import split_file

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    counts = split_file(prompts_file(tmp_path / "all.jsonl", n=40), dev=0.0, unseen=0.5)
    assert counts["unseen"] > 0
    return str(tmp_path / "all.unseen.jsonl")


GUARDED = {
    "label": ["feedback", "label", "--samples", "samples.jsonl", "--out", "p.jsonl"],
    "constitutional": ["feedback", "constitutional", "--out", "c.jsonl"],
}


@pytest.mark.parametrize("command", sorted(GUARDED))
def test_feedback_commands_refuse_the_unseen_split(command, tmp_path, monkeypatch, capsys,
                                                   fakes):
    monkeypatch.chdir(tmp_path)
    argv = GUARDED[command] + ["--task", "arithmetic", "--split", "unseen"]
    assert main(argv) == 2
    assert "--split unseen" in capsys.readouterr().err and not fakes


@pytest.mark.parametrize("command", sorted(GUARDED))
def test_feedback_commands_refuse_a_sealed_prompt_file(command, tmp_path, monkeypatch, capsys,
                                                       fakes):
    unseen = sealed_prompts(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    flag = "--prompts" if command == "constitutional" else "--task"
    assert main(GUARDED[command] + [flag, unseen]) == 2
    err = capsys.readouterr().err
    assert "sealed unseen split" in err and "all.unseen.jsonl:1" in err and not fakes
    assert not list(tmp_path.glob("p.jsonl*")) and not list(tmp_path.glob("c.jsonl*"))
    if command == "constitutional":  # the train part is fine
        assert main(GUARDED[command] + [flag, str(tmp_path / "all.train.jsonl")]) == 0
    with pytest.raises(Exception, match="sealed unseen split"):
        if command == "label":
            label(LabelOptions(task=unseen, samples="samples.jsonl", out="p.jsonl"))
        else:
            constitutional(ConstitutionalOptions(prompts=unseen, out="c.jsonl"))
