"""Rendering records to ids + loss mask: masks, EOS, BOS, templates, truncation, report."""
import pytest

from corral.core.errors import CorralError
from corral.core.records import Chat, Completion, Message, Text
from corral.data.render import check_template, inspect_report, render, render_prompt
from corral.testing import tiny_tokenizer

U, A = "user", "assistant"
EOS = "<|im_end|>"


def chat(*turns, source="t.jsonl:1"):
    return Chat(tuple(Message(*t) for t in turns), source)


def trained_runs(ex, tok):
    """Decoded text of each contiguous run of supervised tokens."""
    runs, cur = [], []
    for tid, m in zip(ex.input_ids + [None], ex.loss_mask + [0]):
        if m:
            cur.append(tid)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    return runs


CONVO = chat((U, "hi"), (A, "héllo there"), (U, "and?"), (A, "bye now"))


def test_assistant_mask_is_content_plus_eos_once(tokenizer):
    ex = render(CONVO, tokenizer)
    assert len(ex.input_ids) == len(ex.loss_mask) and not ex.truncated
    assert trained_runs(ex, tokenizer) == ["héllo there" + EOS, "bye now" + EOS]
    # the header is context, not target, and each turn ends with exactly one EOS
    for run in trained_runs(ex, tokenizer):
        assert "<|im_start|>" not in run and run.count(EOS) == 1
    assert tokenizer.decode(ex.input_ids) == tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in CONVO.messages], tokenize=False)


def test_weight_zero_turn_is_context(tokenizer):
    rec = chat((U, "hi"), (A, "skip me", 0), (U, "and?"), (A, "keep me", 1))
    assert trained_runs(render(rec, tokenizer), tokenizer) == ["keep me" + EOS]


def test_mask_last_and_all(tokenizer):
    last = render(CONVO, tokenizer, mask="last")
    assert trained_runs(last, tokenizer) == ["bye now" + EOS]
    every = render(CONVO, tokenizer, mask="all")
    assert all(every.loss_mask) and every.input_ids == render(CONVO, tokenizer).input_ids
    with pytest.raises(CorralError, match="data.mask"):
        render(CONVO, tokenizer, mask="assistants")


def test_template_without_eos_gets_it_appended_once(tokenizer):
    plain = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
             "{% if add_generation_prompt %}assistant: {% endif %}")
    ex = render(CONVO, tokenizer, template=plain)
    assert trained_runs(ex, tokenizer) == ["héllo there" + EOS, "bye now" + EOS]
    text = tokenizer.decode(ex.input_ids)
    assert text.count(EOS) == 2 and "héllo there<|im_end|>\nuser: and?" in text
    report = inspect_report([CONVO], tokenizer, template=plain)
    assert "does not end assistant turns with EOS" in report


def test_no_doubled_bos():
    tok = tiny_tokenizer()
    tok.add_bos_token = True  # now tokenizer(text) prepends <|im_start|> (id 1)
    bos = tok.bos_token_id
    assert tok("x")["input_ids"][0] == bos
    ex = render(CONVO, tok)  # the ChatML text already starts with <|im_start|>
    assert ex.input_ids[0] == bos and ex.input_ids[1] != bos
    text = render(Text("plain words", "t:2"), tok)
    assert text.input_ids[0] == bos and text.input_ids[1] != bos
    assert "does not add another" in inspect_report([CONVO], tok)
    # without the tokenizer asking for BOS, none is added to plain text
    assert render(Text("plain words"), tiny_tokenizer()).input_ids[0] != bos


def test_text_all_targets_eos_once(tokenizer):
    ex = render(Text("some text", "t:3"), tokenizer)
    assert all(ex.loss_mask) and tokenizer.decode(ex.input_ids) == "some text" + EOS
    again = render(Text("some text" + EOS), tokenizer)
    assert again.input_ids == ex.input_ids


def test_plain_completion(tokenizer):
    ex = render(Completion("2+2=", " 4", "t:4"), tokenizer)
    assert tokenizer.decode(ex.input_ids) == "2+2= 4" + EOS
    assert trained_runs(ex, tokenizer) == [" 4" + EOS]


def test_conversational_completion_trains_only_completion(tokenizer):
    prompt = (Message(U, "q1"), Message(A, "earlier answer"), Message(U, "q2"))
    ex = render(Completion(prompt, (Message(A, "final"),), "t:5"), tokenizer)
    assert trained_runs(ex, tokenizer) == ["final" + EOS]
    assert render(Completion(prompt, "final"), tokenizer).input_ids == ex.input_ids


def test_truncation(tokenizer):
    ex = render(CONVO, tokenizer, max_length=10)
    assert len(ex.input_ids) == len(ex.loss_mask) == 10 and ex.truncated
    assert not render(CONVO, tokenizer, max_length=10_000).truncated


def test_missing_template_error():
    tok = tiny_tokenizer()
    tok.chat_template = None
    with pytest.raises(CorralError, match="model.template="):
        check_template(tok, None)
    with pytest.raises(CorralError, match="t.jsonl:1: .*model.template="):
        render(CONVO, tok)
    assert "model.template=" in inspect_report([CONVO, Text("x")], tok)
    render(Text("no template needed"), tok)
    inline = tiny_tokenizer().chat_template
    assert trained_runs(render(CONVO, tok, template=inline), tok)[-1] == "bye now" + EOS


def test_template_from_file(tmp_path, tokenizer):
    path = tmp_path / "chatml.jinja"
    path.write_text(tokenizer.chat_template)
    assert check_template(tokenizer, str(path)) == tokenizer.chat_template
    with pytest.raises(CorralError, match="neither an existing file"):
        check_template(tokenizer, str(tmp_path / "missing.jinja"))


# Like reasoning templates that drop earlier turns' thoughts: history is re-rendered.
UNSTABLE = ("{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
            "<|im_start|>assistant\n(earlier)<|im_end|>\n{% else %}"
            "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_not_prefix_stable_template(tokenizer):
    with pytest.raises(CorralError, match="prefix-stable.*data.mask=all"):
        render(CONVO, tokenizer, template=UNSTABLE)
    ex = render(CONVO, tokenizer, mask="all", template=UNSTABLE)
    assert all(ex.loss_mask) and "(earlier)" in tokenizer.decode(ex.input_ids)
    assert "prefix-stable" in inspect_report([CONVO], tokenizer, template=UNSTABLE)


def test_render_prompt_ends_with_generation_header(tokenizer):
    ids = render_prompt([Message(U, "hi")], tokenizer)
    assert tokenizer.decode(ids).endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert render_prompt([{"role": U, "content": "hi"}], tokenizer) == ids


def test_inspect_report(tokenizer):
    records = [CONVO, Text("x" * 50, "t:2"), chat((U, "only a question"), source="t:3")]
    report = inspect_report(records, tokenizer, max_length=100)
    assert "[[héllo there<|im_end|>]]" in report
    for stat in ("count 3", "min", "mean", "median", "p95", "max", "supervised tokens"):
        assert stat in report
    assert "exceed data.max_length=100" in report and "t.jsonl:1" in report
    assert "no supervised token" in report and "t:3" in report
    coloured = inspect_report([CONVO], tokenizer, color=True)
    assert "\x1b[32mhéllo there" in coloured
