"""`corral plot RUN --out curves.png`: the run page's curves as one PNG (matplotlib, Agg), for
a machine without a browser.

    from corral.serve.dashboard.plot import PlotOptions, plot_run
    plot_run(PlotOptions(run="my-run", out="curves.png")).path
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from corral.core.errors import CorralError
from corral.serve.dashboard.curves import groups, series
from corral.serve.dashboard.index import Lines


@dataclass(frozen=True)
class PlotOptions:
    """Field names are `corral plot`'s flags. run: a run name under root, or a run folder."""
    run: str
    out: str = "curves.png"
    root: str = "runs"


@dataclass(frozen=True)
class PlotResult:
    path: Path
    panels: list


def _run_folder(run: str, root: str) -> Path:
    for candidate in (Path(root) / run, Path(run).expanduser()):
        if (candidate / "metrics.jsonl").is_file():
            return candidate
    raise CorralError(f"no run '{run}' with a metrics.jsonl under {root}/ (or at that path); "
                      "give a run name, --root, or the run's folder")


def plot_run(opts: PlotOptions) -> PlotResult:
    """One panel per group of curves (loss, reward, KL, dev and unseen scores, ...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = _run_folder(opts.run, opts.root)
    lines = Lines(run / "metrics.jsonl")
    lines.refresh()
    panels = groups(lines.rows)
    if not panels:
        raise CorralError(f"{run}/metrics.jsonl has no numeric metrics yet; plot it once the "
                          "run has logged a step")
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.4 * nrows), squeeze=False)
    for ax, (title, keys) in zip(axes.flat, panels):
        _draw(ax, title, series(lines.rows, keys[:8]))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{run.name}: {lines.n} metrics rows")
    fig.tight_layout()
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return PlotResult(out, [title for title, _ in panels])


def _draw(ax, title: str, data: dict) -> None:
    steps = data.pop("step")
    for key, values in data.items():
        pts = [(s, v) for s, v in zip(steps, values) if v is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o" if len(pts) < 20 else None, markersize=3, label=key)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
