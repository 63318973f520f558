"""The generation engine, the only code in corral that samples text: `Engine` over a `Backend`,
`HFBackend` (our own KV-cached decode loop) or `VLLMBackend`."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal, Protocol

from corral.core.errors import CorralError
from corral.infer.kvcache import reserve

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
        messages = [m if isinstance(m, dict) else {"role": m.role, "content": m.content}
                    for m in conversation]
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


@dataclass
class _Row:
    """Decode state of one sample."""
    prompt_index: int
    sample_index: int
    generator: object  # torch.Generator on CPU, one per row so batching does not change draws
    token_ids: list
    logprobs: list
    finish_reason: str | None = None


class HFBackend:
    """Batched decode loop over a HF causal LM with a DynamicCache.

    Each prompt is encoded once; its cache is then repeated n times, so the n samples share the
    prompt's computation. Rows leave the batch (and the cache) as soon as they finish.
    batch_size bounds decode rows (prompts x n); a prompt's n samples always decode together.
    """

    def __init__(self, model, tokenizer, batch_size: int = 16):
        if batch_size < 1:
            raise CorralError(f"HFBackend: batch_size must be at least 1; got {batch_size}.")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eos_ids = _eos_ids(model, tokenizer)
        # Pad positions are masked out, so any id works; prefer the tokenizer's own.
        candidates = (tokenizer.pad_token_id, tokenizer.eos_token_id)
        self.pad_id = next((i for i in candidates if i is not None), 0)
        # Only the last position's logits are needed; skip the [B, T, V] projection when we can
        # (a PEFT wrapper hides the argument behind **kwargs but passes it through).
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        keep_last = _accepts(base.forward, "logits_to_keep")
        self._forward_kwargs = {"logits_to_keep": 1} if keep_last else {}
        # transformers 5.x renames `past_key_values` to `cache` (the old name goes in 5.40).
        self._cache_kw = "cache" if _accepts(base.forward, "cache") else "past_key_values"

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
        import torch

        base_seed = params.seed
        if base_seed is None:
            base_seed = int(torch.randint(0, 2**62, ()).item())
        # Similar lengths together means less padding; per-row seeds keep outputs order-independent.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        per_chunk = max(1, self.batch_size // params.n)
        results: list[list[Generation]] = [[] for _ in prompts]
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), per_chunk):
                    chunk = [(i, prompts[i]) for i in order[start:start + per_chunk]]
                    for row in self._decode(chunk, params, base_seed):
                        results[row.prompt_index].append(self._finish(row, params))
        finally:
            for module, training in modes:
                module.training = training
        for gens in results:
            gens.sort(key=lambda g: g.sample_index)
        return results

    def _prefill(self, prompts: list[list[int]], n: int, max_new: int = 0):
        """One forward over the left-padded prompts, then the cache fanned out to n rows each."""
        from transformers import DynamicCache

        ids, mask = _left_pad(prompts, self.pad_id, _device(self.model))
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # pads sit at 0; real tokens count from 0
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         use_cache=True, **{self._cache_kw: cache}, **self._forward_kwargs)
        logits, next_pos = out.logits[:, -1].float(), positions[:, -1] + 1
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits, mask, next_pos = (t.repeat_interleave(n, dim=0)
                                      for t in (logits, mask, next_pos))
        reserve(cache, max_new)  # decode writes in place instead of re-copying the cache
        return cache, logits, mask, next_pos

    def _decode(self, chunk, params: SamplingParams, base_seed: int) -> list[_Row]:
        """Prefill the chunk's prompts once, fan out to n rows each, decode until all finish."""
        import torch

        device = _device(self.model)
        cache, logits, mask, next_pos = self._prefill([p for _, p in chunk], params.n,
                                                      params.max_new_tokens)
        rows = [_Row(pi, si, _row_generator(base_seed, pi, si), [], [])
                for pi, _ in chunk for si in range(params.n)]
        active, stops = rows, _StopChecker(self.tokenizer, params.stop)
        for step in range(params.max_new_tokens):
            tokens, logps = _sample(logits, params, [r.generator for r in active])
            keep = [i for i, row in enumerate(active)
                    if not self._advance(row, tokens[i], logps[i], stops)]
            if not keep or step == params.max_new_tokens - 1:
                break
            if len(keep) < len(active):  # drop finished rows so they cost nothing more
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                active = [active[i] for i in keep]
                tokens, mask, next_pos = tokens[index], mask[index], next_pos[index]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=-1)
            out = self.model(input_ids=tokens[:, None], attention_mask=mask,
                             position_ids=next_pos[:, None], use_cache=True,
                             **{self._cache_kw: cache}, **self._forward_kwargs)
            logits, next_pos = out.logits[:, -1].float(), next_pos + 1
        return rows

    def _advance(self, row: _Row, token, logp, stops: _StopChecker) -> bool:
        """Append one sampled token; returns True when the row has finished."""
        token = int(token)
        row.token_ids.append(token)
        row.logprobs.append(float(logp))
        if token in self.eos_ids:
            row.finish_reason = "eos"
        elif stops.hit(row.token_ids):
            row.finish_reason = "stop"
        return row.finish_reason is not None

    def _finish(self, row: _Row, params: SamplingParams) -> Generation:
        reason = row.finish_reason or "length"
        ids = row.token_ids[:-1] if reason == "eos" else row.token_ids
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if reason == "stop":
            text = _cut_at_stop(text, params.stop)
        return Generation(text=text, token_ids=list(row.token_ids), logprobs=list(row.logprobs),
                          finish_reason=reason, prompt_index=row.prompt_index,
                          sample_index=row.sample_index)


