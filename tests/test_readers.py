"""Tests for corral.data.readers: file formats, per-row validation messages, hashing."""
import hashlib
import json
import sys
import types

import pytest

from corral.core.errors import CorralError
from corral.core.records import Chat, Completion, Feedback, Item, Message, Preference, Text
from corral.data.readers import (
    content_hash,
    file_sha256,
    load_feedback_records,
    load_items,
    load_preference_records,
    load_sft_records,
    read_rows,
)


def user(text):
    return {"role": "user", "content": text}


def bot(text, **extra):
    return {"role": "assistant", "content": text, **extra}


def write_lines(tmp_path, rows, name="data.jsonl"):
    """Write rows (dicts are JSON-encoded, strings written as-is) one per line."""
    path = tmp_path / name
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def problem_for(error, source):
    """The one line of a CorralError message that reports `source`."""
    lines = [line for line in str(error).splitlines() if line.startswith(f"{source}: ")]
    assert len(lines) == 1, str(error)
    return lines[0]


GOOD_ROW = {
    load_sft_records: {"messages": [user("hi"), bot("hello")]},
    load_preference_records: {"prompt": "hi", "chosen": "hello", "rejected": "go away"},
    load_feedback_records: {"prompt": "hi", "completion": "hello", "label": True},
    load_items: {"prompt": "What is 2+2?", "answer": "4"},
}

SFT, PREF, FEEDBACK, ITEMS = (load_sft_records, load_preference_records,
                              load_feedback_records, load_items)

BAD_ROWS = [
    # (loader, row on line 2, phrase expected in that line's problem)
    (SFT, '{"messages": [', "not valid JSON"),
    (SFT, "[1, 2]", "row is a list, not a JSON object"),
    (SFT, '"just text"', "row is a string, not a JSON object"),
    (SFT, {"prompt": "x", "response": "y"},
     "no recognised format: the row has keys ['prompt', 'response']; expected 'messages'"),
    (SFT, {"messages": [{"role": "bot", "content": "hi"}, bot("x")]},
     "messages[0] has unknown role 'bot'; valid roles are system, user, assistant"),
    (SFT, {"messages": [user("hi"), bot(5)]}, "messages[1] content must be a string, got a number"),
    (SFT, {"messages": [user("hi"), bot(None)]}, "messages[1] content must be a string, got null"),
    (SFT, {"messages": [user([{"type": "image_url", "image_url": "x"}]), bot("x")]},
     "messages[0] content part 0 has type 'image_url'; only text parts"),
    (SFT, {"messages": [user("hi"), bot("   \n")]}, "messages[1] content is empty"),
    (SFT, {"messages": [user("hi")]}, "'messages' has no assistant message"),
    (SFT, {"messages": [user("hi"), bot("a", weight=0)]},
     "every assistant message in 'messages' has weight 0; nothing to train on"),
    (SFT, {"messages": [user("hi"), bot("a", weight=2)]},
     "messages[1] weight must be 0 or 1, got 2"),
    (SFT, {"messages": [user("hi"), bot("a", weight=True)]}, "weight must be 0 or 1, got True"),
    (SFT, {"messages": [{**user("hi"), "weight": 1}, bot("a")]},
     "messages[0] has a weight but role 'user'; only assistant messages carry a weight"),
    (SFT, {"messages": "hi"}, "'messages' must be a list of messages, got a string"),
    (SFT, {"messages": []}, "'messages' is empty"),
    (SFT, {"messages": ["hi", bot("a")]},
     "messages[0] must be an object with 'role' and 'content', got a string"),
    (SFT, {"messages": [{"content": "hi"}, bot("a")]}, "messages[0] has no 'role'"),
    (SFT, {"messages": [user("hi"), {"role": "assistant"}]}, "messages[1] has no 'content'"),
    (SFT, {"prompt": "", "completion": "x"}, "'prompt' is empty"),
    (SFT, {"prompt": "x", "completion": " "}, "'completion' is empty"),
    (SFT, {"prompt": 3, "completion": "x"},
     "'prompt' must be a string or a list of messages, got a number"),
    (SFT, {"prompt": [user("q")], "completion": [user("a")]},
     "'completion' has no assistant message"),
    (SFT, {"prompt": "q", "completion": [bot("a")]},
     "'prompt' and 'completion' mix plain strings and lists of messages"),
    (SFT, {"text": ""}, "'text' is empty"),
    (SFT, {"text": ["a"]}, "'text' must be a string, got a list"),
    (PREF, {"prompt": "q", "chosen": "a", "rejected": "a"},
     "'chosen' and 'rejected' are identical"),
    (PREF, {"chosen": [user("q"), bot("a")], "rejected": [user("q"), bot("a")]},
     "'chosen' and 'rejected' are identical"),
    (PREF, {"prompt": "q", "chosen": "", "rejected": "a"}, "'chosen' is empty"),
    (PREF, {"prompt": "q", "chosen": [bot("a")], "rejected": []}, "'rejected' is empty"),
    (PREF, {"prompt": [user("q")], "chosen": [user("a")], "rejected": [bot("b")]},
     "'chosen' has no assistant message"),
    (PREF, {"prompt": "q", "chosen": [bot("a")], "rejected": [bot("b")]},
     "mix plain strings and lists of messages"),
    (PREF, {"chosen": "a", "rejected": "b"}, "no 'prompt': give one"),
    (PREF, {"chosen": [user("q"), bot("a")], "rejected": [user("r"), bot("b")]},
     "share no prompt messages"),
    (PREF, {"chosen": [{"role": "system", "content": "s"}, user("q"), bot("a")],
            "rejected": [{"role": "system", "content": "s"}, user("r"), bot("b")]},
     "the prompts of 'chosen' and 'rejected' differ at message 1 (user)"),
    (PREF, {"chosen": [user("q"), bot("a")], "rejected": [user("q")]},
     "'rejected' has no response after the prompt"),
    (PREF, {"input": {"messages": [user("q")]}, "preferred_output": [user("a")],
            "non_preferred_output": [bot("b")]},
     "preferred_output[0] has role 'user'; responses must be assistant messages"),
    (PREF, {"input": {"messages": [user("q")]}, "preferred_output": [bot("a")]},
     "OpenAI preference row has no 'non_preferred_output'"),
    (PREF, {"input": "q", "preferred_output": [bot("a")], "non_preferred_output": [bot("b")]},
     "'input' must be an object with a 'messages' list"),
    (PREF, {"input": {"messages": [user("q")]}, "preferred_output": [bot("a")],
            "non_preferred_output": [bot("a")]}, "are identical"),
    (PREF, {"prompt": "q", "chosen": "a"},
     "no recognised format: the row has keys ['chosen', 'prompt']"),
    (FEEDBACK, {"prompt": "q", "completion": "a", "label": "yes"},
     "'label' must be true or false, got 'yes'"),
    (FEEDBACK, {"prompt": "q", "completion": "a", "label": 1}, "must be true or false, got 1"),
    (FEEDBACK, {"prompt": "q", "completion": "a"}, "no recognised format"),
    (FEEDBACK, {"prompt": "q", "completion": "", "label": False}, "'completion' is empty"),
    (ITEMS, {"messages": [user("q"), bot("a")], "answer": "4"},
     "the last message has role 'assistant'; an item's messages must end with the user's turn"),
    (ITEMS, {"messages": {"role": "user"}}, "'messages' must be a list of messages, got an object"),
    (ITEMS, {"input": "q"}, "no recognised format: the row has keys ['input']"),
    (ITEMS, {"question": " ", "answer": "#### 4"}, "'question' is empty"),
]


