"""Several LoRA `ft:` models on one loaded base, without merging (as LoRAX and vLLM's
multi-LoRA do): the base model is wrapped once in a peft `PeftModel`, each adapter is loaded
onto it under its own name, and a batch selects its adapter (`set_adapter`) before it
decodes; the base itself decodes with the adapters disabled (`disable_adapter()`). Only
the adapters' weights are added to memory.

    base_of(path)            # the base model a saved adapter was trained on, or None
    attach(entry, path, name) -> (generator, adapter bytes)
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def same_model(a: str, b: str) -> bool:
    """Two ways of naming one model: equal strings, or one directory."""
    if a == b:
        return True
    return Path(a).is_dir() and Path(b).is_dir() and os.path.realpath(a) == os.path.realpath(b)


def base_of(path: str) -> str | None:
    """The base model of the LoRA adapter saved at `path` (None when `path` is not an
    adapter, or its base is itself an adapter: such stacks load whole)."""
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return None
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except ValueError:
        return None
    if not base or (Path(base) / "adapter_config.json").is_file():
        return None
    return base


def attach(base, path: str, name: str):
    """Load the adapter at `path` onto the base entry's model under `name`; returns a
    generator for it and the bytes its weights add."""
    from peft import PeftModel

    from corral.infer.engine import Engine
    from corral.infer.generators import Generator

    model = base.generator.engine.backend.model
    if base.wrapper is None:
        base.wrapper = PeftModel.from_pretrained(model, path, adapter_name=name,
                                                 is_trainable=False)
    else:
        base.wrapper.load_adapter(path, adapter_name=name, is_trainable=False)
    base.wrapper.eval()
    tokenizer = base.generator.engine.tokenizer
    if (Path(path) / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
    engine = Engine.hf(base.wrapper, tokenizer)
    generator = Generator.from_engine(engine, name=path, identity={"kind": "local",
                                                                   "model": path})
    size = sum(p.numel() * p.element_size() for n, p in base.wrapper.named_parameters()
               if f".{name}." in n)
    return generator, size


def detach(base, name: str) -> None:
    """Drop an adapter from its base (the base keeps serving)."""
    if base.wrapper is not None and name in getattr(base.wrapper, "peft_config", {}):
        try:
            base.wrapper.delete_adapter(name)
        except (ValueError, KeyError, AttributeError):  # peft keeps at least one: leave it
            pass