def _sample(logits, params: SamplingParams, generators):
    """logits [R, V] float32 -> (tokens [R] long, raw log-probs of those tokens [R])."""
    import torch

    raw_logps = torch.log_softmax(logits, dim=-1)
    if params.greedy:
        tokens = logits.argmax(dim=-1)
    else:
        filtered = _filter(logits / params.temperature, params.top_k, params.top_p)
        probs = torch.softmax(filtered, dim=-1)
        # Inverse-CDF with one uniform per row from that row's own generator: the draw depends only
        # on (seed, prompt_index, sample_index), never on which other rows share the batch.
        uniforms = torch.stack([torch.rand((), generator=g) for g in generators]).to(logits.device)
        cdf = probs.cumsum(dim=-1)
        total = cdf[:, -1:]
        tokens = torch.searchsorted(cdf, uniforms[:, None] * total, right=True).squeeze(-1)
        # Rounding can push the draw past the last token with mass; clamp to that token.
        last_with_mass = (cdf < total).sum(dim=-1)
        tokens = torch.minimum(tokens, last_with_mass)
    return tokens, raw_logps.gather(-1, tokens[:, None]).squeeze(-1)


def _filter(logits, top_k: int, top_p: float):
    """Set logits outside the top-k and outside the top-p nucleus to -inf (one always survives)."""
    import torch

    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        outside = (probs.cumsum(dim=-1) - probs) > top_p  # mass before this token already exceeds p
        sorted_logits = sorted_logits.masked_fill(outside, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


class _StopChecker:
    """Detects stop strings in the decoded tail of a completion."""

    def __init__(self, tokenizer, stops: tuple[str, ...]):
        self.tokenizer = tokenizer
        self.stops = stops
        # Byte-level tokens can carry a quarter of a character, so 4 tokens per stop character
        # (plus slack) always covers a stop string that the newest token just completed.
        self.window = 4 * max((len(s) for s in stops), default=0) + 4

    def hit(self, token_ids: list[int]) -> bool:
        if not self.stops:
            return False
        tail = self.tokenizer.decode(token_ids[-self.window:], skip_special_tokens=True)
        return any(s in tail for s in self.stops)


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(found)] if found else text


def _left_pad(prompts: list[list[int]], pad_id: int, device):
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def _row_generator(seed: int, prompt_index: int, sample_index: int):
    import torch

    # A fixed integer mix (not hash()) so the same call reproduces across processes.
    mixed = (seed * 1_000_003 + prompt_index * 7_919 + sample_index * 104_729 + 1) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    config = getattr(model, "generation_config", None)
    for value in (tokenizer.eos_token_id, getattr(config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


def _device(model):
    return next(model.parameters()).device


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class VLLMBackend:
    """Samples with vLLM (GPU; untested by the CPU suite). `model`: a path/hub id or a `vllm.LLM`.

    Log-probs must be raw (temperature 1) to match HFBackend: vLLM's default `logprobs_mode`,
    "raw_logprobs", gives that; pass it explicitly in llm_kwargs to pin it.
    """

    def __init__(self, model, **llm_kwargs):
        try:
            import vllm
        except ImportError:
            raise CorralError("VLLMBackend: vllm is not installed; `pip install vllm` on a GPU "
                              "machine, or use HFBackend.") from None
        self._vllm = vllm
        self.llm = vllm.LLM(model=model, **llm_kwargs) if isinstance(model, str) else model

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
        sampling = self._vllm.SamplingParams(
            n=params.n, temperature=params.temperature, top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1, max_tokens=params.max_new_tokens,
            stop=list(params.stop), seed=params.seed, logprobs=0,
        )
        requests = [{"prompt_token_ids": p} for p in prompts]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        return [[_from_vllm(c, pi, si) for si, c in enumerate(out.outputs)]
                for pi, out in enumerate(outputs)]


def _from_vllm(completion, prompt_index: int, sample_index: int) -> Generation:
    if completion.finish_reason == "length":
        reason = "length"
    else:  # vLLM reports "stop" for both; stop_reason holds the stop string when one matched
        reason = "stop" if isinstance(completion.stop_reason, str) else "eos"
    token_ids = list(completion.token_ids)
    logprobs = [float(step[tok].logprob) for tok, step in zip(token_ids, completion.logprobs or [])]
    return Generation(text=completion.text, token_ids=token_ids, logprobs=logprobs,
                      finish_reason=reason, prompt_index=prompt_index, sample_index=sample_index)
