"""`corral chat`: try a model or a run's final model, one prompt or interactively; with
`--strategy`, every reply goes through an inference strategy (and says what it cost). The
conversation itself is `corral.strategies.chat`; this module only prints and reads turns."""
from __future__ import annotations

import sys

from corral.strategies.chat import ChatOptions, ChatReply, open_chat


def run_chat(opts: ChatOptions) -> None:
    session = open_chat(opts)
    if opts.prompt is not None:
        print(_shown(session.reply(opts.prompt)))
        return
    print("corral chat: an empty line or Ctrl-D ends the session")
    while True:
        try:
            text = input("> ").strip()
        except EOFError:
            break
        if not text:
            break
        print(_shown(session.reply(text)))


def _shown(reply: ChatReply) -> str:
    """The reply's text; a strategy's compute goes to stderr first."""
    if reply.compute is not None:
        c = reply.compute
        print(f"[{reply.strategy}: {c.calls} calls, {c.prompt_tokens} prompt + "
              f"{c.completion_tokens} generated tokens]", file=sys.stderr)
    return reply.text


def chat(model: str, prompt: str | None = None, system: str = "", max_new_tokens: int = 256,
         temperature: float = 0.0, template: str = "", strategy: str = "") -> None:
    """The old entry point (kept for callers): `run_chat` with these options."""
    run_chat(ChatOptions(model=model, prompt=prompt, system=system,
                         max_new_tokens=max_new_tokens, temperature=temperature,
                         template=template, strategy=strategy))
