"""The generation engine, the only code in corral that samples text: `Engine` over a `Backend`,
`HFBackend` (our own KV-cached decode loop) or `VLLMBackend`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from corral.core.errors import CorralError
from corral.core.records import as_dicts

FinishReason = Literal["stop", "length", "eos"]


@dataclass
class SamplingParams:
    """How to sample. temperature 0 (or top_k 1) is greedy; top_k 0 and top_p 1 disable filters.

    seed None draws a seed from torch's global RNG, so `torch.manual_seed` still repeats runs.
    """
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self):
        if isinstance(self.stop, str):  # a bare string would otherwise stop on each character
            self.stop = (self.stop,)
        self.stop = tuple(s for s in self.stop if s)
        checks = [
            (self.max_new_tokens >= 1, "max_new_tokens must be at least 1"),
            (self.temperature >= 0, "temperature must be >= 0 (0 means greedy)"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.top_k >= 0, "top_k must be >= 0 (0 disables it)"),
            (self.n >= 1, "n must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise CorralError(f"sampling: {message}; got {self}.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


@dataclass
class Generation:
    """One sampled completion.

    token_ids: every sampled token, including the EOS token when finish_reason is "eos" and the
    tokens that spelled a stop string (the policy sampled them, so RL trains on them).
    text: the decoded completion without EOS/special tokens, cut before the first stop string.
    logprobs: per token of token_ids, the model's raw log-softmax at temperature 1 (before
    temperature, top-k and top-p), which is what a trainer's recomputed log-probs compare against.
    """
    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    prompt_index: int
    sample_index: int


class Backend(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
        """Returns, for each prompt in order, its params.n generations (sample_index 0..n-1)."""
        ...


class Engine:
    """Front door for sampling: token-id or string prompts, or chat conversations."""

    def __init__(self, backend: Backend, tokenizer=None):
        self.backend = backend
        self.tokenizer = tokenizer

    @classmethod
    def hf(cls, model, tokenizer, batch_size: int = 16) -> Engine:
        """An engine over a plain HF model (a Policy passes `policy.model, policy.tokenizer`)."""
        from corral.infer.hf import HFBackend

        return cls(HFBackend(model, tokenizer, batch_size=batch_size), tokenizer)

    def generate(self, prompts, params: SamplingParams | None = None) -> list[list[Generation]]:
        params = params or SamplingParams()
        if not prompts:
            return []
        if all(isinstance(p, str) for p in prompts):
            # Plain text prompts get the tokenizer's usual special tokens (e.g. a BOS).
            prompts = [self._encode(p, add_special_tokens=True) for p in prompts]
        elif not all(isinstance(p, (list, tuple)) for p in prompts):
            raise CorralError("generate: prompts must be all strings or all lists of token ids.")
        prompts = [list(map(int, p)) for p in prompts]
        if any(not p for p in prompts):
            raise CorralError("generate: an empty prompt has nothing to condition on; "
                              "give it at least one token.")
        out = self.backend.generate(prompts, params)
        if len(out) != len(prompts) or any(len(g) != params.n for g in out):
            raise RuntimeError(f"{type(self.backend).__name__} broke the Backend contract: "
                               f"expected {len(prompts)} lists of {params.n} generations.")
        return out

    def generate_chat(self, conversations: list[list[dict]], params: SamplingParams | None = None,
                      template: str | None = None) -> list[list[Generation]]:
        """Render each conversation with the chat template + generation prompt, then sample."""
        prompts = [self._encode(self.render_chat(c, template), add_special_tokens=False)
                   for c in conversations]
        return self.generate(prompts, params)

    def render_chat(self, conversation, template: str | None = None) -> str:
        tok = self._need_tokenizer()
        messages = as_dicts(conversation)
        if template is None and not getattr(tok, "chat_template", None):
            raise CorralError("generate_chat: the tokenizer has no chat template; "
                              "pass template=... .")
        return tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                       add_generation_prompt=True)

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        encoded = self._need_tokenizer()(text, add_special_tokens=add_special_tokens)
        return list(encoded["input_ids"])

    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise CorralError("generate: text prompts need a tokenizer; "
                              "build the Engine with tokenizer=... .")
        return self.tokenizer


BACKENDS = ("hf", "vllm")


def engine_for(policy, batch_size: int = 16, backend: str = "hf", **vllm_kwargs) -> Engine:
    """The engine sampling from a Policy: the one way corral builds one.

    backend="hf" (default): our KV-cached decode loop over the policy's live weights, in
    memory (what training, RL rollouts included, must use). backend="vllm": vLLM loads the
    policy's saved weights (`policy.source`) on a GPU, for sampling or evaluating a saved
    model; `vllm_kwargs` go to `vllm.LLM` (needs `pip install 'corral[vllm]'`).
    """
    if backend == "vllm":
        from corral.infer.vllm import vllm_backend_for

        return Engine(vllm_backend_for(policy, **vllm_kwargs), policy.tokenizer)
    if backend != "hf":
        from corral.core.config import did_you_mean

        raise CorralError(f"unknown engine backend {backend!r}"
                          f"{did_you_mean(backend, BACKENDS, 'backends')}")
    if vllm_kwargs:
        raise CorralError(f"engine_for: {', '.join(sorted(vllm_kwargs))} only apply to "
                          "backend='vllm'")
    return Engine.hf(policy.model, policy.tokenizer, batch_size=batch_size)
