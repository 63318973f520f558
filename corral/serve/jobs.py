"""/v1/fine_tuning/jobs: create, list (after, limit, metadata[k]=v), retrieve, cancel,
events, checkpoints.

Create is atomic and safe to retry: the client resends a POST after a timeout, a dropped
connection, 408, 429 or 5xx without an idempotency key, so a job committed whose answer was
lost would be made twice. The row, its first events and the check for a twin are one SQLite
transaction; a request marked as a retry (`x-stainless-retry-count` > 0, which the official
client sends) or carrying an `Idempotency-Key` returns the job an identical earlier request
(same key, same body) made in the last 24 hours instead of making another."""
from __future__ import annotations

import hashlib
import json

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from corral.serve import jobspec
from corral.serve.db import ACTIVE, now
from corral.serve.errors import bad, not_found
from corral.serve.files import check_file
from corral.serve.ids import new_id, valid
from corral.serve.lists import limit_of, listing

router = APIRouter()
TWIN_WINDOW_S = 24 * 3600


async def json_body(request: Request):
    raw = await request.body()
    if not raw.strip():
        raise bad("the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"the request body is not valid JSON ({exc}); send a JSON object",
                  None, "invalid_json") from None


def _hyper_view(spec: dict) -> dict:
    hyper = spec["hyperparameters"]
    return {k: hyper[k] for k in ("batch_size", "learning_rate_multiplier", "n_epochs")}


def new_job(spec: dict) -> dict:
    job_id = new_id("ftjob")
    kind = spec["type"]
    return {"id": job_id, "object": "fine_tuning.job", "created_at": now(), "error": None,
            "fine_tuned_model": None, "finished_at": None,
            "hyperparameters": _hyper_view(spec), "model": spec["model"],
            "organization_id": "org-corral", "result_files": [], "seed": spec["seed"],
            "status": "validating_files", "trained_tokens": None,
            "training_file": spec["training_file"],
            "validation_file": spec["validation_file"], "estimated_finish": None,
            "integrations": [], "metadata": spec["metadata"],
            "method": {"type": kind, kind: {"hyperparameters": spec["hyperparameters"]}},
            "user_provided_suffix": spec["suffix"]}


def _create(store, spec: dict, request_hash: str, twin_ok: bool) -> dict:
    with store.tx() as db:
        if twin_ok:
            row = db.execute("SELECT obj FROM jobs WHERE request_hash=? AND created_at>=? "
                             "ORDER BY seq DESC LIMIT 1",
                             (request_hash, now() - TWIN_WINDOW_S)).fetchone()
            if row:
                return json.loads(row[0])
        obj = new_job(spec)
        store.insert_job(db, obj, spec, request_hash)
        store.add_event(obj["id"], f"Created fine-tuning job: {obj['id']}", db=db)
        if spec["ignored"]:
            store.add_event(obj["id"], "Accepted but ignored by corral: "
                            f"{', '.join(spec['ignored'])}", level="warn",
                            data={"ignored": spec["ignored"]}, db=db)
        store.add_event(obj["id"], f"Validating training file: {spec['training_file']}"
                        + (f" and validation file: {spec['validation_file']}"
                           if spec["validation_file"] else ""), db=db)
        return obj


@router.post("/fine_tuning/jobs")
async def create(request: Request):
    state = request.app.state.corral
    body = await json_body(request)
    key = request.headers.get("idempotency-key")
    retry = request.headers.get("x-stainless-retry-count", "0").strip() not in ("", "0")
    who = request.headers.get("authorization", "")
    digest = hashlib.sha256(json.dumps([who, key, body], sort_keys=True).encode()).hexdigest()

    def parse_and_create() -> dict:  # off the event loop: both read the database
        spec = jobspec.parse(body, lambda ident, param: check_file(state, ident, param))
        return _create(state.store, spec, digest, bool(key) or retry)
    obj = await run_in_threadpool(parse_and_create)
    state.scheduler.wake()
    return obj


def _job(request: Request, job_id: str) -> dict:
    got = request.app.state.corral.store.job(job_id) if valid(job_id, "ftjob") else None
    if got is None:
        raise not_found("fine-tuning job", job_id, "fine_tuning_job_id")
    return got


