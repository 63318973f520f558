"""Tasks, content-hash splits (stable under insertion), sealed unseen refusal."""
import json
from pathlib import Path

import pytest

from corral.core.errors import CorralError
from corral.core.io import content_hash
from corral.data.splits import assign, refuse_unseen, split_file
from corral.tasks import get_task

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_split_is_stable_under_insertion(tmp_path):
    rows = [{"q": f"question {i}", "a": i} for i in range(300)]
    counts = split_file(write_rows(tmp_path / "d.jsonl", rows), dev=0.1, unseen=0.1)
    assert sum(counts.values()) == 300 and 10 < counts["unseen"] < 60
    before = {name: read(tmp_path / f"d.{name}.jsonl") for name in ("train", "dev", "unseen")}
    more = rows[:150] + [{"q": f"new {i}", "a": -i} for i in range(50)] + rows[150:]
    split_file(write_rows(tmp_path / "d.jsonl", more), dev=0.1, unseen=0.1)
    for name, old_rows in before.items():
        new_rows = read(tmp_path / f"d.{name}.jsonl")
        assert all(r in new_rows for r in old_rows)  # no row changed split


def test_assign_fractions():
    names = [assign(content_hash({"i": i}), 0.2, 0.1) for i in range(5000)]
    assert abs(names.count("unseen") / 5000 - 0.1) < 0.02
    assert abs(names.count("dev") / 5000 - 0.2) < 0.02


def test_training_refuses_sealed_unseen_rows(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"hi {i}"},
                          {"role": "assistant", "content": "x"}]} for i in range(100)]
    data = write_rows(tmp_path / "chat.jsonl", rows)
    split_file(data, dev=0.1, unseen=0.2)
    refuse_unseen(str(tmp_path / "chat.train.jsonl"))  # the train part is fine
    with pytest.raises(CorralError, match="sealed unseen split"):
        refuse_unseen(data)  # the whole file holds unseen rows


def test_gsm8k_task_reads_local_file():
    task = get_task("gsm8k", split="test", data=str(GSM8K), limit=5)
    assert len(task.items) == 5 and task.items[0].fields["answer"] == "18"
    score = task.grader.grade(task.items[0].fields, _sample("so 18 dollars\n#### 18"))
    assert score.value == 1.0


def test_gsm8k_splits_of_one_file_are_disjoint_and_cover_it():
    whole = get_task("gsm8k", split="test", data=str(GSM8K))
    train, dev, unseen = (get_task("gsm8k", split=s, data=str(GSM8K))
                          for s in ("train", "dev", "unseen"))
    prompts = lambda t: {i.messages[-1].content for i in t.items}
    assert not prompts(dev) & prompts(unseen)
    assert not prompts(train) & (prompts(dev) | prompts(unseen))
    assert prompts(train) | prompts(dev) | prompts(unseen) == prompts(whole)
    assert 0.2 < len(dev.items) / len(whole.items) < 0.3


def test_arithmetic_splits_are_disjoint_and_graded():
    dev = get_task("arithmetic", split="dev", limit=100)
    unseen = get_task("arithmetic", split="unseen", limit=100)
    train = get_task("arithmetic", split="train", limit=400)
    prompts = lambda t: {i.messages[-1].content for i in t.items}
    assert not prompts(dev) & prompts(unseen) and not prompts(train) & prompts(unseen)
    item = dev.items[0]
    assert dev.grader.grade(item.fields, _sample(f"#### {item.fields['answer']}")).value == 1.0


def test_ifeval_like_task_has_instructions():
    task = get_task("ifeval-like", split="dev", limit=10)
    assert all(1 <= len(i.fields["instructions"]) <= 3 for i in task.items)
    score = task.grader.grade(task.items[0].fields, _sample("some text"))
    assert 0.0 <= score.value <= 1.0


def test_few_shot_and_system_prompt():
    task = get_task("arithmetic", split="dev", limit=3, few_shot=2, system_prompt="Be exact.")
    conversation = task.conversation(task.items[0])
    assert conversation[0] == {"role": "system", "content": "Be exact."}
    assert [m["role"] for m in conversation[1:]] == ["user", "assistant", "user", "assistant",
                                                     "user"]


def test_unknown_task_did_you_mean():
    with pytest.raises(CorralError, match="did you mean 'gsm8k'"):
        get_task("gsm8kk")


def test_file_task_needs_a_grader(tmp_path):
    data = write_rows(tmp_path / "items.jsonl", [{"prompt": "2+2?", "answer": "4"}])
    with pytest.raises(CorralError, match="needs a grader"):
        get_task(data)
    task = get_task(data, grader="numeric")
    assert task.grader.grade(task.items[0].fields, _sample("4")).value == 1.0


def _sample(text):
    from corral.graders.base import Sample
    return Sample.of(text)


def test_one_prompt_renderer_for_tasks_and_teachers():
    """Task.conversation and a synthesis teacher render through one PromptProgram: system
    prompt, few-shot turns, then the item; the program's system prompt replaces an item's."""
    from corral.core.records import Item, Message
    from corral.synth.sampling import Teacher
    from corral.tasks.prompt import PromptProgram

    task = get_task("arithmetic", split="train", few_shot=2, system_prompt="Be brief.", limit=1)
    item = task.items[0]
    rendered = task.conversation(item)
    assert rendered[0] == {"role": "system", "content": "Be brief."}
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user",
                                             "assistant", "user"]
    assert rendered == task.prompt.render(item)
    assert Teacher(task.system_prompt, tuple(task.few_shot)).conversation(
        [{"role": m.role, "content": m.content} for m in item.messages]) == rendered
    own = Item((Message("system", "Old."), Message("user", "hi")), {}, "f:1")
    assert PromptProgram("New.").render(own) == [{"role": "system", "content": "New."},
                                                 {"role": "user", "content": "hi"}]
    assert PromptProgram().render(own) == [{"role": "system", "content": "Old."},
                                           {"role": "user", "content": "hi"}]
    assert PromptProgram(few_shot=(("q", "a"),)).render(own)[:2] == [
        {"role": "system", "content": "Old."}, {"role": "user", "content": "q"}]


def test_unknown_task_and_select_method_name_the_closest():
    from corral.curate.select import select

    with pytest.raises(CorralError, match="did you mean 'gsm8k'"):
        get_task("gsm9k")
    with pytest.raises(CorralError, match="built-in tasks: arithmetic, gsm8k, ifeval-like, or a"):
        get_task("zzz")
    with pytest.raises(CorralError, match="did you mean 'kcenter'"):
        select([{"text": "a"}], 1, method="kcentre")
