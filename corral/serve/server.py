"""`corral serve` as a library call: check the options, read the API keys, refuse to listen
beyond loopback without one, and run the app under uvicorn (SIGINT/SIGTERM: stop taking
requests, finish the ones in flight, stop the workers; their jobs resume on the next start).

    from corral.serve.server import ServeOptions, serve
    serve(ServeOptions(root="serve-root", port=8000))
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from corral.core.errors import CorralError


@dataclass(frozen=True)
class ServeOptions:
    """Field names are `corral serve`'s flags. api_keys: a file of keys, one a line ('#'
    comments); CORRAL_API_KEYS adds comma-separated keys. model: NAME=PATH aliases a job's
    `model` may name; set: corral overrides applied to every job."""
    host: str = "127.0.0.1"
    port: int = 8000
    root: str = "serve"
    api_keys: str | None = None
    workers: int = 1
    save_every: int = 50
    max_upload_mb: int = 512
    model: tuple = ()
    set: tuple = ()
    max_models: int = 2
    memory_gb: float | None = None


def read_keys(path: str | None, env: str | None) -> list[str]:
    keys = [k.strip() for k in (env or "").split(",") if k.strip()]
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CorralError(f"--api-keys {path}: cannot read it ({exc.strerror}); give a "
                              "file with one key per line") from None
        keys += [line.strip() for line in text.splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
        if not keys:
            raise CorralError(f"--api-keys {path} holds no key; put one key per line")
    return keys


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(opts: ServeOptions) -> tuple[list[str], dict]:
    """(keys, model aliases); a CorralError naming the flag for anything wrong."""
    keys = read_keys(opts.api_keys, os.environ.get("CORRAL_API_KEYS"))
    if not keys and not is_loopback(opts.host):
        raise CorralError(f"refusing to listen on {opts.host} without an API key: anyone who "
                          "can reach it could train and read your files; pass --api-keys "
                          "FILE or set CORRAL_API_KEYS, or use --host 127.0.0.1")
    if not 0 < opts.port < 65536:
        raise CorralError(f"--port {opts.port} must be from 1 to 65535")
    for flag, value, low in (("--workers", opts.workers, 1), ("--save-every",
                             opts.save_every, 1), ("--max-upload-mb", opts.max_upload_mb, 1),
                             ("--max-models", opts.max_models, 1)):
        if value < low:
            raise CorralError(f"{flag} {value} must be at least {low}")
    if opts.memory_gb is not None and opts.memory_gb <= 0:
        raise CorralError(f"--memory-gb {opts.memory_gb} must be above 0")
    aliases = {}
    for given in opts.model:
        name, sep, path = given.partition("=")
        if not sep or not name or not path or ":" in name:
            raise CorralError(f"--model {given!r} must be NAME=MODEL (a corral model name or "
                              "path), NAME without ':'")
        aliases[name] = path
    for given in opts.set:
        if "=" not in given:
            raise CorralError(f"--set {given!r} must be KEY=VALUE, a corral config override")
    return keys, aliases


def serve(opts: ServeOptions, log=print) -> None:
    """Run the service until SIGINT/SIGTERM."""
    import uvicorn

    from corral.serve.app import MiB, create_app

    keys, aliases = check(opts)
    app = create_app(opts.root, keys, models=aliases, workers=opts.workers,
                     save_every=opts.save_every, overrides=tuple(opts.set),
                     max_upload_bytes=opts.max_upload_mb * MiB, max_models=opts.max_models,
                     memory_gb=opts.memory_gb)
    auth = f"{len(keys)} API key(s)" if keys else "no API key (loopback only)"
    log(f"corral serve: http://{opts.host}:{opts.port}/v1, root {Path(opts.root).resolve()}, "
        f"{auth}, {opts.workers} worker(s)")
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning",
                timeout_graceful_shutdown=30)