@router.get("/fine_tuning/jobs")
def list_jobs(request: Request, after: str | None = None, limit: str | None = None):
    where, params = "1=1", ()
    for name, value in request.query_params.multi_items():
        if name.startswith("metadata[") and name.endswith("]"):
            key = name[len("metadata["):-1]
            if not key or '"' in key or "\\" in key or len(key) > 64:
                raise bad(f"metadata filter key {key!r} is not a valid metadata key",
                          "metadata")
            where += " AND json_extract(obj, ?) = ?"
            params += (f'$.metadata."{key}"', value)
    return listing(request.app.state.corral.store, "jobs", where, params, after,
                   limit_of(limit))


@router.get("/fine_tuning/jobs/{job_id}")
def retrieve(request: Request, job_id: str):
    return _job(request, job_id)


@router.post("/fine_tuning/jobs/{job_id}/cancel")
async def cancel(request: Request, job_id: str):
    state = request.app.state.corral

    def do() -> dict | None:
        _job(request, job_id)
        with state.store.tx() as db:
            obj = state.store.transition_in(db, job_id, ACTIVE, status="cancelled",
                                            finished_at=now())
            if obj is not None:
                state.store.add_event(job_id, "Fine-tuning job cancelled", db=db)
            return obj
    obj = await run_in_threadpool(do)
    if obj is None:
        got = state.store.job(job_id)
        raise bad(f"job {job_id} is already {got['status']}; only jobs that are validating "
                  "files, queued or running can be cancelled", "fine_tuning_job_id",
                  "job_not_cancellable")
    state.scheduler.cancel(job_id)
    return obj


@router.get("/fine_tuning/jobs/{job_id}/events")
def events(request: Request, job_id: str, after: str | None = None,
                 limit: str | None = None):
    _job(request, job_id)
    return listing(request.app.state.corral.store, "events", "job_id=?", (job_id,), after,
                   limit_of(limit, 1000))


@router.get("/fine_tuning/jobs/{job_id}/checkpoints")
def checkpoints(request: Request, job_id: str, after: str | None = None,
                      limit: str | None = None):
    _job(request, job_id)
    return listing(request.app.state.corral.store, "checkpoints", "job_id=?", (job_id,),
                   after, limit_of(limit, 100, default=10))


async def _control(request: Request, job_id: str, allowed, fields: dict, message: str):
    """Move the job from one of `allowed` statuses per `fields`, with an event; the new
    object, or a 400 naming the job's status (never 409: the client would retry it)."""
    state = request.app.state.corral

    def do() -> dict | None:
        _job(request, job_id)
        with state.store.tx() as db:
            obj = state.store.transition_in(db, job_id, allowed, **fields)
            if obj is not None:
                state.store.add_event(job_id, message, db=db)
            return obj
    return await run_in_threadpool(do)


@router.post("/fine_tuning/jobs/{job_id}/pause")
async def pause(request: Request, job_id: str):
    """A running job goes `pausing`, its worker checkpoints before the next step and exits,
    then `paused`; a queued job is `paused` at once."""
    state = request.app.state.corral
    obj = await _control(request, job_id, ("running",), {"status": "pausing"},
                         "Pausing the fine-tuning job: it stops at its next step")
    if obj is None:
        obj = await _control(request, job_id, ("queued",), {"status": "paused"},
                             "Fine-tuning job paused before it started")
    if obj is None:
        got = state.store.job(job_id)
        hint = ("; its files are being validated: pause it once it is queued"
                if got["status"] == "validating_files" else "")
        raise bad(f"job {job_id} is {got['status']}; only queued or running jobs can be "
                  f"paused{hint}", "fine_tuning_job_id", "job_not_pausable")
    state.scheduler.pause(job_id)
    return obj


@router.post("/fine_tuning/jobs/{job_id}/resume")
async def resume(request: Request, job_id: str):
    """A paused job goes back to `queued`; its worker continues from the checkpoint through
    corral's exact resume (`run.resume`)."""
    state = request.app.state.corral
    obj = await _control(request, job_id, ("paused",), {"status": "queued"},
                         "Fine-tuning job resumed, moving job to queued state")
    if obj is None:
        got = state.store.job(job_id)
        hint = "; wait until it is paused" if got["status"] == "pausing" else ""
        raise bad(f"job {job_id} is {got['status']}; only paused jobs can be resumed{hint}",
                  "fine_tuning_job_id", "job_not_resumable")
    state.scheduler.wake()
    return obj
