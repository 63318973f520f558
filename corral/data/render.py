"""Records -> token ids + loss mask through the chat template (`render`), and the preflight
report that shows what will be trained (`inspect_report`)."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.records import Chat, Completion, Message, Text, as_dicts

MASKS = ("assistant", "all", "last")
_BRACKETS, _GREEN = ("[[", "]]"), ("\x1b[32m", "\x1b[0m")


@dataclass
class Example:
    input_ids: list[int]
    loss_mask: list[int]  # same length; 1 = this token is a target
    source: str = ""
    truncated: bool = False


@dataclass
class _Text:
    """Rendered text before tokenisation: target character spans and what looked wrong."""
    text: str
    spans: list[tuple[int, int]]
    all_targets: bool = False
    notes: tuple[str, ...] = ()


def check_template(tokenizer, template: str | None = None) -> str:
    """The Jinja chat template to render with: `template` (inline Jinja or a file path) or
    the tokenizer's own. Call once before rendering; raises CorralError when there is none."""
    if template:
        if "{" in template:
            return template
        if Path(template).is_file():
            return Path(template).read_text()
        raise CorralError(f"model.template={template!r} is neither an existing file nor inline "
                          "Jinja; give a path to a .jinja file or the template text itself")
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # some tokenizers ship several named templates
        own = own.get("default")
    if not own:
        raise CorralError("the tokenizer has no chat template; set model.template= to a .jinja "
                          "file or inline Jinja (e.g. ChatML), or use plain Completion/Text data")
    return own


def render(record, tokenizer, mask: str = "assistant", max_length: int | None = None,
           template: str | None = None) -> Example:
    """Token ids and loss mask of one Chat, Completion or Text record.

    mask: "assistant" = assistant turns whose weight is not 0, "all" = every token,
    "last" = the last assistant turn. A trained turn is its content plus EOS exactly once
    (appended when the template omits it), never the `<|im_start|>assistant\n` header.
    Plain Completion trains completion + EOS; Text trains everything + EOS. BOS is added
    only when the tokenizer would add it and the text does not already start with it.
    Longer than max_length: cut, truncated=True.
    """
    ex, _ = _render(record, tokenizer, mask, template)
    return truncate(ex, max_length)


def render_prompt(messages, tokenizer, template: str | None = None) -> list[int]:
    """Prompt ids ending in the generation header (`<|im_start|>assistant\\n` for ChatML)."""
    template = check_template(tokenizer, template)
    text = _apply(_dicts(messages), tokenizer, template, generation_prompt=True)
    ids, _ = _encode(_Text(text, []), tokenizer)
    return ids


def _render(record, tokenizer, mask: str, template: str | None) -> tuple[Example, _Text]:
    if mask not in MASKS:
        raise CorralError(f"data.mask={mask!r} is not one of {', '.join(MASKS)}")
    try:
        rendered = _render_text(record, tokenizer, mask, template)
    except CorralError as err:
        source = getattr(record, "source", "")
        raise CorralError(f"{source}: {err}" if source else str(err)) from None
    ids, loss_mask = _encode(rendered, tokenizer)
    return Example(ids, loss_mask, record.source), rendered


def _render_text(record, tokenizer, mask: str, template: str | None) -> _Text:
    eos = tokenizer.eos_token or ""
    if isinstance(record, Text):
        return _Text(_with_eos(record.text, eos), [], all_targets=True)
    if isinstance(record, Completion) and isinstance(record.prompt, str) \
            and isinstance(record.completion, str):
        text = _with_eos(record.prompt + record.completion, eos)
        return _Text(text, [(len(record.prompt), len(text))], all_targets=mask == "all")
    if isinstance(record, Completion):
        prompt = _as_turns(record.prompt, "user")
        turns = prompt + _as_turns(record.completion, "assistant")
        return _chat_text(turns, tokenizer, check_template(tokenizer, template), mask,
                          first_target=len(prompt))
    if isinstance(record, Chat):
        return _chat_text(tuple(record.messages), tokenizer,
                          check_template(tokenizer, template), mask, first_target=0)
    raise CorralError(f"cannot render a {type(record).__name__} record for language-model "
                      "training; expected Chat, Completion or Text data")


def _chat_text(turns, tokenizer, template: str, mask: str, first_target: int) -> _Text:
    """Render a conversation; target spans are the assistant turns chosen by `mask`."""
    msgs = _dicts(turns)
    full = _apply(msgs, tokenizer, template, generation_prompt=False)
    candidates = [i for i, m in enumerate(turns) if m.role == "assistant" and i >= first_target]
    if mask == "last":
        candidates = candidates[-1:]
    trained = {i for i in candidates if turns[i].weight != 0}
    try:
        text, spans, notes = _assistant_spans(msgs, full, tokenizer, template, trained)
    except CorralError:
        if mask != "all":
            raise
        # mask=all needs no spans: train on the whole rendering, as the error suggests
        return _Text(_with_eos(full, tokenizer.eos_token or ""), [], all_targets=True)
    return _Text(text, spans, all_targets=mask == "all", notes=notes)


