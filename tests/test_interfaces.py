"""docs/interfaces.md, the Python API page: its runnable example is run exactly as written
(on the tiny model it makes), and it names every function of corral.api."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "interfaces.md"


def example() -> str:
    """The one python block under '## A runnable example'."""
    section = DOC.read_text(encoding="utf-8").split("## A runnable example", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the example section holds exactly one python block"
    return blocks[0]


def test_the_docs_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    exec(compile(example(), str(DOC), "exec"), {"__name__": "__example__"})
    out = capsys.readouterr().out
    counts = eval(re.search(r"split: (\{.*\})", out).group(1))  # noqa: S307 (our own print)
    assert sum(counts.values()) == 40 and counts["unseen"] > 0
    assert len(re.findall(r"unseen pass@1: ", out)) == 3  # base, SFT and RFT graded
    assert (tmp_path / "runs" / "my-rft" / "final").is_dir()
    assert (tmp_path / "runs" / "final" / "samples.jsonl").is_file()
    assert re.search(r"judge: \[[-\d.e]+, [-\d.e]+\]", out)  # logprob verdicts: never unparsed


def test_the_doc_names_every_api_function_and_options_class():
    from corral import api

    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in api.__all__ if f"`{name}" not in text and f"{name}(" not in text]
    assert not missing, f"docs/interfaces.md does not mention {missing}"


def test_the_doc_names_only_modules_that_exist():
    text = DOC.read_text(encoding="utf-8")
    paths = set(re.findall(r"`(corral/[\w/]+\.py)`", text))
    assert paths and all((ROOT / p).is_file() for p in paths), paths
