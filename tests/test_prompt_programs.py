"""Prompt programs: the one renderer (templates, layouts, orders, chosen demonstrations), the
saved file (hash, clear errors), and byte equality of what eval, chat, synth and RL send for
the same item through the same program."""
import json

import pytest
import torch

from corral.core.errors import CorralError
from corral.core.records import Item, Message
from corral.tasks.demos import nearest
from corral.tasks.prompt import PromptProgram, check_fields
from corral.tasks.prompt_file import load_program, program_hash, save_program

DEMOS = (("What is 1 + 1?", "#### 2"), ("What is 2 + 3?", "#### 5"))
ITEM = Item(messages=(Message("user", "What is 4 + 4?"),), fields={"answer": "8",
                                                                   "level": 2}, source="x:1")


def test_template_fills_items_and_demonstrations_fields():
    demos = tuple((u, a, (("level", 1),)) for u, a in DEMOS)
    program = PromptProgram("Be brief.", demos, template="Q: {input} (level {level})")
    conv = program.render(ITEM)
    assert [m["content"] for m in conv] == [
        "Be brief.", "Q: What is 1 + 1? (level 1)", "#### 2", "Q: What is 2 + 3? (level 1)",
        "#### 5", "Q: What is 4 + 4? (level 2)"]
    with pytest.raises(CorralError, match=r"template field \{level\}"):
        PromptProgram(few_shot=DEMOS, template="{level}").render(ITEM)  # demos lack it


def test_chat_and_inline_layouts_by_hand():
    chat = PromptProgram("", DEMOS, order="reverse").render(ITEM)
    assert chat == [{"role": "user", "content": "What is 2 + 3?"},
                    {"role": "assistant", "content": "#### 5"},
                    {"role": "user", "content": "What is 1 + 1?"},
                    {"role": "assistant", "content": "#### 2"},
                    {"role": "user", "content": "What is 4 + 4?"}]
    inline = PromptProgram("S", DEMOS, template="{input}!", layout="inline").render(ITEM)
    assert inline == [{"role": "system", "content": "S"}, {"role": "user", "content":
                      "Example 1:\nWhat is 1 + 1?!\n#### 2\n\nExample 2:\nWhat is 2 + 3?!\n"
                      "#### 5\n\nNow this one:\nWhat is 4 + 4?!"}]
    assert PromptProgram().render(ITEM) == [{"role": "user", "content": "What is 4 + 4?"}]


def test_the_system_prompt_replaces_the_items_own():
    own = Item((Message("system", "old"), Message("user", "hi")), {}, "s")
    assert PromptProgram("new").render(own)[0] == {"role": "system", "content": "new"}
    assert PromptProgram(few_shot=DEMOS).render(own)[0] == {"role": "system", "content": "old"}


def _unit(rows):
    t = torch.tensor(rows, dtype=torch.float32)
    return torch.nn.functional.normalize(t, dim=-1)


VECS = {"a": [1, 0, 0], "a2": [0.99, 0.14, 0], "b": [0.6, 0.8, 0], "c": [0, 0, 1],
        "q": [1, 0.05, 0]}


def test_nearest_and_mmr_by_hand():
    def embed(texts):
        return _unit([VECS[t] for t in texts])

    pool = ["c", "a2", "b", "a"]
    assert nearest(pool, ["q"], 2, "similar", embed=embed) == [[3, 1]]  # a, then a2
    # MMR (λ=0.5): a first; then a2 is near a (redundant), so b wins: 0.5·sim(q,b) −
    # 0.5·sim(a,b) = 0.5·0.64 − 0.5·0.6 > 0.5·sim(q,a2) − 0.5·sim(a,a2) ≈ 0.5·0.997 − 0.5·0.99
    assert nearest(pool, ["q"], 2, "mmr", 0.5, embed=embed) == [[3, 2]]
    assert nearest(pool, ["q"], 2, "mmr", 1.0, embed=embed) == [[3, 1]]  # λ=1: plain kNN


def test_similarity_selection_renders_the_nearest(monkeypatch):
    import corral.tasks.demos as demos

    monkeypatch.setattr(demos, "_embed", lambda texts: _unit(
        [[1.0, float(len(t) % 7), 0.5] for t in texts]))
    demos._pool_vectors.cache_clear()
    pool = tuple((f"{'x' * n}?", str(n)) for n in range(1, 8))
    program = PromptProgram(select="similar", k=2, pool=pool)
    conv = program.render([{"role": "user", "content": "xxx?"}])  # the same length as n=3
    assert conv[0]["content"] == "xxx?" and conv[1]["content"] == "3"
    demos._pool_vectors.cache_clear()


