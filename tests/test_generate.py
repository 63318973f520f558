"""Generation engine: greedy parity with HF generate, shared prompts, seeds, stops, log-probs."""
import copy

import pytest
import torch

from corral.core.errors import CorralError
from corral.infer.engine import Engine, Generation, SamplingParams
from corral.infer.hf import HFBackend
from corral.infer.vllm import VLLMBackend
from corral.testing import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # A model this small runs fastest on one thread; more threads spin against other processes.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def lm():
    """The tiny Llama with larger random weights: default init just repeats its input token."""
    model = tiny_model()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15, generator=gen)
    return model.eval()


PROMPTS = ["h", "hello", "a prompt of middling size",
           "the longest prompt of them all, padded least " * 2]


def ids_of(tok, texts):
    return [tok(t)["input_ids"] for t in texts]


def hf_greedy(model, prompt, max_new_tokens):
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=max_new_tokens, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def record_embed_shapes(model):
    shapes = []
    def hook(module, args):
        shapes.append(tuple(args[0].shape))

    handle = model.model.embed_tokens.register_forward_pre_hook(hook)
    return shapes, handle


def test_greedy_matches_hf_generate_token_for_token_with_left_padding(lm, tok):
    prompts = ids_of(tok, PROMPTS)
    out = Engine.hf(lm, tok).generate(prompts, SamplingParams(max_new_tokens=24, temperature=0))
    for prompt, gens in zip(prompts, out):
        assert gens[0].token_ids == hf_greedy(lm, prompt, 24)
        assert gens[0].finish_reason == "length"


def test_eos_ids_from_generation_config_end_rows_early_and_are_kept(lm, tok):
    prompts = ids_of(tok, PROMPTS)
    model = copy.deepcopy(lm)
    stop_token = hf_greedy(model, prompts[1], 24)[5]
    model.generation_config.eos_token_id = [tok.eos_token_id, stop_token]
    shapes, handle = record_embed_shapes(model)
    out = Engine.hf(model, tok).generate(prompts, SamplingParams(max_new_tokens=24, temperature=0))
    handle.remove()
    finished = [g[0] for g in out if g[0].finish_reason == "eos"]
    assert out[1][0] in finished
    for prompt, gens in zip(prompts, out):
        g = gens[0]
        assert g.token_ids == hf_greedy(model, prompt, 24)[:len(g.token_ids)]
        if g.finish_reason == "eos":
            assert g.token_ids[-1] == stop_token and len(g.logprobs) == len(g.token_ids)
            assert g.text == tok.decode(g.token_ids[:-1], skip_special_tokens=True)
    assert min(s[0] for s in shapes[1:]) < len(prompts)  # finished rows left the batch


def test_n_samples_share_one_prompt_forward(lm, tok):
    prompts = ids_of(tok, PROMPTS[:2])
    shapes, handle = record_embed_shapes(lm)
    out = Engine.hf(lm, tok).generate(prompts, SamplingParams(max_new_tokens=6, n=4, seed=0))
    handle.remove()
    width = max(map(len, prompts))
    assert shapes[0] == (2, width)  # one prefill row per prompt, not per sample
    assert all(s[1] == 1 and s[0] <= 8 for s in shapes[1:])
    assert [[g.sample_index for g in gens] for gens in out] == [[0, 1, 2, 3]] * 2
    assert all(g.prompt_index == i for i, gens in enumerate(out) for g in gens)
    assert len({tuple(g.token_ids) for g in out[0]}) > 1  # samples differ after the shared prefix


def test_batch_size_chunks_keep_each_prompts_samples_together_and_do_not_change_samples(lm, tok):
    prompts = ids_of(tok, PROMPTS[1:])  # all longer than one token, so prefills are recognisable
    params = SamplingParams(max_new_tokens=8, n=4, seed=11, temperature=0.9)
    shapes, handle = record_embed_shapes(lm)
    small = Engine.hf(lm, tok, batch_size=4).generate(prompts, params)
    handle.remove()
    assert [s[0] for s in shapes if s[1] > 1] == [1, 1, 1]
    big = Engine.hf(lm, tok, batch_size=64).generate(prompts, params)
    assert ([[g.token_ids for g in gens] for gens in small]
            == [[g.token_ids for g in gens] for gens in big])


def test_same_seed_same_samples_and_other_seed_other_samples(lm, tok):
    engine, prompts = Engine.hf(lm, tok), ids_of(tok, PROMPTS[:2])

    def sample(seed):
        out = engine.generate(prompts, SamplingParams(max_new_tokens=10, n=3, seed=seed))
        return [[g.token_ids for g in gens] for gens in out]

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    torch.manual_seed(5)
    first = sample(None)
    torch.manual_seed(5)
    assert sample(None) == first


