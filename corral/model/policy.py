"""The policy: loading (names resolved by corral.model.resolve) with optional LoRA, packed-batch
log-probs, the reference model, saving and merged export."""
from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from types import SimpleNamespace

import torch.utils.checkpoint  # binds `torch` too; checkpoint is used by token_logps

from corral.core.errors import CorralError
from corral.core.sections import LoraConfig, ModelConfig
from corral.model.attention import use_varlen
from corral.model.resolve import _ACCEPTS, EMBEDDED, resolve_model


def choose_device(device: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else
                            "mps" if torch.backends.mps.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise CorralError(f"model.device {device!r} is not a device; "
                          "use auto, cpu, cuda, cuda:N or mps.") from None
    if (dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count()) or (
            dev.type == "mps" and not torch.backends.mps.is_available()):
        raise CorralError(f"model.device {device!r} is not available here; use auto or cpu.")
    return dev


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def choose_dtype(dtype: str, device) -> torch.dtype:
    """`auto`: bf16 on CUDA that supports it, else fp32 (fp16 weights cannot be trained
    stably without fp32 master copies; fp16 speed comes from train.mixed_precision)."""
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    if dtype != "auto":
        raise CorralError(f"model.dtype {dtype!r} is unknown; use auto, float32, bfloat16 "
                          "or float16.")
    cuda_bf16 = torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if cuda_bf16 else torch.float32


def load_policy(model_cfg: ModelConfig, lora_cfg: LoraConfig | None = None, *,
                for_training: bool = True, fresh_adapter: bool = False,
                key: str = "model.name") -> Policy:
    """Load model + tokenizer per `model_cfg`; add (or reload) a LoRA adapter per `lora_cfg`.

    A saved adapter is reloaded and trained further, unless `fresh_adapter` (methods with a
    reference model: DPO, KTO, RL): then it is merged and a new adapter goes on top, so the
    reference (adapter disabled) is the loaded model, e.g. the SFT model, not its base. An
    adapter whose base is itself an adapter directory loads as that stack."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = choose_device(model_cfg.device)
    dtype = choose_dtype(model_cfg.dtype, device)
    source = resolve_model(model_cfg.name, model_cfg.revision, key)
    adapter = source if (Path(source) / "adapter_config.json").is_file() else None
    base_name, base = _adapter_base(adapter) if adapter else (model_cfg.name, source)
    opts = {"revision": model_cfg.revision or None,
            "trust_remote_code": model_cfg.trust_remote_code}
    if (Path(base) / "adapter_config.json").is_file():  # stacked: merge the lower adapter
        lower = load_policy(ModelConfig(name=base, device=model_cfg.device, dtype=model_cfg.dtype),
                            LoraConfig(enabled=False), for_training=False)
        model, tokenizer = lower.model.requires_grad_(True), lower.tokenizer
    else:
        model = _from_pretrained(AutoModelForCausalLM, base, model_cfg.name, key, dtype=dtype,
                                 attn_implementation="sdpa", **opts)
        own_tok = adapter and (Path(adapter) / "tokenizer_config.json").is_file()
        tokenizer = _from_pretrained(AutoTokenizer, adapter if own_tok else base,
                                     model_cfg.name, key, **opts)
    model.to(device)
    merge = adapter and (fresh_adapter or lora_cfg is not None and not lora_cfg.enabled)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=for_training)
        if merge:  # full fine-tuning (or a fresh adapter) continues from the merge
            model, base_name = model.merge_and_unload(), adapter
    policy = Policy.from_objects(model, tokenizer, None if adapter and not merge else lora_cfg)
    policy.source = base_name
    if model_cfg.template:
        set_template(tokenizer, model_cfg.template)
    if not for_training:
        policy.model.eval().requires_grad_(False)
    elif not policy.is_lora:  # a merged adapter arrives frozen; full fine-tuning trains all
        policy.model.requires_grad_(True)
    _check_head(policy)
    return policy


def _from_pretrained(loader, source: str, name: str, key: str, **kwargs):
    from safetensors import SafetensorError

    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        # transformers' ways of saying "not a model here"; torch's and safetensors' "bad weights"
        why = (str(err).splitlines() or [type(err).__name__])[0]
        if Path(source).is_dir():
            raise CorralError(f"{key} {name!r}: {source} is not a loadable model "
                              f"directory ({why}); it needs config.json and weights.") from None
        raise CorralError(f"{key} {name!r} could not be found locally or downloaded "
                          f"({why}); {_ACCEPTS}.") from None


def _adapter_base(adapter: str) -> tuple[str, str]:
    """(name, resolved source) of the base model a saved adapter was trained on."""
    cfg = json.loads((Path(adapter) / "adapter_config.json").read_text())
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise CorralError(f"{adapter}/adapter_config.json has no base_model_name_or_path; "
                          "set it to the base model's name or directory.")
    return base, resolve_model(base, cfg.get("revision") or "")


def set_template(tokenizer, template: str) -> None:
    """Apply `model.template`: a .jinja file or an inline Jinja string; checks it renders."""
    if "{{" not in template and "{%" not in template:  # not Jinja, so a path (never stat
        path = Path(template).expanduser()  # inline Jinja: long strings make stat raise)
        if not path.is_file():
            raise CorralError(f"model.template {template!r}: no such file; give an existing "
                              ".jinja file or an inline Jinja template.")
        template = path.read_text()
    tokenizer.chat_template = template
    try:
        tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    except Exception as err:  # noqa: BLE001  (jinja raises many types; all mean bad syntax)
        raise CorralError(f"model.template does not render a chat ({err}); "
                          "fix the Jinja syntax.") from None


def _check_head(policy: Policy) -> None:
    """token_logps applies the output layer itself; make sure it matches the model's own
    logits (models that scale or soft-cap logits would otherwise train on wrong numbers)."""
    ids = torch.arange(3, 11)[None].remainder(policy.model.config.get_text_config().vocab_size)
    batch = SimpleNamespace(input_ids=ids, position_ids=torch.arange(8)[None],
                            labels=torch.cat([ids[:, 1:], torch.tensor([[-100]])], dim=1))
    ids = ids.to(policy.device)
    was_training = policy.model.training
    with torch.no_grad():
        policy.model.eval()  # no dropout: both forwards must see the same weights
        ours = policy.token_logps(batch).float()
        logits = policy.model(input_ids=ids, use_cache=False).logits[0, :-1].float()
    policy.model.train(was_training)
    theirs = logits.log_softmax(-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    tol = 1e-3 if policy.model.dtype == torch.float32 else 5e-2
    if not torch.allclose(ours, theirs, atol=tol, rtol=tol):
        raise CorralError(f"model {type(policy.model).__name__} post-processes its logits in "
                          "a way corral does not reproduce; use a supported architecture.")


class Policy:
    """A causal LM + tokenizer; forwards take packed single-row batches (see batching.py)."""

    logits_chunk_elems = 1 << 25  # logits per chunk (128 MiB fp32): bounds vocab-sized memory

    def __init__(self, model, tokenizer, device=None, is_lora: bool = False):
        self.model, self.tokenizer, self.is_lora = model, tokenizer, is_lora
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.source = getattr(model, "name_or_path", "")
        self._active = model  # the model forwards use; reference() swaps it
        self._frozen = None  # full fine-tuning's reference copy, made on first use
        self._versions = self._param_versions()

    @classmethod
    def from_objects(cls, model, tokenizer, lora_cfg: LoraConfig | None = None) -> Policy:
        """Wrap loaded objects; adds a LoRA adapter when `lora_cfg.enabled`."""
        if tokenizer.pad_token is None:  # packing needs none, but generation and collators do
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(model.config, "_attn_implementation", None) in ("sdpa", "eager", None):
            use_varlen(model)  # per-sequence attention in packed rows (see attention.py)
        if lora_cfg is not None and lora_cfg.enabled:
            from peft import LoraConfig as PeftLoraConfig
            from peft import get_peft_model

            targets = lora_cfg.target_modules  # a CLI override may give "q_proj,v_proj"
            targets = targets.split(",") if isinstance(targets, str) else list(targets)
            peft_cfg = PeftLoraConfig(
                r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                task_type="CAUSAL_LM",
                target_modules="all-linear" if targets == ["all-linear"] else targets)
            try:
                model = get_peft_model(model, peft_cfg)
            except ValueError as err:
                raise CorralError(f"lora.target_modules {targets}: {err}; use all-linear "
                                  "or module names such as q_proj, v_proj.") from None
        return cls(model, tokenizer, is_lora=hasattr(model, "disable_adapter"))

    def _base(self):
        model = self._active
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def hidden_states(self, input_ids, position_ids) -> torch.Tensor:
        """Final normed hidden states [1, T, H] of the decoder (no lm_head). No attention
        mask: transformers sees restarting position_ids and keeps attention per sequence."""
        decoder = self._base().get_decoder()
        return decoder(input_ids=input_ids.to(self.device), use_cache=False,
                       position_ids=position_ids.to(self.device)).last_hidden_state

    def token_logps(self, batch, with_accuracy: bool = False, with_hidden: bool = False):
        """Log-probs [N] of `batch.labels` at the N positions where labels != -100; with
        `with_accuracy`, also the number of those positions whose argmax is the label; with
        `with_hidden`, also their hidden states [N, H] (a value head reads them)."""
        hidden = self.hidden_states(batch.input_ids, batch.position_ids)[0]
        labels = batch.labels[0].to(self.device)
        keep = labels != -100
        hidden, labels = hidden[keep], labels[keep]  # the vocab projection skips prompts
        head = self._base().get_output_embeddings()
        chunk = max(1, self.logits_chunk_elems // head.weight.shape[0])
        logps, correct = [], torch.zeros((), dtype=torch.long, device=self.device)
        for i in range(0, labels.shape[0], chunk):
            args = (head, hidden[i:i + chunk], labels[i:i + chunk])
            if torch.is_grad_enabled() and labels.shape[0] > chunk:
                # recompute logits in backward so only one chunk's logits live at a time
                lp, ok = torch.utils.checkpoint.checkpoint(_chunk_logps, *args,
                                                           use_reentrant=False)
            else:
                lp, ok = _chunk_logps(*args)
            logps.append(lp)
            correct += ok
        logps = torch.cat(logps) if logps else hidden.new_zeros(0, dtype=torch.float32)
        extra = ((correct,) if with_accuracy else ()) + ((hidden,) if with_hidden else ())
        return (logps, *extra) if extra else logps

    @contextlib.contextmanager
    def reference(self):
        """Forwards inside use the reference model, without gradients. Under LoRA that is
        the base with the adapter disabled (free); for full fine-tuning a frozen copy made on
        first use, which costs one more copy of the weights in memory."""
        ctx = self.model.disable_adapter() if self.is_lora else contextlib.nullcontext()
        if not self.is_lora:
            self._active = self.prepare_reference()
        was_training = self.model.training
        try:
            with ctx, torch.no_grad():
                self.model.eval()  # deterministic: no dropout in the reference
                yield self
        finally:
            self._active = self.model
            self.model.train(was_training)

    def prepare_reference(self):
        """Make the full fine-tuning reference copy now (must precede the first update)."""
        if self._frozen is None:
            if self._param_versions() != self._versions:
                raise RuntimeError("Policy.reference() first used after the weights changed; "
                                   "call prepare_reference() before training starts.")
            self._frozen = copy.deepcopy(self.model).eval().requires_grad_(False)
        return self._frozen

    def _param_versions(self) -> int:  # in-place updates (optimizer steps) bump _version
        return sum(p._version for p in self.model.parameters())

    # -- parameters and saving
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """What the optimizer updates: the adapter under LoRA, everything otherwise."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def save(self, path) -> None:
        """Adapter only under LoRA (its config names the base by `model.name`), the full
        model otherwise; plus the tokenizer and its chat template."""
        if self.is_lora:  # hub ids and embedded names stay; local paths become absolute
            base = self.source
            if base not in EMBEDDED and Path(base).expanduser().exists():
                base = str(Path(base).expanduser().resolve())
            for cfg in self.model.peft_config.values():
                cfg.base_model_name_or_path = base
            # False: peft would otherwise look the base up on the hub to compare vocabularies
            self.model.save_pretrained(path, save_embedding_layers=False)
        else:
            self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def export_merged(self, path) -> None:
        """A plain HF model directory with the adapter merged in, plus tokenizer. Merges a
        copy (one more copy of the weights in memory) so training can continue."""
        model = self.model
        if self.is_lora:
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)


def _chunk_logps(head, hidden, labels):
    logits = head(hidden).float()
    logps = logits.gather(-1, labels[:, None]).squeeze(-1) - logits.logsumexp(-1)
    return logps, (logits.argmax(-1) == labels).sum()