def _assistant_spans(msgs, full: str, tokenizer, template: str, trained: set[int]):
    """Find each assistant turn's characters by rendering prefixes of the conversation.

    Returns the text (EOS inserted after turns whose template omits it), the trained
    character spans (content through EOS, never the header) and notes on what was fixed.
    """
    eos = tokenizer.eos_token or ""
    pieces, spans, notes, pos, out_len = [], [], set(), 0, 0
    for i, msg in enumerate(msgs):
        if msg["role"] != "assistant":
            continue
        before = _apply(msgs[:i], tokenizer, template, generation_prompt=True)
        through = _apply(msgs[:i + 1], tokenizer, template, generation_prompt=False)
        if not (through.startswith(before) and full.startswith(through)) or len(before) < pos:
            raise CorralError(
                "the chat template is not prefix-stable (rendering the conversation up to a turn "
                "is not a prefix of rendering all of it, e.g. it rewrites earlier turns), so "
                "assistant tokens cannot be located; set data.mask=all or use a template "
                "(model.template=) that renders history unchanged")
        turn = through[len(before):]
        cut = turn.rfind(eos) if eos else -1
        # training stops at EOS: what the template writes after it (a newline) is not a target
        end = len(before) + (cut + len(eos) if cut >= 0 else len(turn.rstrip()))
        start = out_len + len(before) - pos  # where the turn begins in the output text
        pieces.append(full[pos:end])
        out_len += end - pos
        if cut < 0 and eos:
            pieces.append(eos)
            out_len += len(eos)
            notes.add(f"the template does not end assistant turns with EOS {eos!r}; "
                      "corral appends it once after each assistant turn")
        if i in trained:
            spans.append((start, out_len))
        pos = end
    pieces.append(full[pos:])
    return "".join(pieces), spans, tuple(sorted(notes))


def _encode(rendered: _Text, tokenizer) -> tuple[list[int], list[int]]:
    """Tokenise once; a token is a target when its characters overlap a target span."""
    try:
        enc = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:
        raise CorralError("corral needs a fast (Rust) tokenizer for offsets; the model's "
                          "tokenizer.json is missing") from None
    ids = list(enc["input_ids"])
    if rendered.all_targets:
        loss_mask = [1] * len(ids)
    else:
        loss_mask = _overlap_mask(enc["offset_mapping"], rendered.spans)
    bos = tokenizer.bos_token
    # templates often write BOS themselves; adding the tokenizer's would double it
    if _adds_bos(tokenizer) and not rendered.text.startswith(bos):
        ids, loss_mask = [tokenizer.bos_token_id] + ids, [int(rendered.all_targets)] + loss_mask
    return ids, loss_mask


def _overlap_mask(offsets, spans: list[tuple[int, int]]) -> list[int]:
    out, j = [], 0
    for a, b in offsets:
        b = max(b, a + 1)  # zero-width offsets still sit at a position
        while j < len(spans) and spans[j][1] <= a:
            j += 1
        out.append(int(j < len(spans) and spans[j][0] < b))
    return out


