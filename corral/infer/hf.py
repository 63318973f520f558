"""The transformers backend of the engine: batched prefill, n samples sharing one prefill,
a KV cache that grows in place, per-row seeded sampling, stop strings."""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from corral.core.errors import CorralError
from corral.infer.engine import Generation, SamplingParams
from corral.infer.kvcache import reserve


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
        context = getattr(self.model.config, "max_position_embeddings", None)
        longest = max(map(len, prompts), default=0)
        if context and longest > context:  # the model cannot read it: refuse before allocating
            raise CorralError(f"a prompt of {longest} tokens is longer than the model's context "
                              f"of {context}; shorten it (fewer --few-shot examples, a shorter "
                              "system prompt or row)")
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

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def _row_generator(seed: int, prompt_index: int, sample_index: int):

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
