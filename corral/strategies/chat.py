"""`corral chat` as a library call: a conversation with a model (a run's final model, a
directory, a hub id or an endpoint), each reply sampled directly or, with `strategy`, through
an inference strategy whose compute comes with the reply.

    session = open_chat(ChatOptions(model="smollm2-135m-instruct", strategy="refine:1"))
    reply = session.reply("What is 2+2?"); reply.text, reply.compute
    chat(ChatOptions(model="runs/my-run", prompt="Hello")).text       # one prompt
"""
from __future__ import annotations

from dataclasses import dataclass

from corral.core.errors import CorralError
from corral.eval.outcomes import Compute
from corral.tasks.prompt import PromptProgram


@dataclass(frozen=True)
class ChatOptions:
    model: str = "smollm2-135m-instruct"
    prompt: str | None = None  # one prompt (`chat`); an interactive session takes turns
    system: str = ""
    program: str = ""  # a saved prompt program (corral prompt search) instead of --system
    max_new_tokens: int = 256
    temperature: float = 0.0
    strategy: str = ""  # refine:1, majority:5, debate:3x2, best-of-n:4:judge
    template: str = ""  # chat template (.jinja file or inline) instead of the model's
    root: str = "runs"  # where runs live


@dataclass
class ChatReply:
    text: str
    compute: Compute | None = None  # what a strategy's reply cost (None without one)
    strategy: str = ""


def parse_chat_strategy(opts: ChatOptions):
    """The strategy of `opts`, parsed before any model loads (a typo costs nothing)."""
    from corral.strategies.spec import parse_strategy

    strategy = parse_strategy(opts.strategy, max_new_tokens=opts.max_new_tokens,
                              temperature=opts.temperature or 0.8)
    if strategy.needs_grader or (strategy.kind == "best-of-n" and
                                 strategy.scorer_spec != "judge"):
        raise CorralError(f"--strategy {opts.strategy}: chat has no grader or reference "
                          "answer; use refine, majority, debate, beam or best-of-n:N:judge")
    return strategy


class ChatSession:
    """One conversation: `reply(text)` adds the user's turn and the model's answer to the
    history and returns the answer."""

    def __init__(self, opts: ChatOptions):
        from corral.infer.engine import SamplingParams

        self.opts = opts
        self.program = _program(opts)  # the one prompt renderer
        self.strategy = parse_chat_strategy(opts) if opts.strategy else None
        self.generator = _generator(opts)
        if self.strategy is not None and self.strategy.scorer_spec == "judge":
            from corral.strategies.judged import JudgeScorer

            self.strategy.scorer = JudgeScorer(self.generator, opts.max_new_tokens)
        self.params = SamplingParams(max_new_tokens=opts.max_new_tokens,
                                     temperature=opts.temperature, n=1)
        self.history: list[dict] = []  # the user's and the model's turns

    @property
    def conversation(self) -> list[dict]:
        """What the model sees: the system prompt, then the turns so far."""
        return self.program.render(self.history)

    def reply(self, text: str) -> ChatReply:
        from corral.core.records import Item, as_messages

        self.history.append({"role": "user", "content": text})
        if self.strategy is not None:
            outcome = self.strategy.run([Item(as_messages(self.conversation), {}, "chat")],
                                        self.generator)[0]
            out = ChatReply(outcome.answer, outcome.compute, self.opts.strategy)
        else:
            out = ChatReply(self.generator.chat([self.conversation], self.params)[0][0].text)
        self.history.append({"role": "assistant", "content": out.text})
        return out


def _program(opts: ChatOptions) -> PromptProgram:
    if not opts.program:
        return PromptProgram(system_prompt=opts.system)
    from corral.eval.commands import check_program_flags
    from corral.tasks.prompt_file import load_program

    check_program_flags(opts)
    return load_program(opts.program)


def _generator(opts: ChatOptions):
    from corral.eval.commands import load_generator

    return load_generator(opts.model, opts.root, opts.template)


def open_chat(opts: ChatOptions) -> ChatSession:
    return ChatSession(opts)


def chat(opts: ChatOptions) -> ChatReply:
    """One prompt, one reply."""
    if opts.prompt is None:
        raise CorralError("chat: give a prompt (--prompt), or open a session with open_chat")
    return open_chat(opts).reply(opts.prompt)
