"""The one prompt renderer: a system prompt and few-shot turns put around an item's messages.

    program = PromptProgram(system_prompt="Answer briefly.", few_shot=(("2+2?", "4"),))
    program.render(item)   # [system, user, assistant, ..., the item's messages]

Tasks (`Task.conversation`), synthesis teachers (`synth.sampling.Teacher`) and strategies
render through it, so what a model sees for an item is written once; a prompt search scores
programs like this one. The program's system prompt replaces a system message of the item
(a conversation has one system message, first); without one, the item's own is kept.
"""
from __future__ import annotations

from dataclasses import dataclass

from corral.core.records import as_dicts


@dataclass(frozen=True)
class PromptProgram:
    system_prompt: str = ""
    few_shot: tuple = ()  # ((user, assistant), ...)

    def render(self, item) -> list[dict]:
        """An Item (or its messages, as Messages or dicts) as the conversation a model sees."""
        messages = as_dicts(getattr(item, "messages", item))
        if not self.system_prompt and not self.few_shot:
            return list(messages)
        turns = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        own_system = [m for m in messages if m["role"] == "system"] if not turns else []
        for user, assistant in self.few_shot:
            turns += [{"role": "user", "content": user},
                      {"role": "assistant", "content": assistant}]
        return own_system + turns + [m for m in messages if m["role"] != "system"]
