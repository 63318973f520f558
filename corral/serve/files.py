"""/v1/files: multipart upload (purpose fine-tune), list, retrieve, content, delete. The
bytes live at ROOT/files/<id>.jsonl, written atomically (temp file, fsync, rename) before
the row is committed; the client's file name is kept as a label only, never as a path."""
from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from corral.serve.db import ACTIVE, file_obj, now
from corral.serve.errors import APIError, bad, not_found
from corral.serve.ids import new_id, valid
from corral.serve.lists import limit_of, listing

router = APIRouter()
PURPOSES = ("fine-tune",)


def file_path(state, file_id: str):
    return state.root / "files" / f"{file_id}.jsonl"


def check_file(state, file_id, param: str) -> dict:
    """The live file `file_id` of purpose fine-tune, or a 400 naming `param`."""
    got = state.store.file(file_id) if valid(file_id, "file") else None
    if got is None:
        raise bad(f"{param} '{file_id}' is not an uploaded file; upload it with POST "
                  "/v1/files (purpose fine-tune) and pass its id", param, "invalid_file")
    if got["purpose"] != "fine-tune":
        raise bad(f"{param} '{file_id}' has purpose {got['purpose']}; upload it with purpose "
                  "fine-tune", param, "invalid_file_purpose")
    return got


def _name(upload) -> str:
    name = (getattr(upload, "filename", None) or "upload.jsonl").replace("\\", "/")
    name = name.rsplit("/", 1)[-1].strip()
    if not name or name in (".", "..") or any(ord(c) < 32 for c in name) or len(name) > 255:
        raise bad("the uploaded file needs a plain file name (no control characters, at most "
                  "255 characters)", "file")
    if not name.endswith(".jsonl"):
        raise bad(f"file '{name}' must be a .jsonl file (one JSON object per line) for "
                  "purpose fine-tune", "file", "invalid_file_format")
    return name


def _check_jsonl(data: bytes, name: str) -> None:
    """The cheap checks of an upload (UTF-8, a JSON object per line); the full row checks run
    in a job's validating_files state with the CLI's file:line messages."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise bad(f"file '{name}' is not UTF-8 text; save it as UTF-8 JSONL", "file",
                  "invalid_file_format") from None
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise bad(f"file '{name}' is empty; it needs one JSON object per line", "file",
                  "invalid_file_format")
    for i, line in lines:
        try:
            ok = isinstance(json.loads(line), dict)
        except ValueError:
            ok = False
        if not ok:
            raise bad(f"{name}:{i}: not a JSON object; each line must be one JSON object",
                      "file", "invalid_file_format")


@router.post("/files")
async def upload(request: Request):
    state = request.app.state.corral
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad("upload with multipart/form-data holding 'file' and 'purpose'", "file")
    form = await request.form(max_files=1, max_fields=8)
    upload, purpose = form.get("file"), form.get("purpose")
    if upload is None or isinstance(upload, str):
        raise bad("missing required parameter 'file' (a multipart file part)", "file",
                  "missing_required_parameter")
    if purpose not in PURPOSES:
        raise bad(f"purpose must be 'fine-tune' on this server, got {purpose!r}", "purpose",
                  "invalid_purpose")
    name = _name(upload)
    data = await upload.read()
    return await run_in_threadpool(_store_upload, state, data, name, purpose)


def _store_upload(state, data: bytes, name: str, purpose: str) -> dict:
    """Check, write atomically, then commit the row (off the event loop: files are big)."""
    from corral.core.io import atomic_write_bytes

    _check_jsonl(data, name)
    obj = file_obj((new_id("file"), now(), len(data), name, purpose))
    path = file_path(state, obj["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    state.store.add_file(obj)
    return obj


@router.get("/files")
def list_files(request: Request, after: str | None = None, limit: str | None = None,
                     order: str = "desc", purpose: str | None = None):
    if order not in ("asc", "desc"):
        raise bad("order must be 'asc' or 'desc'", "order")
    where, params = "deleted=0", ()
    if purpose is not None:
        where, params = "deleted=0 AND purpose=?", (purpose,)
    columns = "id, created_at, bytes, filename, purpose"
    return listing(request.app.state.corral.store, "files", where, params, after,
                   limit_of(limit, 10000), order == "desc", columns, file_obj)


def _live(request: Request, file_id: str) -> dict:
    got = request.app.state.corral.store.file(file_id) if valid(file_id, "file") else None
    if got is None:
        raise not_found("file", file_id, "file_id")
    return got


@router.get("/files/{file_id}")
def retrieve(request: Request, file_id: str):
    return _live(request, file_id)


@router.get("/files/{file_id}/content")
def content(request: Request, file_id: str):
    got = _live(request, file_id)
    return FileResponse(file_path(request.app.state.corral, file_id),
                        media_type="application/jsonl", filename=got["filename"])


@router.delete("/files/{file_id}")
def delete(request: Request, file_id: str):
    _live(request, file_id)
    state = request.app.state.corral

    def in_use(db):
        marks = ",".join("?" * len(ACTIVE))
        rows = db.execute(f"SELECT id FROM jobs WHERE status IN ({marks}) AND "
                          "(json_extract(spec, '$.training_file')=? OR "
                          "json_extract(spec, '$.validation_file')=?)",
                          (*ACTIVE, file_id, file_id)).fetchall()
        if rows:
            raise APIError(400, f"file {file_id} is used by job {rows[0][0]}, which has not "
                           "finished; cancel the job or wait for it first", "file_id",
                           "file_in_use")
    if not state.store.delete_file(file_id, in_use):
        raise not_found("file", file_id, "file_id")
    file_path(state, file_id).unlink(missing_ok=True)
    return {"id": file_id, "object": "file", "deleted": True}
