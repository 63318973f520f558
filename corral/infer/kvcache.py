"""A KV cache that grows in place: transformers' DynamicCache appends each new token with
`torch.cat`, which copies every layer's whole cache at every decoding step (for 64 rows of a
135M model at 200 tokens, ~0.6 GB of copying per step on CPU). Here each layer gets spare
capacity once, new keys/values are written into it, and attention reads a view."""
from __future__ import annotations

from functools import cache as _once


def reserve(cache, extra: int) -> None:
    """Give every plain dynamic layer of `cache` room for `extra` more tokens, in place."""
    from transformers.cache_utils import DynamicLayer

    for layer in getattr(cache, "layers", []):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
            layer.__class__ = growing_layer_class()
            layer.reserve(extra)


@_once
def growing_layer_class():
    """Built on first use, so importing corral does not import transformers."""
    from transformers.cache_utils import DynamicLayer

    class _GrowingLayer(DynamicLayer):
        """DynamicLayer whose keys/values are views of buffers with spare capacity."""

        def reserve(self, extra: int) -> None:
            batch, heads, length, dim = self.keys.shape
            k = self.keys.new_empty(batch, heads, length + extra, dim)
            v = self.values.new_empty(batch, heads, length + extra, dim)
            k[:, :, :length], v[:, :, :length] = self.keys, self.values
            self._kbuf, self._vbuf = k, v
            self._set(length)

        def _set(self, length: int) -> None:
            self.keys, self.values = self._kbuf[:, :, :length], self._vbuf[:, :, :length]

        def update(self, key_states, value_states, *args, **kwargs):
            start = self.keys.shape[-2]
            end = start + key_states.shape[-2]
            if end > self._kbuf.shape[-2]:  # out of room: double (rare; copies once)
                self.reserve(max(end - start, start))
            self._kbuf[:, :, start:end] = key_states
            self._vbuf[:, :, start:end] = value_states
            self._set(end)
            return self.keys, self.values

        def batch_select_indices(self, indices) -> None:
            length = self.keys.shape[-2]
            self._kbuf, self._vbuf = self._kbuf[indices], self._vbuf[indices]
            self._set(length)

        def batch_repeat_interleave(self, repeats: int) -> None:
            length = self.keys.shape[-2]
            self._kbuf = self._kbuf.repeat_interleave(repeats, dim=0)
            self._vbuf = self._vbuf.repeat_interleave(repeats, dim=0)
            self._set(length)

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove >= 0:  # 0 is a no-op; a positive value raises, as the parent does
                super().crop(tokens_to_remove)
                return
            self._set(max(self.keys.shape[-2] + tokens_to_remove, 0))

    return _GrowingLayer
