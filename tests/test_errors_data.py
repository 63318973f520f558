"""Row shapes that used to be trained on as they were, and file-level mistakes of `split`
(issue 14): each is refused with file:line or reported, and nothing is half-written."""
import json

import pytest

from corral.cli.app import main
from corral.core.errors import CorralError
from corral.data.readers import load_preference_records, load_sft_records

U, A, S = ({"role": r, "content": c} for r, c in
           (("user", "what is 2+2?"), ("assistant", "4"), ("system", "be brief")))
B = {"role": "assistant", "content": "5"}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("row, needle", [
    ({"prompt": [U], "chosen": [U, A], "rejected": [U, B]}, "'chosen' repeats the 'prompt'"),
    ({"prompt": [U], "chosen": [A], "rejected": [S, B]}, "'rejected' message 0 has role 'system'"),
    ({"prompt": [U], "chosen": [A, U, A], "rejected": [B]}, "'chosen' message 1 has role 'user'"),
])
def test_preference_responses_hold_only_the_reply(tmp_path, row, needle):
    path = write(tmp_path / "p.jsonl", [{"prompt": [U], "chosen": [A], "rejected": [B]}, row])
    with pytest.raises(CorralError) as exc:
        load_preference_records(path)
    assert f"p.jsonl:2: {needle}" in str(exc.value)


def test_good_preference_shapes_still_load(tmp_path):
    rows = [{"prompt": [U], "chosen": [A], "rejected": [B]},
            {"chosen": [U, A], "rejected": [U, B]},  # implicit prompt: shared turns
            {"prompt": "2+2?", "chosen": "4", "rejected": "5"}]
    assert len(load_preference_records(write(tmp_path / "p.jsonl", rows))) == 3


def test_a_conversation_that_starts_with_the_assistant_is_refused(tmp_path):
    path = write(tmp_path / "c.jsonl", [{"messages": [U, A]}, {"messages": [S, A, U, A]}])
    with pytest.raises(CorralError, match=r"c.jsonl:2: 'messages' starts with the assistant "
                                          r"\(message 1\)"):
        load_sft_records(path)


def test_a_row_truncated_past_its_answer_stops_sft(tmp_path, monkeypatch, capsys):
    from corral.testing import save_tiny

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    tiny = save_tiny(tmp_path / "tiny")
    long = {"messages": [{"role": "user", "content": "word " * 400}, A]}
    write(tmp_path / "c.jsonl", [{"messages": [U, A]}, long])
    assert main(["sft", f"model.name={tiny}", "data.train=c.jsonl", "data.max_length=120",
                 "train.max_steps=1", "lora.r=4", "train.progress=false"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert "c.jsonl:2: data.max_length=120 cuts every trained token" in err, err
    assert not (tmp_path / "runs").exists()


def test_split_of_an_empty_file_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["split", str(tmp_path / "empty.jsonl")]) == 2
    assert "no rows to split" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.jsonl"]


def test_split_reports_duplicate_rows_and_keeps_them_together(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, A]} for i in range(30)]
    write(tmp_path / "d.jsonl", rows + rows[:3])
    assert main(["split", str(tmp_path / "d.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "3 rows repeat an earlier row (e.g. " in out and "d.jsonl:31 repeats" in out
    lines = {n: (tmp_path / f"d.{n}.jsonl").read_text().splitlines()
             for n in ("train", "dev", "unseen")}
    assert sum(map(len, lines.values())) == 33
    for row in rows[:3]:  # both copies in one split, never across
        assert sum(json.dumps(row) in ls for ls in lines.values()) == 1
