"""`corral dashboard [RUNS_DIR]` (the runs dashboard without the API) and `corral plot RUN`
(the run page's curves as a PNG): parse the flags, call the library, print (docs/dashboard.md)."""
from __future__ import annotations

from corral.cli.options import options


def cmd_dashboard(args) -> None:
    from corral.serve.dashboard import DashboardOptions, dashboard

    dashboard(options(DashboardOptions, args))


def cmd_plot(args) -> None:
    from corral.serve.dashboard.plot import PlotOptions, plot_run

    result = plot_run(options(PlotOptions, args))
    print(f"wrote {result.path} ({', '.join(result.panels)})")


def register(subparsers) -> None:
    p = subparsers.add_parser("dashboard", help="browse runs in a browser: curves, samples, "
                              "checkpoints, lineage, compare (no fine-tuning API)")
    p.add_argument("runs", nargs="?", default="runs", metavar="RUNS_DIR",
                   help="the runs folder (default runs/)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; beyond "
                   "loopback an API key is required")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--api-keys", default=None, metavar="FILE", help="keys, one a line; "
                   "CORRAL_API_KEYS adds comma-separated keys")
    p.set_defaults(func=cmd_dashboard)
    p = subparsers.add_parser("plot", help="a run's learning curves as a PNG, without a "
                              "browser")
    p.add_argument("run", help="run name or directory")
    p.add_argument("--out", default="curves.png", help="the PNG to write")
    p.add_argument("--root", default="runs", help="where runs live")
    p.set_defaults(func=cmd_plot)
