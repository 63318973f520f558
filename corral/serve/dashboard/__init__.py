"""The runs dashboard: a run list, run pages (curves, checkpoints, config, samples, lineage)
and a compare view, served at `/` of `corral serve` or alone by `corral dashboard RUNS_DIR`
(docs/dashboard.md).

    from corral.serve.dashboard import mount
    mount(app, root / "runs", api_keys)        # inside the service's create_app

    from corral.serve.dashboard import DashboardOptions, dashboard
    dashboard(DashboardOptions(runs="runs", port=8080))
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def mount(app, runs_root, api_keys=()) -> None:
    """Add the dashboard's routes (`/`, /dashboard/...) to a FastAPI app."""
    from corral.serve.dashboard.routes import make_router

    app.include_router(make_router(runs_root, api_keys))


def create_dashboard_app(runs_root, api_keys=()):
    """The dashboard alone (no fine-tuning API): what `corral dashboard` runs."""
    from fastapi import FastAPI

    app = FastAPI(title="corral dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    mount(app, runs_root, api_keys)
    return app


@dataclass(frozen=True)
class DashboardOptions:
    """Field names are `corral dashboard`'s flags. api_keys: a file of keys, one a line;
    CORRAL_API_KEYS adds comma-separated keys (needed beyond loopback, as for corral serve)."""
    runs: str = "runs"
    host: str = "127.0.0.1"
    port: int = 8080
    api_keys: str | None = None


def check(opts: DashboardOptions) -> list[str]:
    """The keys; a CorralError for a non-loopback host without one, a bad port or no folder."""
    from corral.core.errors import CorralError
    from corral.serve.server import ServeOptions
    from corral.serve.server import check as check_serve

    keys, _ = check_serve(ServeOptions(host=opts.host, port=opts.port, api_keys=opts.api_keys))
    if not Path(opts.runs).is_dir():
        raise CorralError(f"{opts.runs} is not a folder; give the runs folder (default "
                          f"runs/), e.g. `corral dashboard serve-root/runs`")
    return keys


def dashboard(opts: DashboardOptions, log=print) -> None:
    """Serve the dashboard until SIGINT/SIGTERM."""
    import uvicorn

    keys = check(opts)
    app = create_dashboard_app(opts.runs, keys)
    auth = f"{len(keys)} API key(s)" if keys else "no API key (loopback only)"
    log(f"corral dashboard: http://{opts.host}:{opts.port}/ over "
        f"{Path(opts.runs).resolve()}, {auth}")
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning")