def test_stop_string_is_trimmed_from_text_and_reported(lm, tok):
    prompt = ids_of(tok, ["stop here"])[0]
    full = hf_greedy(lm, prompt, 30)
    pieces = [tok.decode([t]) for t in full]
    # A stop made of two printable single-token characters, so it decodes the same everywhere.
    j = next(i for i in range(3, len(full) - 1)
             if all(len(p) == 1 and p.isprintable() and p != "\ufffd" for p in pieces[i:i + 2]))
    stop = pieces[j] + pieces[j + 1]
    full_text = tok.decode(full, skip_special_tokens=True)
    params = SamplingParams(max_new_tokens=30, temperature=0, stop=("never-seen", stop))
    g = Engine.hf(lm, tok).generate([prompt], params)[0][0]
    assert g.finish_reason == "stop"
    assert g.text == full_text[:full_text.index(stop)]
    assert g.token_ids == full[:len(g.token_ids)] and len(g.token_ids) <= j + 2
    assert stop in tok.decode(g.token_ids)


def test_max_new_tokens_is_respected(lm, tok):
    params = SamplingParams(max_new_tokens=7, n=3, seed=0)
    out = Engine.hf(lm, tok).generate(ids_of(tok, PROMPTS[:2]), params)
    for g in (g for gens in out for g in gens):
        assert len(g.token_ids) <= 7 and len(g.logprobs) == len(g.token_ids)
        assert (len(g.token_ids) == 7) == (g.finish_reason == "length")


def test_logprobs_equal_a_full_forward_recompute(lm, tok):
    """The trainer-vs-sampler invariant: raw temperature-1 log-probs of the sampled tokens."""
    prompts = ids_of(tok, PROMPTS[:3])
    params = SamplingParams(max_new_tokens=12, n=3, temperature=0.7, top_p=0.9, top_k=50, seed=3)
    out = Engine.hf(lm, tok).generate(prompts, params)
    for prompt, gens in zip(prompts, out):
        for g in gens:
            ids = torch.tensor([prompt + g.token_ids])
            with torch.no_grad():
                logps = torch.log_softmax(lm(input_ids=ids).logits[0].float(), dim=-1)
            positions = torch.arange(len(prompt) - 1, ids.shape[1] - 1)
            expected = logps[positions, torch.tensor(g.token_ids)]
            assert torch.allclose(torch.tensor(g.logprobs), expected, atol=1e-4)


def test_top_k_1_and_tiny_top_p_equal_greedy(lm, tok):
    engine, prompts = Engine.hf(lm, tok), ids_of(tok, PROMPTS)

    def tokens(**kw):
        out = engine.generate(prompts, SamplingParams(max_new_tokens=10, **kw))
        return [gens[0].token_ids for gens in out]

    greedy = tokens(temperature=0)
    assert tokens(top_k=1, temperature=1.5, seed=4) == greedy
    assert tokens(top_p=1e-6, seed=4) == greedy


def test_train_and_eval_modes_are_restored(tok):
    model = tiny_model()
    model.train()
    model.model.layers[0].eval()  # a deliberately frozen submodule stays as it was
    Engine.hf(model, tok).generate([[1, 5, 6]], SamplingParams(max_new_tokens=2))
    assert model.training and model.model.layers[1].training
    assert not model.model.layers[0].training


class FakeBackend:
    def __init__(self, n_override=None):
        self.calls, self.n_override = [], n_override

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        n = self.n_override or params.n
        return [[Generation(f"p{i}s{s}", [7], [-0.5], "length", i, s) for s in range(n)]
                for i in range(len(prompts))]


def test_engine_encodes_text_and_chat_and_checks_the_backend_contract(tok):
    backend = FakeBackend()
    engine = Engine(backend, tok)
    out = engine.generate(["ab", "c"], SamplingParams(n=2))
    assert backend.calls[-1][0] == [tok("ab")["input_ids"], tok("c")["input_ids"]]
    assert [[g.text for g in gens] for gens in out] == [["p0s0", "p0s1"], ["p1s0", "p1s1"]]
    engine.generate_chat([[{"role": "user", "content": "hi"}]])
    sent = tok.decode(backend.calls[-1][0][0])
    assert sent.startswith("<|im_start|>system")
    assert sent.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    template = "{{ messages[0]['content'] }}!"
    engine.generate_chat([[{"role": "user", "content": "hi"}]], template=template)
    assert tok.decode(backend.calls[-1][0][0]) == "hi!"
    assert engine.generate([]) == []
    with pytest.raises(RuntimeError, match="Backend contract"):
        Engine(FakeBackend(n_override=1)).generate([[1, 2]], SamplingParams(n=3))
    with pytest.raises(CorralError, match="tokenizer"):
        Engine(FakeBackend()).generate(["text"])
    with pytest.raises(CorralError, match="empty prompt"):
        Engine(FakeBackend()).generate([[]])


