"""Measurements cached as JSON, one file per model and setting: `<root>/advise/<key>.json`.

The key hashes what the numbers depend on: the model's identity (for a local directory or a
run, a fingerprint of its files, so a model retrained in place is measured again; found
without loading it), the task's items, worked examples and grader, and the settings (n,
temperature, max_new_tokens, seed, audit size). A rerun with the same options reads the file
and makes no model call; `corral advise` and other commands that need the same signals
(`measured`) share the files.

    signals, hit = measured("my-model", "runs", dev, few, Settings(n=8))
"""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

from corral.advisor.signals import ModelSignals, Settings, measure
from corral.core.io import atomic_write_text, content_hash

VERSION = 1  # bump when what is measured, or how, changes


def model_identity(spec: str, root: str = "runs") -> dict:
    """What a model spec names, without loading it: an endpoint's spec, or a local model's
    resolved path with a fingerprint of its files (and its run and lineage)."""
    from corral.infer.generators import local_identity
    from corral.infer.remote import is_endpoint_spec
    from corral.store.runs import run_model_path

    if is_endpoint_spec(spec):
        return {"kind": "endpoint", "spec": spec}
    return local_identity(spec, run_model_path(spec, root), root)


def task_fingerprint(task) -> str | None:
    """A hash of the items as the model sees them, their fields and the grader."""
    if task is None:
        return None
    from corral.core.records import as_dicts

    return content_hash({
        "name": task.name, "grader": getattr(task.grader, "name", type(task.grader).__name__),
        "items": [[it.source, as_dicts(it.messages), it.fields] for it in task.prompt_items()]})


def cache_key(spec: str, root: str, dev, few, settings: Settings) -> tuple[str, dict]:
    """(key, the fields hashed into it)."""
    keyed = {"version": VERSION, "model": model_identity(spec, root),
             "dev": task_fingerprint(dev), "few_shot": task_fingerprint(few),
             "settings": asdict(settings)}
    return content_hash(keyed)[:24], keyed


def cache_path(root: str, key: str) -> Path:
    return Path(root) / "advise" / f"{key}.json"


def load(root: str, key: str) -> ModelSignals | None:
    """The cached signals, or None (absent, torn or from another version)."""
    path = cache_path(root, key)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(ModelSignals)}
        return ModelSignals(**{k: v for k, v in saved["signals"].items() if k in known})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(root: str, key: str, keyed: dict, signals: ModelSignals) -> Path:
    path = cache_path(root, key)
    atomic_write_text(path, json.dumps({"key": keyed, "signals": asdict(signals)}, indent=1,
                                       default=str) + "\n")
    return path


def measured(spec: str, root: str, dev, few=None, settings: Settings | None = None, *,
             generator_for=None, log=None) -> tuple[ModelSignals, bool]:
    """(signals, read from the cache?): the cached measurement when there is one, else
    the model loaded (`generator_for(spec)`, default `corral.infer.generators.generator_for`),
    measured and cached."""
    settings = settings or Settings()
    key, keyed = cache_key(spec, root, dev, few, settings)
    hit = load(root, key)
    if hit is not None:
        return hit, True
    if generator_for is None:
        from corral.infer.generators import generator_for as load_generator

        def generator_for(name):
            return load_generator(name, root=root, key="--model")
    signals = measure(generator_for(spec), spec, dev, few, settings, log)
    save(root, key, keyed, signals)
    return signals, False