@pytest.mark.parametrize("loader, bad_row, phrase", BAD_ROWS,
                         ids=[f"{i}-{case[0].__name__}" for i, case in enumerate(BAD_ROWS)])
def test_bad_row_is_reported_with_file_and_line(tmp_path, loader, bad_row, phrase):
    path = write_lines(tmp_path, [GOOD_ROW[loader], bad_row])
    with pytest.raises(CorralError) as caught:
        loader(path)
    line = problem_for(caught.value, f"{path}:2")
    assert phrase in line
    message = str(caught.value)
    assert message.startswith(f"{path}: 1 row(s) have problems:")
    assert message.endswith("fix these rows and run again; no training was started")


def test_problems_from_all_rows_are_collected_and_truncated(tmp_path):
    rows = [GOOD_ROW[SFT]] + [{"text": ""}] * 25
    path = write_lines(tmp_path, rows)
    with pytest.raises(CorralError) as caught:
        load_sft_records(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}: 25 row(s) have problems:"
    assert lines[1] == f"{path}:2: 'text' is empty"
    assert lines[20] == f"{path}:21: 'text' is empty"
    assert lines[21] == "... and 5 more"
    assert lines[22] == "fix these rows and run again; no training was started"
    with pytest.raises(CorralError) as caught:
        load_sft_records(path, max_errors=3)
    assert "... and 22 more" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 6
    with pytest.raises(CorralError) as caught:
        load_sft_records(path, max_errors=25)
    assert "more" not in str(caught.value)