@pytest.mark.parametrize("bad", [{"n": 0}, {"temperature": -1}, {"top_p": 0}, {"top_k": -1},
                                 {"max_new_tokens": 0}])
def test_bad_sampling_params_are_user_errors(bad):
    with pytest.raises(CorralError, match="sampling"):
        SamplingParams(**bad)


def test_a_bare_stop_string_is_one_stop():
    assert SamplingParams(stop="\n\n").stop == ("\n\n",)


def test_vllm_backend_without_vllm_says_what_to_do():
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed")
    except ImportError:
        pass
    with pytest.raises(CorralError, match="vllm is not installed"):
        VLLMBackend("some/model")


def test_hf_backend_rejects_a_zero_batch_size(lm, tok):
    with pytest.raises(CorralError, match="batch_size"):
        HFBackend(lm, tok, batch_size=0)


def test_a_peft_lora_model_generates_through_the_same_loop(lm, tok):
    peft = pytest.importorskip("peft")
    base = copy.deepcopy(lm)
    wrapped = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    backend = HFBackend(wrapped, tok)
    assert backend._forward_kwargs == {"logits_to_keep": 1}  # found behind the PEFT wrapper
    prompts = ids_of(tok, PROMPTS[:2])
    params = SamplingParams(max_new_tokens=8, temperature=0)
    got = [gens[0].token_ids for gens in Engine(backend, tok).generate(prompts, params)]
    # A fresh LoRA adapter is the identity (B = 0), so greedy output equals the base model's.
    assert got == [hf_greedy(lm, p, 8) for p in prompts]


# ---------------------------------------------------------------- engine_for's backends
def _policy(lora=False):
    from corral.core.sections import LoraConfig
    from corral.model.policy import Policy

    return Policy.from_objects(tiny_model(), tiny_tokenizer(), LoraConfig() if lora else None)


def test_engine_for_builds_hf_and_refuses_unknown_backends():
    from corral.infer.engine import engine_for

    policy = _policy()
    assert isinstance(engine_for(policy, 4).backend, HFBackend)
    with pytest.raises(CorralError, match="did you mean 'vllm'"):
        engine_for(policy, backend="vlm")
    with pytest.raises(CorralError, match="only apply to backend='vllm'"):
        engine_for(policy, gpu_memory_utilization=0.5)


def test_engine_for_vllm_without_vllm_names_the_extra():
    from corral.infer.engine import engine_for

    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed")
    except ImportError:
        pass
    with pytest.raises(CorralError, match=r"vllm is not installed.*corral\[vllm\]"):
        engine_for(_policy(), backend="vllm")


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in `vllm` module recording what LLM was asked to load."""
    import sys
    import types

    made = []
    module = types.ModuleType("vllm")
    module.LLM = lambda **kwargs: made.append(kwargs) or "llm"
    monkeypatch.setitem(sys.modules, "vllm", module)
    return made


def test_engine_for_vllm_loads_the_saved_model(fake_vllm, tmp_path):
    from corral.infer.engine import engine_for
    from corral.model.policy import Policy

    policy = _policy()
    policy.model.save_pretrained(tmp_path)
    policy = Policy(type(policy.model).from_pretrained(tmp_path), policy.tokenizer)
    engine = engine_for(policy, backend="vllm", gpu_memory_utilization=0.5)
    assert isinstance(engine.backend, VLLMBackend) and engine.tokenizer is policy.tokenizer
    assert fake_vllm == [{"model": str(tmp_path), "dtype": "float32",
                          "gpu_memory_utilization": 0.5}]


def test_engine_for_vllm_refuses_weights_only_in_memory(fake_vllm):
    from corral.infer.engine import engine_for

    with pytest.raises(CorralError, match="LoRA adapter.*--merge"):
        engine_for(_policy(lora=True), backend="vllm")
    policy = _policy()
    policy.source = "some/model"
    with torch.no_grad():
        next(policy.model.parameters()).add_(1.0)
    with pytest.raises(CorralError, match="changed in memory"):
        engine_for(policy, backend="vllm")
    assert fake_vllm == []
