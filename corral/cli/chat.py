"""`corral chat`: try a model or a run's final model, one prompt or interactively; with
`--strategy`, every reply goes through an inference strategy (and says what it cost)."""
from __future__ import annotations

from corral.core.sections import ModelConfig
from corral.infer.engine import SamplingParams, engine_for
from corral.model.policy import load_policy


def chat(model: str, prompt: str | None = None, system: str = "", max_new_tokens: int = 256,
         temperature: float = 0.0, template: str = "", strategy: str = "") -> None:
    answerer = _strategy(strategy, max_new_tokens, temperature) if strategy else None
    policy = load_policy(ModelConfig(name=model, template=template), None, for_training=False,
                         key="--model")
    engine = engine_for(policy)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, n=1)
    history = [{"role": "system", "content": system}] if system else []
    if answerer is not None:
        answerer = answerer(engine, model)

    def reply(text: str) -> str:
        history.append({"role": "user", "content": text})
        if answerer is not None:
            answer = answerer(history)
        else:
            answer = engine.generate_chat([history], params)[0][0].text
        history.append({"role": "assistant", "content": answer})
        return answer

    if prompt is not None:
        print(reply(prompt))
        return
    print("corral chat: an empty line or Ctrl-D ends the session")
    while True:
        try:
            text = input("> ").strip()
        except EOFError:
            break
        if not text:
            break
        print(reply(text))


def _strategy(spec: str, max_new_tokens: int, temperature: float):
    """Parsed before the model loads (a typo costs nothing); returns a factory that binds the
    strategy to the loaded engine and answers a history, printing each reply's compute."""
    import sys

    from corral.core.errors import CorralError
    from corral.core.records import Item, as_messages
    from corral.strategies import parse_strategy

    strategy = parse_strategy(spec, max_new_tokens=max_new_tokens,
                              temperature=temperature or 0.8)
    if strategy.needs_grader or (strategy.kind == "best-of-n" and
                                 strategy.scorer_spec != "judge"):
        raise CorralError(f"--strategy {spec}: chat has no grader or reference answer; use "
                          "refine, majority, debate, beam or best-of-n:N:judge")

    def bind(engine, name):
        from corral.cli.strategies import JudgeScorer
        from corral.infer.generators import Generator

        generator = Generator.from_engine(engine, name)
        if strategy.scorer_spec == "judge":
            strategy.scorer = JudgeScorer(generator, max_new_tokens)

        def answer(history):
            outcome = strategy.run([Item(as_messages(history), {}, "chat")], generator)[0]
            c = outcome.compute
            print(f"[{spec}: {c.calls} calls, {c.prompt_tokens} prompt + "
                  f"{c.completion_tokens} generated tokens]", file=sys.stderr)
            return outcome.answer
        return answer

    return bind
