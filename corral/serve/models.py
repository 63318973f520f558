"""/v1/models: the fine-tuned models of succeeded jobs (`ft:...`) and the operator's model
aliases; retrieve and delete take ids holding ':' or '/' (URL-encoded by the client).
Deleting an ft: model removes it from the API; its run folder (ROOT/runs/<job>) stays, as
the user's data."""
from __future__ import annotations

import json

from fastapi import APIRouter, Request

from corral.serve.errors import bad, not_found
from corral.serve.lists import page

router = APIRouter()


def _ft(job: dict) -> dict:
    return {"id": job["fine_tuned_model"], "object": "model",
            "created": job["finished_at"] or job["created_at"], "owned_by": "corral"}


def _alias(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "system"}


@router.get("/models")
def list_models(request: Request):
    state = request.app.state.corral
    rows = state.store.query("SELECT obj FROM jobs WHERE status='succeeded' AND "
                             "model_deleted=0 ORDER BY seq")
    data = [_alias(name, state.started) for name in sorted(state.models)]
    data += [_ft(json.loads(r[0])) for r in rows]
    return page(data)


def _find(request: Request, model: str) -> dict:
    state = request.app.state.corral
    if model in state.models:
        return _alias(model, state.started)
    job = state.store.model_job(model) if model.startswith("ft:") and len(model) < 600 \
        else None
    if job is None:
        raise not_found("model", model, "model")
    return _ft(job)


@router.get("/models/{model:path}")
def retrieve(request: Request, model: str):
    return _find(request, model)


@router.delete("/models/{model:path}")
def delete(request: Request, model: str):
    _find(request, model)
    if not model.startswith("ft:"):
        raise bad(f"model {model} is not a fine-tuned model; only ft: models can be deleted",
                  "model", "model_not_deletable")
    if not request.app.state.corral.store.delete_model(model):
        raise not_found("model", model, "model")
    return {"id": model, "object": "model", "deleted": True}
