"""The one prompt renderer: a prompt program put around an item's messages.

    program = PromptProgram(system_prompt="Answer briefly.", few_shot=(("2+2?", "4"),))
    program.render(item)   # [system, user, assistant, ..., the item's messages]

A program is a system prompt, an instruction template, and demonstrations: fixed ones
(`few_shot`), or `k` chosen per query from a `pool` by similarity (`select="similar"`, kNN
over the local MiniLM embeddings) or similarity with diversity (`select="mmr"`); shown as
chat turns (`layout="chat"`) or written into the user turn (`layout="inline"`). Tasks
(`Task.conversation`), synthesis teachers (`synth.sampling.Teacher`), chat, RL rollouts and
the prompt search all render through `render`, so what a model sees for an item is written
once. Programs are saved as JSON with a hash (`corral.tasks.prompt_file`).

The template's `{input}` is the item's last user message; `{name}` is the item's field
`name` (a demonstration's fields come with it). The program's system prompt replaces a
system message of the item (a conversation has one system message, first); without one,
the item's own is kept.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, fields

from corral.core.errors import CorralError
from corral.core.records import as_dicts

SELECT = ("fixed", "similar", "mmr")
LAYOUTS = ("chat", "inline")
ORDERS = ("given", "reverse")
INLINE_HEAD = "Example {n}:\n{input}\n{output}"
INLINE_QUERY = "Now this one:\n{input}"


@dataclass(frozen=True)
class PromptProgram:
    system_prompt: str = ""
    few_shot: tuple = ()  # ((user, assistant), ...) or ((user, assistant, fields), ...)
    template: str = ""  # e.g. "{input}\nThink step by step."; "" leaves the input as it is
    layout: str = "chat"
    select: str = "fixed"  # fixed: `few_shot`; similar / mmr: k of `pool` per query
    k: int = 0
    pool: tuple = ()  # demonstrations to choose from, in `few_shot`'s form
    order: str = "given"  # given: as listed or as chosen (most similar first); reverse
    mmr_lambda: float = 0.5  # MMR: relevance weight against redundancy

    def __post_init__(self):
        for name, value, allowed in (("select", self.select, SELECT),
                                     ("layout", self.layout, LAYOUTS),
                                     ("order", self.order, ORDERS)):
            if value not in allowed:
                raise CorralError(f"prompt program: {name} '{value}' is not one of "
                                  f"{', '.join(allowed)}")
        if self.select != "fixed" and not 0 < self.k <= len(self.pool):
            raise CorralError(f"prompt program: k={self.k} demonstrations from a pool of "
                              f"{len(self.pool)}; give k from 1 to {len(self.pool)} or add "
                              "to the pool")
        template_fields(self.template)

    def spec(self) -> dict:
        """The fields that differ from an empty program's, plus the system prompt and fixed
        demonstrations: what identifies this program in a job's key."""
        base = PromptProgram()
        out = {"system_prompt": self.system_prompt, "few_shot": [list(d) for d in
                                                                 self.few_shot]}
        for f in fields(self):
            if f.name not in out and getattr(self, f.name) != getattr(base, f.name):
                value = getattr(self, f.name)
                out[f.name] = [list(d) for d in value] if f.name == "pool" else value
        return out

    def render(self, item) -> list[dict]:
        """An Item (or its messages, as Messages or dicts) as the conversation a model sees."""
        return self.render_all([item])[0]

    def render_all(self, items) -> list[list[dict]]:
        """`render` of many items; similarity selection embeds their queries in one batch."""
        conversations = [as_dicts(getattr(item, "messages", item)) for item in items]
        if self._plain():
            return [list(messages) for messages in conversations]
        queries = [_last_user(m) for m in conversations]
        chosen = self._choose(queries)
        return [self._render_one(m, getattr(item, "fields", None) or {}, demos)
                for item, m, demos in zip(items, conversations, chosen)]

    def demonstrations(self, items) -> list[list[tuple]]:
        """The demonstrations each item is shown, in the order shown."""
        queries = [_last_user(as_dicts(getattr(it, "messages", it))) for it in items]
        return self._choose(queries)

    # ------------------------------------------------------------------ internals
    def _plain(self) -> bool:
        return (not self.system_prompt and not self.few_shot and not self.template
                and self.select == "fixed")

    def _choose(self, queries: list[str]) -> list[list[tuple]]:
        if self.select == "fixed":
            picks = [list(self.few_shot)] * len(queries)
        else:
            from corral.tasks.demos import nearest

            picks = [[self.pool[i] for i in order] for order in
                     nearest([d[0] for d in self.pool], queries, self.k, self.select,
                             self.mmr_lambda)]
        return [p[::-1] if self.order == "reverse" else p for p in picks]

    def _render_one(self, messages: list[dict], item_fields: dict, demos: list) -> list[dict]:
        turns = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        own_system = [m for m in messages if m["role"] == "system"] if not turns else []
        rest = [dict(m) for m in messages if m["role"] != "system"]
        last = max((i for i, m in enumerate(rest) if m["role"] == "user"), default=None)
        if last is not None and self.template:
            rest[last]["content"] = fill(self.template, rest[last]["content"], item_fields)
        shown = [(fill(self.template, d[0], _demo_fields(d)) if self.template else d[0], d[1])
                 for d in demos]
        if self.layout == "inline" and shown and last is not None:
            blocks = [INLINE_HEAD.format(n=n, input=u, output=a)
                      for n, (u, a) in enumerate(shown, 1)]
            query = INLINE_QUERY.format(input=rest[last]["content"])
            rest[last]["content"] = "\n\n".join(blocks + [query])
            shown = []
        for user, assistant in shown:
            turns += [{"role": "user", "content": user},
                      {"role": "assistant", "content": assistant}]
        return own_system + turns + rest


def template_fields(template: str) -> list[str]:
    """The `{name}` fields a template uses; a malformed template is refused."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise CorralError(f"prompt template {template!r}: {exc}; write a field as {{name}} "
                          "and a literal brace as {{ or }}") from None
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise CorralError(f"prompt template {template!r}: '{{{bad[0]}}}' is not a field name; "
                          "use {input} or an item field such as {question}")
    return names


def fill(template: str, user_text: str, item_fields: dict) -> str:
    values = {**item_fields, "input": user_text}
    try:
        return template.format_map(values)
    except KeyError as exc:
        have = ", ".join(sorted(values))
        raise CorralError(f"prompt template field {{{exc.args[0]}}} is not a field of this "
                          f"item (it has: {have}); use {{input}} or one of those") from None


def check_fields(program: PromptProgram, items, where: str = "prompt program") -> None:
    """Refuse, before any model call, a template that names a field some item lacks."""
    used = [n for n in template_fields(program.template) if n != "input"]
    for item in items:
        have = set(getattr(item, "fields", None) or {})
        missing = [n for n in used if n not in have]
        if missing:
            source = getattr(item, "source", "") or "an item"
            raise CorralError(f"{where}: template field {{{missing[0]}}} is not a field of "
                              f"{source} (its fields: {', '.join(sorted(have)) or 'none'}); "
                              "use {input} or one of those")


def shown_items(program: PromptProgram, items) -> list[str]:
    """Sources of items whose question is one of the program's demonstrations (fixed or
    pool): evaluating on them would show the answer."""
    inputs = {d[0].strip() for d in program.few_shot + program.pool}
    return [getattr(it, "source", "") or "?" for it in items
            if _last_user(as_dicts(getattr(it, "messages", it))).strip() in inputs]


def _demo_fields(demo: tuple) -> dict:
    return dict(demo[2]) if len(demo) > 2 else {}


def _last_user(messages: list[dict]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