def test_file_with_no_rows_is_an_error(tmp_path):
    path = write_lines(tmp_path, ["", "   "])
    with pytest.raises(CorralError, match="has no rows; expected rows with 'messages'"):
        load_sft_records(path)


def test_sft_formats_parse_into_records(tmp_path):
    rows = [
        {"messages": [{"role": "system", "content": "be brief"}, user("hi"),
                      bot("draft", weight=0), user("again"), bot("final", weight=1)]},
        {"messages": [user([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]),
                      bot("ok")], "id": 7},
        {"prompt": "2+2=", "completion": "4"},
        {"prompt": [user("hi")], "completion": [bot("hello")]},
        {"text": "once upon a time"},
    ]
    path = write_lines(tmp_path, rows)
    records = load_sft_records(path)
    assert records == [
        Chat((Message("system", "be brief"), Message("user", "hi"),
              Message("assistant", "draft", 0), Message("user", "again"),
              Message("assistant", "final", 1)), f"{path}:1"),
        Chat((Message("user", "ab"), Message("assistant", "ok")), f"{path}:2"),
        Completion("2+2=", "4", f"{path}:3"),
        Completion((Message("user", "hi"),), (Message("assistant", "hello"),), f"{path}:4"),
        Text("once upon a time", f"{path}:5"),
    ]


def test_preference_formats_parse_into_records(tmp_path):
    system = {"role": "system", "content": "s"}
    rows = [
        {"prompt": "q", "chosen": "good", "rejected": "bad"},
        {"prompt": [user("q")], "chosen": [bot("good")], "rejected": [bot("bad")]},
        {"chosen": [system, user("q"), bot("good")], "rejected": [system, user("q"), bot("bad")]},
        {"input": {"messages": [user("q")]}, "preferred_output": [bot("good")],
         "non_preferred_output": [bot("bad")]},
    ]
    path = write_lines(tmp_path, rows)
    records = load_preference_records(path)
    q, good = (Message("user", "q"),), (Message("assistant", "good"),)
    bad = (Message("assistant", "bad"),)
    assert records == [
        Preference("q", "good", "bad", f"{path}:1"),
        Preference(q, good, bad, f"{path}:2"),
        Preference((Message("system", "s"),) + q, good, bad, f"{path}:3"),
        Preference(q, good, bad, f"{path}:4"),
    ]


def test_feedback_rows_parse_into_records(tmp_path):
    rows = [{"prompt": "q", "completion": "a", "label": True},
            {"prompt": [user("q")], "completion": [bot("b")], "label": False}]
    path = write_lines(tmp_path, rows)
    assert load_feedback_records(path) == [
        Feedback("q", "a", True, f"{path}:1"),
        Feedback((Message("user", "q"),), (Message("assistant", "b"),), False, f"{path}:2"),
    ]


def test_item_formats_parse_into_records(tmp_path):
    rows = [
        {"messages": [{"role": "developer", "content": "d"}, user("q")], "answer": "4",
         "tags": ["x"]},
        {"prompt": "2+2?", "reference": "4"},
        {"prompt": [user("hi")]},
        {"question": "Tom has 3 apples...", "answer": "3 + 1 = 4\n#### 4"},
    ]
    path = write_lines(tmp_path, rows)
    assert load_items(path) == [
        Item((Message("developer", "d"), Message("user", "q")), {"answer": "4", "tags": ["x"]},
             f"{path}:1"),
        Item((Message("user", "2+2?"),), {"reference": "4"}, f"{path}:2"),
        Item((Message("user", "hi"),), {}, f"{path}:3"),
        Item((Message("user", "Tom has 3 apples..."),),
             {"question": "Tom has 3 apples...", "answer": "3 + 1 = 4\n#### 4"}, f"{path}:4"),
    ]


def test_jsonl_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    path = write_lines(tmp_path, [{"text": "a"}, "", "  ", "not json", {"text": "b"}])
    rows = list(read_rows(path))
    assert [source for source, _ in rows] == [f"{path}:1", f"{path}:4", f"{path}:5"]
    assert rows[0][1] == {"text": "a"}
    assert isinstance(rows[1][1], Exception) and "not valid JSON" in str(rows[1][1])


def test_jsonl_line_that_is_not_utf8_is_a_row_problem(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"text": "\xff"}\n')
    with pytest.raises(CorralError) as caught:
        load_sft_records(str(path))
    assert "not valid UTF-8" in problem_for(caught.value, f"{path}:2")