def _adds_bos(tokenizer) -> bool:
    """Whether tokenizer(text) prepends BOS: the tokenizer's own configuration decides."""
    if tokenizer.bos_token_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def _apply(msgs, tokenizer, template: str, generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(msgs, chat_template=template, tokenize=False,
                                             add_generation_prompt=generation_prompt)
    except Exception as err:  # noqa: BLE001 -- a user's Jinja can fail in any way
        raise CorralError(f"the chat template failed to render ({type(err).__name__}: {err}); "
                          "fix model.template or the data") from None


_dicts = as_dicts


def _as_turns(side, role: str) -> tuple:
    """A plain string beside a conversational side becomes one message of `role`."""
    return (Message(role, side),) if isinstance(side, str) else tuple(side)


def _with_eos(text: str, eos: str) -> str:
    return text if not eos or text.endswith(eos) else text + eos


def truncate(ex: Example, max_length: int | None) -> Example:
    if max_length is None or len(ex.input_ids) <= max_length:
        return ex
    return Example(ex.input_ids[:max_length], ex.loss_mask[:max_length], ex.source, True)


# --- preflight report ------------------------------------------------------------------

def inspect_report(records, tokenizer, mask: str = "assistant", max_length: int | None = None,
                   template: str | None = None, n_show: int = 1, color: bool = False) -> str:
    """What training will see: examples with supervised tokens marked, length statistics,
    truncation, and template problems. Returns text for the CLI to print."""
    records = list(records)
    problems, notes, errors, rendered = [], set(), [], []
    template, no_template = _resolve_for_report(records, tokenizer, template, problems)
    for rec in records:
        if no_template and _needs_template(rec):
            continue  # already reported once: there is no template to render with
        try:
            ex, text = _render(rec, tokenizer, mask, template)
        except CorralError as err:
            errors.append(str(err))
            continue
        notes.update(text.notes)
        notes.update(_bos_notes(tokenizer, text.text, ex.input_ids))
        rendered.append(ex)
    head = f"(data.mask={mask}, data.max_length={max_length})"
    lines = [f"{len(records)} records, {len(rendered)} rendered {head}"]
    for ex in rendered[:n_show]:
        cut = f", cut to {max_length}" if max_length and len(ex.input_ids) > max_length else ""
        marked = "in colour" if color else "between [[ ]]"
        title = f"{ex.source or 'example'} ({len(ex.input_ids)} tokens{cut}; supervised {marked})"
        lines += [f"--- {title} ---", show(truncate(ex, max_length), tokenizer, color), "---"]
    lines += _stats(rendered, max_length)
    if errors:
        lines.append(f"{len(errors)} records failed to render:")
        lines += [f"  {e}" for e in errors[:5]] + ([f"  ... {len(errors) - 5} more"]
                                                   if len(errors) > 5 else [])
    lines += [f"problem: {p}" for p in problems] + [f"note: {n}" for n in sorted(notes)]
    return "\n".join(lines)


def show(ex: Example, tokenizer, color: bool = False) -> str:
    """Decode an example with its supervised runs wrapped in [[ ]] (or green with color)."""
    open_, close = _GREEN if color else _BRACKETS
    out, run, flag = [], [], None
    for tok, m in zip(ex.input_ids + [None], ex.loss_mask + [None]):
        if m != flag and run:
            text = tokenizer.decode(run, skip_special_tokens=False)
            out.append(f"{open_}{text}{close}" if flag else text)
            run = []
        run.append(tok)
        flag = m
    return "".join(out)


def _stats(examples: list[Example], max_length: int | None) -> list[str]:
    if not examples:
        return ["no example rendered"]
    lens = sorted(len(ex.input_ids) for ex in examples)
    kept = [truncate(ex, max_length) for ex in examples]
    p95 = lens[max(0, math.ceil(0.95 * len(lens)) - 1)]
    lines = [(f"tokens per example: count {len(lens)}  min {lens[0]}  mean "
              f"{statistics.fmean(lens):.1f}  median {statistics.median(lens):g}  p95 {p95}  "
              f"max {lens[-1]}"),
             (f"supervised tokens: {sum(sum(ex.loss_mask) for ex in kept)} of "
              f"{sum(len(ex.input_ids) for ex in kept)}")]
    over = [ex.source for ex in examples if max_length and len(ex.input_ids) > max_length]
    if over:
        lines.append(f"{len(over)} examples exceed data.max_length={max_length} and will be "
                     f"truncated (e.g. {', '.join(over[:3])})")
    empty = [ex.source for ex in kept if not any(ex.loss_mask[1:])]
    if empty:
        lines.append(f"{len(empty)} examples have no supervised token and will be dropped "
                     f"(e.g. {', '.join(empty[:3])})")
    return lines


def _resolve_for_report(records, tokenizer, template, problems: list[str]):
    """(template to use, whether it is missing); problems found are appended."""
    if not tokenizer.eos_token:
        problems.append("the tokenizer has no eos_token, so generations cannot learn to stop")
    if not any(_needs_template(r) for r in records):
        return template, False
    try:
        return check_template(tokenizer, template), False
    except CorralError as err:
        problems.append(str(err))
        return None, True


def _bos_notes(tokenizer, text: str, ids: list[int]) -> list[str]:
    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    if bos_id is not None and ids[:2] == [bos_id, bos_id]:
        return [f"examples start with BOS {bos!r} twice: the template writes it twice"]
    if bos and _adds_bos(tokenizer) and text.startswith(bos):
        return [(f"the template already writes BOS {bos!r}; corral does not add another "
                 "(tokenizer(text) would double it)")]
    return []


def _needs_template(record) -> bool:
    return isinstance(record, Chat) or (
        isinstance(record, Completion)
        and not (isinstance(record.prompt, str) and isinstance(record.completion, str)))
