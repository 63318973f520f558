"""The in-place growing KV cache gives the same logits as transformers' DynamicCache, through
decoding, running out of room, dropping finished rows, fanning out and cropping."""
import torch
from transformers import DynamicCache

from corral.infer.kvcache import growing_layer_class, reserve
from corral.testing import tiny_model


def _steps(model, cache, first, tokens, select=None):
    """Feed `first` then one token per step; apply `select` (row indices) after step 2."""
    out = [model(input_ids=first, past_key_values=cache, use_cache=True).logits[:, -1]]
    rows = first.shape[0]
    for i, tok in enumerate(tokens):
        if i == 2 and select is not None:
            cache.batch_select_indices(select)
            rows = len(select)
        step = torch.full((rows, 1), tok)
        out.append(model(input_ids=step, past_key_values=cache, use_cache=True).logits[:, -1])
    return out


def test_growing_cache_matches_dynamic_cache():
    torch.manual_seed(0)
    model = tiny_model().eval()
    prompt = torch.randint(3, 60, (3, 5))
    tokens = [7, 9, 11, 13, 17, 19]
    with torch.no_grad():
        plain, grown = DynamicCache(), DynamicCache()
        model(input_ids=prompt, past_key_values=plain, use_cache=True)
        model(input_ids=prompt, past_key_values=grown, use_cache=True)
        for c in (plain, grown):
            c.batch_repeat_interleave(2)  # n samples per prompt, as the engine does
        reserve(grown, 2)  # too little room on purpose: the layer must grow itself
        assert all(type(layer) is growing_layer_class() for layer in grown.layers)
        first = torch.full((6, 1), 5)
        select = torch.tensor([0, 3, 5])
        a = _steps(model, plain, first, tokens, select)
        b = _steps(model, grown, first, tokens, select)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    assert grown.get_seq_length() == plain.get_seq_length() == 5 + 1 + len(tokens)
    plain.crop(-3)
    grown.crop(-3)
    assert grown.get_seq_length() == plain.get_seq_length()
    torch.testing.assert_close(grown.layers[0].keys, plain.layers[0].keys)


def test_reserve_leaves_empty_cache_alone():
    cache = DynamicCache()
    reserve(cache, 10)
    assert not any(type(layer) is growing_layer_class() for layer in cache.layers)