@pytest.mark.parametrize("document", [
    [{"text": "a"}, {"text": "b"}],
    {"data": [{"text": "a"}, {"text": "b"}]},
    {"rows": [{"text": "a"}, {"text": "b"}]},
    {"version": 2, "train": [{"text": "a"}, {"text": "b"}]},
])
def test_json_file_of_rows(tmp_path, document):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(document, indent=2))
    assert load_sft_records(str(path)) == [Text("a", f"{path}:item 1"), Text("b", f"{path}:item 2")]


def test_json_file_with_bad_item_names_the_item(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"text": "a"}, 5]))
    with pytest.raises(CorralError) as caught:
        load_sft_records(str(path))
    assert "row is a number, not a JSON object" in problem_for(caught.value, f"{path}:item 2")


def test_json_file_that_is_not_json_names_the_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('[\n{"text": "a"},\n{"text": }\n]')
    with pytest.raises(CorralError) as caught:
        load_sft_records(str(path))
    assert "not valid JSON" in problem_for(caught.value, f"{path}:3")


def test_json_file_holding_json_lines_is_read_as_lines(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('{"text": "a"}\n{"text": "b"}\n')
    assert [r.source for r in load_sft_records(str(path))] == [f"{path}:1", f"{path}:2"]


def test_json_object_without_a_row_list_is_an_error(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"examples": [{"text": "a"}]}))
    with pytest.raises(CorralError, match=r"under 'data', 'rows' or 'train'.*\['examples'\]"):
        list(read_rows(str(path)))


def test_parquet_file_of_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = str(tmp_path / "data.parquet")
    table = pa.Table.from_pylist([
        {"messages": [user("hi"), bot("hello")]},
        {"messages": [user("hi"), {"role": "assistant", "content": ""}]},
        {"messages": [user("q"), bot("a")]},
    ])
    pq.write_table(table, path, row_group_size=2)
    with pytest.raises(CorralError) as caught:
        load_sft_records(path)
    assert "messages[1] content is empty" in problem_for(caught.value, f"{path}:row 2")
    sources = [source for source, _ in read_rows(path)]
    assert sources == [f"{path}:row 1", f"{path}:row 2", f"{path}:row 3"]


def test_missing_file_names_the_path(tmp_path, monkeypatch):
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(CorralError, match="data file not found: .*nope.jsonl"):
        read_rows(missing)
    with pytest.raises(CorralError, match="data file not found"):
        load_sft_records(missing)
    (tmp_path / "data").mkdir()  # owner/name shape, but data/ is a local folder: not a hub id
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CorralError, match="data file not found: data/train"):
        read_rows("data/train")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    with pytest.raises(CorralError, match="unsupported file type '.csv'"):
        read_rows(str(path))


@pytest.fixture
def fake_datasets(monkeypatch):
    """A stand-in `datasets` module that records how load_dataset was called."""
    calls = []

    def load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return [{"question": "1+1?", "answer": "#### 2"}, {"question": "2+2?", "answer": "#### 4"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


@pytest.mark.parametrize("hf_id, expected_call", [
    ("openai/gsm8k", ("openai/gsm8k", None, "train")),
    ("openai/gsm8k:test", ("openai/gsm8k", None, "test")),
    ("openai/gsm8k:main:test", ("openai/gsm8k", "main", "test")),
])
def test_hub_dataset_id_is_loaded_with_datasets(tmp_path, monkeypatch, fake_datasets, hf_id,
                                                expected_call):
    monkeypatch.chdir(tmp_path)
    items = load_items(hf_id)
    assert fake_datasets == [expected_call]
    assert [item.source for item in items] == [f"{hf_id}:row 1", f"{hf_id}:row 2"]
    assert items[1].messages == (Message("user", "2+2?"),)


def test_hub_dataset_without_datasets_installed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(CorralError, match="pip install datasets"):
        read_rows("owner/name")


def test_hub_dataset_load_failure_is_a_corral_error(tmp_path, monkeypatch):
    def load_dataset(*args, **kwargs):
        raise FileNotFoundError("Dataset 'owner/name' doesn't exist on the Hub")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(CorralError, match="could not load Hugging Face dataset 'owner/name'"):
        read_rows("owner/name")


def test_content_hash_is_canonical():
    row = {"b": [1, {"y": 2, "x": "é"}], "a": "text"}
    reordered = {"a": "text", "b": [1, {"x": "é", "y": 2}]}
    canonical = '{"a":"text","b":[1,{"x":"é","y":2}]}'
    assert content_hash(row) == content_hash(reordered)
    assert content_hash(row) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert content_hash(row) != content_hash({**row, "a": "other"})


def test_file_sha256(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "a"}\n' * 1000)
    assert file_sha256(str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CorralError, match="not found"):
        file_sha256(str(tmp_path / "missing.jsonl"))
