"""Which curves a run has, grouped the way the run page and `corral plot` draw them, and what
else the run page shows (checkpoints with their dev scores, config, lineage).

    groups(rows)   # [("loss", ["loss", "pg_loss"]), ("dev scores", ["eval/dev/pass@1"]), ...]
"""
from __future__ import annotations

from pathlib import Path

import yaml

from corral.core.errors import CorralError

SKIP = {"step", "time"}
COUNTS = ("n_items", "n_samples")  # how many were graded: not a curve
# (title, test on the lower-cased key), first match wins; scores before the generic words.
GROUPS = (
    ("dev scores", lambda k: "dev/" in k or k.startswith("dev")),
    ("unseen scores", lambda k: "unseen/" in k or k.startswith("unseen")),
    ("pass@k", lambda k: "pass@" in k or "maj@" in k),
    ("eval", lambda k: k.startswith("eval/") or "/mean" in k),
    ("KL", lambda k: "kl" in k.replace("/", "_").split("_") or k.endswith("kl")),
    ("loss", lambda k: "loss" in k),
    ("reward", lambda k: any(w in k for w in ("reward", "score", "advantage", "margin",
                                              "accurac", "chosen", "rejected"))),
    ("learning rate", lambda k: k == "lr" or k.endswith("/lr")),
    ("gradients", lambda k: "grad" in k),
    ("lengths", lambda k: "len" in k or "truncat" in k),
    ("throughput", lambda k: k.endswith("_s") or "per_s" in k or k in ("tokens", "epoch")),
)


def numeric_keys(rows: list[dict]) -> list[str]:
    """Keys with a number in some row, in first-seen order (no step/time, no *_stderr)."""
    seen: dict[str, None] = {}
    for row in rows:
        for k, v in row.items():
            if (k not in SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)
                    and not k.endswith("_stderr") and not k.endswith(COUNTS)):
                seen.setdefault(k, None)
    return list(seen)


def groups(rows: list[dict]) -> list[tuple[str, list[str]]]:
    """[(title, keys)] for every numeric key of the rows, in GROUPS order, then "other"."""
    found: dict[str, list[str]] = {}
    for key in numeric_keys(rows):
        low = key.lower()
        title = next((t for t, test in GROUPS if test(low)), "other")
        found.setdefault(title, []).append(key)
    order = [t for t, _ in GROUPS] + ["other"]
    return [(t, found[t]) for t in order if t in found]


def series(rows: list[dict], keys: list[str]) -> dict:
    """{"step": [...], key: [value or None, ...]} over the rows that have any of the keys."""
    kept = [r for r in rows if any(_num(r.get(k)) for k in keys)]
    out = {"step": [r.get("step", i) for i, r in enumerate(kept)]}
    for k in keys:
        out[k] = [r[k] if _num(r.get(k)) else None for r in kept]
    return out


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def checkpoints(run: Path, rows: list[dict]) -> list[dict]:
    """Published checkpoints (step-N, final) with the dev/unseen scores logged at that step."""
    at = {}
    for row in rows:
        scores = {k: v for k, v in row.items() if _num(v)
                  and not k.endswith(("_stderr",) + COUNTS)
                  and ("dev" in k or "unseen" in k or "pass@" in k)}
        if scores and isinstance(row.get("step"), int):
            at.setdefault(row["step"], {}).update(scores)
    found = []
    ckpts = run / "checkpoints"
    if ckpts.is_dir():
        for d in ckpts.iterdir():
            tail = d.name[len("step-"):]
            if d.is_dir() and d.name.startswith("step-") and tail.isdigit():
                found.append({"name": d.name, "step": int(tail),
                              "scores": at.get(int(tail), {})})
    found.sort(key=lambda c: c["step"])
    if (run / "final").is_dir():
        last = max(at) if at else None
        found.append({"name": "final", "step": last, "scores": at.get(last, {})})
    return found


def config_text(run: Path) -> str:
    try:
        return (run / "config.yaml").read_text(encoding="utf-8")
    except OSError:
        return ""


def config_dict(run: Path) -> dict:
    try:
        data = yaml.safe_load(config_text(run))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def lineage(run: Path) -> dict:
    """{"lines": tree lines, "flags": [...]} from the one lineage walker, or an "error"."""
    from corral.store.lineage import lineage_tree

    if not (run / "lineage.json").is_file():
        return {"lines": [], "flags": [], "error": "this run has no lineage.json"}
    try:
        lines, flags = lineage_tree(str(run), root=str(run.parent))
    except (CorralError, OSError, ValueError) as exc:
        return {"lines": [], "flags": [], "error": str(exc)}
    return {"lines": lines, "flags": flags}
