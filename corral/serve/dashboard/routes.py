"""The dashboard's routes: the page at `/`, its vendored static files, and JSON under
/dashboard/api/ (runs, one run, its new metrics rows, its samples, a compare view's series).
Every run name is checked against the runs folder: anything else is a 404."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, Response

from corral.serve.dashboard import curves
from corral.serve.dashboard.auth import Guard
from corral.serve.dashboard.index import RunIndex

STATIC = Path(__file__).parent / "static"
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
STATIC_FILES = {"uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE", "dashboard.js",
                "dashboard.css", "index.html"}


def make_router(runs_root, api_keys=()) -> APIRouter:
    """The dashboard over RUNS_ROOT; with api_keys, a key (Bearer or the login cookie)."""
    index = RunIndex(runs_root)
    guard = Guard(tuple(k for k in api_keys if k))
    router = APIRouter()
    guard.add_login(router)
    page = APIRouter(dependencies=[Depends(guard.page)])
    api = APIRouter(prefix="/dashboard/api", dependencies=[Depends(guard.api)])
    _add_pages(router, page)
    _add_api(api, index)
    router.include_router(page)
    router.include_router(api)
    return router


def _add_pages(router: APIRouter, page: APIRouter) -> None:
    @page.get("/", include_in_schema=False)
    def home():
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"cache-control": "no-cache"})

    @router.get("/dashboard/static/{name}", include_in_schema=False)
    def static(name: str):
        if name not in STATIC_FILES:
            raise HTTPException(404, "no such file")
        return FileResponse(STATIC / name, media_type=TYPES.get(Path(name).suffix,
                                                                "text/plain"))

    @router.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)


def _add_api(api: APIRouter, index: RunIndex) -> None:
    def run_of(name: str) -> Path:
        run = index.run_dir(name)
        if run is None:
            raise HTTPException(404, f"no run named {name!r} under the runs folder")
        return run

    @api.get("/runs")
    def runs(method: str = "", task: str = "", status: str = ""):
        every = index.summaries()
        shown = [s for s in every if (not method or s["method"] == method)
                 and (not task or s["task"] == task) and (not status or s["status"] == status)]
        return {"runs": shown, "total": len(every), "root": str(index.root),
                "methods": sorted({s["method"] for s in every}),
                "tasks": sorted({s["task"] for s in every if s["task"]}),
                "statuses": sorted({s["status"] for s in every})}

    @api.get("/runs/{name}")
    def run(name: str):
        path = run_of(name)
        rows = index.metrics(name)
        summary = index.summary(name) or {"name": name}
        return {"summary": summary, "groups": curves.groups(rows),
                "checkpoints": curves.checkpoints(path, rows),
                "config": curves.config_text(path), "lineage": curves.lineage(path),
                "resumes": _resumes(path)}

    @api.get("/runs/{name}/metrics")
    def metrics(name: str, after_step: int | None = None):
        run_of(name)
        rows = index.metrics(name, after_step)
        return {"rows": rows, "last_step": rows[-1].get("step") if rows else after_step}

    @api.get("/runs/{name}/samples")
    def samples(name: str, offset: int = Query(0, ge=0), limit: int = Query(20, ge=1,
                                                                              le=200)):
        run_of(name)
        total, rows = index.samples(name, offset, limit)
        return {"total": total, "offset": offset, "rows": rows}

    @api.get("/compare")
    def compare(runs: str = "", metric: str = ""):
        names = [n for n in runs.split(",") if n][:12]
        for n in names:
            run_of(n)
        every = {n: index.metrics(n) for n in names}
        keys = sorted({k for rows in every.values() for k in curves.numeric_keys(rows)})
        chosen = metric or next((k for k in ("loss", "reward", "eval/dev/pass@1")
                                 if k in keys), keys[0] if keys else "")
        return {"metric": chosen, "keys": keys,
                "series": {n: curves.series(rows, [chosen]) if chosen else {"step": []}
                           for n, rows in every.items()}}


def _resumes(run: Path) -> list[dict]:
    from corral.serve.dashboard.index import Lines

    lines = Lines(run / "resumes.jsonl")
    lines.refresh()
    return lines.rows
