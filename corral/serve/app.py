"""The ASGI app: FastAPI routes under /v1 behind two guards — Bearer-key auth on every route
(when keys are configured) and a request-body size limit — with the job scheduler started and
stopped by the app's lifespan.

    app = create_app("serve-root", api_keys=["sk-local"])
    # uvicorn.run(app, host="127.0.0.1", port=8000), or corral serve
"""
from __future__ import annotations

import hmac
import importlib.util
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI

from corral.serve import errors
from corral.serve.db import Store
from corral.serve.errors import error_body, error_headers

MiB = 1024 * 1024


@dataclass
class State:
    """What the routes and the scheduler share (app.state.corral)."""
    root: Path
    store: Store
    models: dict = field(default_factory=dict)  # alias -> model path or name
    overrides: tuple = ()  # the operator's corral overrides, applied to every job
    save_every: int = 50
    warm_spare: bool = True
    max_length: int = 1024
    started: int = field(default_factory=lambda: int(time.time()))
    scheduler: object = None
    pool: object = None  # the chat models (pool.Pool)

    def base_lr(self) -> float:
        """corral's default train.lr, or the operator's train.lr override."""
        from corral.core.sections import TrainConfig

        given = [o.partition("=")[2] for o in self.overrides if o.startswith("train.lr=")]
        return float(given[-1]) if given else TrainConfig().lr

    def worker_config(self) -> dict:
        return {"models": self.models, "overrides": list(self.overrides),
                "save_every": self.save_every, "base_lr": self.base_lr(),
                "max_length": self.max_length}


def create_app(root, api_keys=(), *, models: dict | None = None, workers: int = 1,
               save_every: int = 50, overrides=(), max_upload_bytes: int = 512 * MiB,
               max_json_bytes: int = 4 * MiB, warm_spare: bool = True,
               scheduler: bool = True, max_models: int = 2,
               memory_gb: float | None = None) -> FastAPI:
    """The service over ROOT (created if missing): files, jobs, runs and serve.db live there.
    `api_keys` empty means no auth (the caller keeps it on loopback); `models` maps names a
    job's `model` may use to corral model names or paths; `overrides` are corral config
    overrides applied to every job after the job's own (model.device=cuda:1, lora.r=8).
    Chat completions keep at most `max_models` models loaded, and (with `memory_gb`) their
    parameters under that many GiB, evicting the least recently used."""
    from corral.serve import chat, files, jobs
    from corral.serve import models as model_routes
    from corral.serve.pool import GiB, Pool
    from corral.serve.scheduler import Scheduler

    root = Path(root).resolve()
    state = State(root, Store(root), dict(models or {}), tuple(overrides), save_every,
                  warm_spare)
    state.scheduler = Scheduler(state, workers)
    state.pool = Pool(chat.resolver(state), max_models=max_models,
                      memory_bytes=int(memory_gb * GiB) if memory_gb else None,
                      runs_root=str(root / "runs"))

    @asynccontextmanager
    async def lifespan(app):
        state.pool.start()
        if scheduler:
            state.scheduler.start()
        yield
        state.pool.stop()
        if scheduler:
            state.scheduler.stop()
            running = state.store.jobs_in(("running",))
            print(f"corral serve: stopped; {len(running)} running job(s) resume on the next "
                  "start", file=sys.stderr, flush=True)

    app = FastAPI(title="corral", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.corral = state
    for router in (files.router, jobs.router, model_routes.router, chat.router):
        app.include_router(router, prefix="/v1")
    keys = tuple(k for k in api_keys if k)
    dashboard = importlib.util.find_spec("corral.serve.dashboard") is not None
    if dashboard:  # the runs dashboard at /, which checks keys itself (a login cookie)
        from corral.serve.dashboard import mount

        mount(app, root / "runs", keys)
    errors.install(app)
    app.add_middleware(BodyLimit, max_upload=max_upload_bytes, max_json=max_json_bytes)
    app.add_middleware(BearerAuth, keys=keys, exempt=DASHBOARD if dashboard else ())
    return app


async def _send_error(send, status: int, message: str, code: str) -> None:
    import json

    body = json.dumps(error_body(status, message, None, code)).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in error_headers(status).items()]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


DASHBOARD = ("/", "/favicon.ico", "/dashboard/")  # paths the dashboard guards itself


class BearerAuth:
    """`Authorization: Bearer KEY` on every request, compared in constant time, except the
    dashboard's pages (`exempt`: exact paths, or prefixes ending in '/'), which a browser
    opens with a login cookie instead and which check the key themselves."""

    def __init__(self, app, keys: tuple, exempt: tuple = ()):
        self.app, self.keys, self.exempt = app, [k.encode() for k in keys], exempt

    def _exempt(self, path: str) -> bool:
        return any(path == e or (e.endswith("/") and e != "/" and path.startswith(e))
                   for e in self.exempt)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.keys or self._exempt(scope["path"]):
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, key = given.partition(b" ")
        ok = scheme.lower() == b"bearer" and any(hmac.compare_digest(key.strip(), k)
                                                 for k in self.keys)
        if not ok:
            what = "no API key was given" if not given else "the API key is not valid"
            return await _send_error(send, 401, f"{what}; send 'Authorization: Bearer KEY' "
                                     "with a key this server was started with",
                                     "invalid_api_key")
        return await self.app(scope, receive, send)


class BodyLimit:
    """Refuses bodies over the limit with 413: at once from Content-Length, or while a
    chunked body streams in (uploads get `max_upload`, JSON bodies `max_json`)."""

    def __init__(self, app, max_upload: int, max_json: int):
        self.app, self.max_upload, self.max_json = app, max_upload, max_json

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/")
        limit = self.max_upload if multipart else self.max_json
        message = (f"the request body is over this server's limit of {limit // MiB} MiB"
                   f"{' for uploads' if multipart else ''}; send a smaller body")
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > limit:
            return await _send_error(send, 413, message, "request_too_large")
        seen, started = 0, False

        async def counted():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return msg

        async def tracking(msg):
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)
        try:
            await self.app(scope, counted, tracking)
        except _TooLarge:
            if not started:
                await _send_error(send, 413, message, "request_too_large")


class _TooLarge(Exception):
    pass
