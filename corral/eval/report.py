"""Evaluation results as people read them: the models table (`corral eval`, one column per
model), the strategies table (`corral eval --strategy`, one line per strategy with its compute
per item) and the score-against-compute picture (a hand-written SVG, no plotting library).
One module renders every evaluation result.

    print(format_table({"m1": metrics1, "m2": metrics2}))     # models side by side
    print(format_strategy_table([summary_row(name, outcomes, scores), ...]))
    write_svg(rows, "curve.svg")
"""
from __future__ import annotations

import math
from html import escape

from corral.core.errors import CorralError
from corral.core.io import atomic_write_text
from corral.eval.metrics import mean_stderr
from corral.graders.base import passed


def format_table(table: dict) -> str:
    """Models side by side: one column per model, one row per metric (mean ± stderr)."""
    names = list(table)
    metrics = [k for k in next(iter(table.values())) if not k.endswith("_stderr")]
    width = max([12] + [len(n) + 2 for n in names])
    lines = ["metric".ljust(14) + "".join(n[-width + 1:].rjust(width) for n in names)]
    for key in metrics:
        cells = []
        for name in names:
            value, err = table[name].get(key), table[name].get(f"{key}_stderr")
            text = "-" if value is None else (f"{value:.3f}" if isinstance(value, float)
                                              else str(value))
            if err is not None:
                text += f"±{err:.3f}"
            cells.append(text.rjust(width))
        lines.append(key.ljust(14) + "".join(cells))
    return "\n".join(lines)


def summary_row(name: str, outcomes, scores) -> dict:
    """Mean grade and pass rate with their stderr, and mean calls and tokens per item."""
    score, score_se = mean_stderr([float(s.value) for s in scores])
    rate, rate_se = mean_stderr([float(passed(s)) for s in scores])
    n = len(outcomes)
    row = {"strategy": name, "n_items": n, "score": score, "score_stderr": score_se,
           "pass": rate, "pass_stderr": rate_se,
           "calls": sum(o.compute.calls for o in outcomes) / n,
           "prompt_tokens": sum(o.compute.prompt_tokens for o in outcomes) / n,
           "completion_tokens": sum(o.compute.completion_tokens for o in outcomes) / n}
    # A strategy whose attempts can fail to give an answer (program-aided: a program that
    # crashed or printed no value) says so in its trace's pick step; shown, never hidden as 0.
    picks = [s for o in outcomes for s in (getattr(o, "trace", None) or [])
             if isinstance(s, dict) and s.get("step") == "pick" and "unparsed" in s]
    if picks:
        row["unparsed"] = sum(p["unparsed"] for p in picks) / n
        row["unanswered"] = sum(not p.get("answered", True) for p in picks) / n
    return row


def _pm(value: float, err: float) -> str:
    return f"{value:.3f}±{err:.3f}" if not math.isnan(err) else f"{value:.3f}±-"


def format_strategy_table(rows: list[dict]) -> str:
    """One line per strategy: score and pass ± stderr, then compute per item."""
    width = max([10] + [len(r["strategy"]) + 2 for r in rows])
    head = ["score", "pass", "calls/item", "prompt tok/item", "gen tok/item"]
    unparsed = any("unparsed" in r for r in rows)  # only when a strategy reports it
    head += ["unparsed/item", "unanswered"] if unparsed else []
    lines = ["strategy".ljust(width) + "".join(h.rjust(16) for h in head)]
    for r in rows:
        cells = [_pm(r["score"], r["score_stderr"]), _pm(r["pass"], r["pass_stderr"]),
                 f"{r['calls']:.1f}", f"{r['prompt_tokens']:.1f}", f"{r['completion_tokens']:.1f}"]
        if unparsed:
            cells += [f"{r['unparsed']:.2f}", f"{r['unanswered']:.2f}"] if "unparsed" in r \
                else ["-", "-"]
        lines.append(r["strategy"].ljust(width) + "".join(c.rjust(16) for c in cells))
    return "\n".join(lines)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values spanning [low, high]."""
    span = (high - low) or 1.0
    raw = span / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def write_svg(rows: list[dict], path, title: str = "") -> None:
    """Score (± stderr) against generated tokens per item, one labelled point per strategy:
    a hand-written SVG, so the curve needs no plotting library."""
    if not rows:
        raise CorralError("no strategy results to plot")
    w, h, left, right, top, bottom = 640, 420, 70, 30, 40, 60
    xs = [r["completion_tokens"] for r in rows]
    errs = [0.0 if math.isnan(r["score_stderr"]) else r["score_stderr"] for r in rows]
    lows = [r["score"] - e for r, e in zip(rows, errs)]
    highs = [r["score"] + e for r, e in zip(rows, errs)]
    y0, y1 = min(lows + [0.0]), max(highs + [1.0])
    x1 = max(xs) * 1.1 or 1.0

    def px(x):
        return left + (w - left - right) * x / x1

    def py(y):
        return h - bottom - (h - top - bottom) * (y - y0) / ((y1 - y0) or 1.0)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="14">'
           f'{escape(title or "score vs generated tokens per item")}</text>',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" '
           'stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>']
    for t in _ticks(0.0, x1):
        out.append(f'<line x1="{px(t):.1f}" y1="{h - bottom}" x2="{px(t):.1f}" '
                   f'y2="{h - bottom + 5}" stroke="black"/><text x="{px(t):.1f}" '
                   f'y="{h - bottom + 18}" text-anchor="middle">{t:g}</text>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{left - 5}" y1="{py(t):.1f}" x2="{w - right}" y2="{py(t):.1f}" '
                   f'stroke="#ddd"/><text x="{left - 8}" y="{py(t) + 4:.1f}" '
                   f'text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{(left + w - right) / 2}" y="{h - 15}" text-anchor="middle">'
               'generated tokens per item</text>')
    out.append(f'<text x="18" y="{(top + h - bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 18 {(top + h - bottom) / 2})">score (± stderr)</text>')
    for r, x, lo, hi in zip(rows, xs, lows, highs):
        cx, cy = px(x), py(r["score"])
        left_half = cx < (left + w - right) / 2  # labels grow away from the nearer edge
        out.append(f'<g><title>{escape(r["strategy"])}: {_pm(r["score"], r["score_stderr"])}'
                   f' at {x:.1f} tokens</title>'
                   f'<line x1="{cx:.1f}" y1="{py(lo):.1f}" x2="{cx:.1f}" y2="{py(hi):.1f}" '
                   f'stroke="#1f77b4"/>'
                   f'<line x1="{cx - 4:.1f}" y1="{py(lo):.1f}" x2="{cx + 4:.1f}" '
                   f'y2="{py(lo):.1f}" stroke="#1f77b4"/>'
                   f'<line x1="{cx - 4:.1f}" y1="{py(hi):.1f}" x2="{cx + 4:.1f}" '
                   f'y2="{py(hi):.1f}" stroke="#1f77b4"/>'
                   f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="#1f77b4"/>'
                   f'<text x="{cx + (7 if left_half else -7):.1f}" y="{cy - 6:.1f}" '
                   f'text-anchor="{"start" if left_half else "end"}">'
                   f'{escape(r["strategy"])}</text></g>')
    out.append("</svg>")
    atomic_write_text(path, "\n".join(out) + "\n")
