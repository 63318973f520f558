"""`corral chat`: try a model or a run's final model, one prompt or interactively."""
from __future__ import annotations

from corral.core.sections import ModelConfig
from corral.infer.engine import SamplingParams, engine_for
from corral.model.policy import load_policy


def chat(model: str, prompt: str | None = None, system: str = "", max_new_tokens: int = 256,
         temperature: float = 0.0, template: str = "") -> None:
    policy = load_policy(ModelConfig(name=model, template=template), None, for_training=False,
                         key="--model")
    engine = engine_for(policy)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, n=1)
    history = [{"role": "system", "content": system}] if system else []

    def reply(text: str) -> str:
        history.append({"role": "user", "content": text})
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
