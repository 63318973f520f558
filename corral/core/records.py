"""The closed set of typed examples every corral command reads (stdlib only)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

ROLES = ("system", "user", "assistant", "developer", "tool")


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    weight: int | None = None  # assistant turns only: 1 = trained on, 0 = context


Turns = tuple  # tuple[Message, ...]
Side = Union[str, Turns]  # a plain string or a conversational list of messages


@dataclass(frozen=True)
class Chat:
    """OpenAI chat format: a conversation; assistant turns are the targets."""
    messages: Turns
    source: str = ""  # "file:line"


@dataclass(frozen=True)
class Completion:
    """A prompt and its completion, each plain text or a list of messages."""
    prompt: Side
    completion: Side
    source: str = ""


@dataclass(frozen=True)
class Text:
    """Raw text for continued pretraining: every token is a target."""
    text: str
    source: str = ""


@dataclass(frozen=True)
class Preference:
    """A prompt with a preferred and a dispreferred response."""
    prompt: Side
    chosen: Side
    rejected: Side
    source: str = ""


@dataclass(frozen=True)
class Feedback:
    """A single response with a thumbs up (True) or down (False): KTO data."""
    prompt: Side
    completion: Side
    label: bool
    source: str = ""


@dataclass(frozen=True)
class Item:
    """A prompt plus reference fields that graders read as item.<key>."""
    messages: Turns
    fields: dict = field(default_factory=dict)
    source: str = ""

    def grader_item(self) -> dict:
        """What graders see as `item`: the fields plus the prompt as `messages` (reward
        models and judges need it), unless a field of that name already exists."""
        return {"messages": as_dicts(self.messages), **self.fields}


def as_dicts(turns) -> list[dict]:
    """Messages (or dicts) as chat-API dicts {"role", "content"}: the one conversion."""
    return [m if isinstance(m, dict) else {"role": m.role, "content": m.content} for m in turns]


def as_messages(turns) -> tuple[Message, ...]:
    """Chat-API dicts (or Messages) as Messages: the conversion the other way."""
    return tuple(m if isinstance(m, Message) else Message(m["role"], str(m["content"]))
                 for m in turns)


Record = Union[Chat, Completion, Text, Preference, Feedback, Item]
