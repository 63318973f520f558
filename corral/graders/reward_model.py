"""The `reward_model` grader: scores (prompt, response) with a trained reward model.

    {"type": "reward_model", "model": "my-rm-run"}
"""
from __future__ import annotations

from corral.core.errors import CorralError
from corral.core.records import Completion, Message, as_messages
from corral.core.sections import ModelConfig
from corral.graders.base import BaseGrader, Score
from corral.model.heads import RewardModel, load_reward_model


class RewardModelGrader(BaseGrader):
    """Scores (item, sample) as the item's prompt + the sample as the assistant's reply.
    `Score.value` is the raw reward (unbounded; higher is better)."""

    def __init__(self, rm: RewardModel, batch_tokens: int = 4096, name: str = "reward_model"):
        self.rm, self.batch_tokens, self.name = rm, batch_tokens, name

    def grade(self, item, sample) -> Score:
        return self.grade_batch([(item, sample)])[0]

    def grade_batch(self, pairs) -> list[Score]:
        records = [self._record(item, sample.output_text) for item, sample in pairs]
        rewards = self.rm.score(records, self.batch_tokens) if records else []
        return [Score(value=r, details={"reward": r}) for r in rewards]

    def _record(self, item, text: str) -> Completion:
        prompt = _item_prompt(item)
        if self.rm.chat:
            turns = (Message("user", prompt),) if isinstance(prompt, str) else prompt
            return Completion(turns, (Message("assistant", text),))
        if not isinstance(prompt, str):  # a plain-text reward model sees the turns as text
            prompt = "\n".join(m.content for m in prompt)
        return Completion(prompt, text)


def _item_prompt(item):
    """The prompt of a grader item: `messages`, `prompt` (text or messages) or `question`."""
    if hasattr(item, "messages"):  # an Item record
        return tuple(item.messages)
    for key in ("messages", "prompt", "question"):
        value = item.get(key) if isinstance(item, dict) else None
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)) and value:
            return as_messages(value)
    keys = sorted(item) if isinstance(item, dict) else type(item).__name__
    raise CorralError(f"the reward_model grader needs the prompt, but the item has no "
                      f"'messages', 'prompt' or 'question' field (it has {keys})")


_SPEC_KEYS = ("type", "model", "name", "root", "batch_tokens", "device", "dtype")


def reward_model_grader(spec: dict) -> RewardModelGrader:
    """`{"type": "reward_model", "model": RUN_OR_PATH}` (optional: name, root, batch_tokens,
    device, dtype) -> a grader scoring with that reward model."""
    if not isinstance(spec, dict) or spec.get("type") != "reward_model":
        raise CorralError('a reward model grader is {"type": "reward_model", "model": RUN}')
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    if unknown:
        raise CorralError(f"reward_model grader: unknown key(s) {unknown}; "
                          f"allowed: {', '.join(_SPEC_KEYS)}")
    model = spec.get("model")
    if not isinstance(model, str) or not model:
        raise CorralError('reward_model grader needs "model": a run name, a run directory '
                          "or a reward model directory")
    cfg = ModelConfig(name=model, device=str(spec.get("device", "auto")),
                      dtype=str(spec.get("dtype", "auto")))
    rm = load_reward_model(cfg, root=str(spec.get("root", "runs")))
    return RewardModelGrader(rm, int(spec.get("batch_tokens", 4096)),
                             str(spec.get("name", "reward_model")))