def test_save_load_hash_and_errors(tmp_path):
    program = PromptProgram("sys", DEMOS + (("Q?", "A", (("answer", "1"),)),),
                            template="{input}", layout="inline", select="fixed")
    path = tmp_path / "p.json"
    digest = save_program(program, path, {"dev": {"score": 0.5}})
    assert load_program(path) == program and digest == program_hash(program)
    data = json.loads(path.read_text())
    data["system"] = "edited"
    path.write_text(json.dumps(data))
    with pytest.raises(CorralError, match="does not match its hash .*delete the 'hash' key"):
        load_program(path)
    del data["hash"]
    path.write_text(json.dumps(data))
    assert load_program(path).system_prompt == "edited"
    for change, message in [({"demoes": []}, "unknown key 'demoes'; did you mean 'demos'"),
                            ({"k": "2"}, "key 'k' must be a int"),
                            ({"demos": [{"input": "x"}]}, r"demos\[0\] must be an object"),
                            ({"layout": "table"}, "layout 'table' is not one of chat, inline"),
                            ({"format": "other"}, "key 'format' must be"),
                            ({"select": "similar", "k": 3}, "k=3 demonstrations from a pool "
                                                            "of 0")]:
        path.write_text(json.dumps({**data, **change}))
        with pytest.raises(CorralError, match=message) as caught:
            load_program(path)
        assert str(path) in str(caught.value)
    with pytest.raises(CorralError, match="not found"):
        load_program(tmp_path / "none.json")
    path.write_text("{")
    with pytest.raises(CorralError, match="not JSON"):
        load_program(path)


def test_template_field_missing_is_refused_before_any_call():
    with pytest.raises(CorralError, match=r"\{question\} is not a field of x:1 \(its fields: "
                                          r"answer, level\)"):
        check_fields(PromptProgram(template="{question}"), [ITEM])
    with pytest.raises(CorralError, match="is not a field name"):
        PromptProgram(template="{0}")
    with pytest.raises(CorralError, match="literal brace"):
        PromptProgram(template="{input")


def test_one_rendering_for_eval_chat_synth_and_rl(tmp_path, monkeypatch):
    """The same program and item: eval's prompt items, a chat session, a synthesis
    teacher and RL's rollout items hold byte-identical conversations."""
    from corral.core.config import load_config
    from corral.eval.commands import EvalOptions, load_task
    from corral.methods.rl import load_items
    from corral.methods.rl_config import RLConfig
    from corral.strategies import chat
    from corral.synth.sampling import Teacher
    from corral.tasks import get_task

    program = PromptProgram("Answer with #### n.", DEMOS, template="{input} Show working.")
    path = tmp_path / "p.json"
    save_program(program, path)
    item = get_task("arithmetic", split="dev").items[0]
    evaluated = load_task(EvalOptions(model=["m"], task="arithmetic", program=str(path)))
    from_eval = [m for m in json.loads(json.dumps([
        {"role": m.role, "content": m.content} for m in evaluated.prompt_items()[0].messages]))]
    monkeypatch.setattr(chat, "_generator", lambda opts: None)
    session = chat.ChatSession(chat.ChatOptions(model="m", program=str(path)))
    session.history.append({"role": "user", "content": item.messages[-1].content})
    teacher = Teacher.of(load_program(path))
    cfg = load_config(RLConfig, None, ["data.task=arithmetic", f"rl.program={path}"])
    _, dev, _, _ = load_items(cfg)
    from_rl = [{"role": m.role, "content": m.content} for m in dev[0].messages]
    dumps = {json.dumps(c) for c in (from_eval, session.conversation,
                                     teacher.conversation(item), from_rl)}
    assert len(dumps) == 1, dumps
    assert from_eval[-1]["content"] == item.messages[-1].content + " Show working."


def test_program_and_few_shot_flags_are_exclusive(tmp_path):
    from corral.eval.commands import EvalOptions, load_task

    path = tmp_path / "p.json"
    save_program(PromptProgram(few_shot=DEMOS), path)
    with pytest.raises(CorralError, match="--few-shot with --program"):
        load_task(EvalOptions(model=["m"], task="arithmetic", few_shot=2, program=str(path)))


def test_a_program_showing_an_evaluated_item_is_refused(tmp_path):
    from corral.tasks import get_task

    item = get_task("arithmetic", split="dev").items[3]
    path = tmp_path / "p.json"
    save_program(PromptProgram(few_shot=((item.messages[-1].content, "#### 1"),)), path)
    with pytest.raises(CorralError, match="is the item arithmetic:dev:4"):
        get_task("arithmetic", split="dev").use_program(str(path))
