"""What the dashboard knows about a runs folder, read cheaply: each run's summary is cached
against its files' (mtime, size), and metrics.jsonl / samples.jsonl are read incrementally
(only the bytes appended since the last look), so polling hundreds of runs every few seconds
re-reads nothing that did not change.

    index = RunIndex("runs")
    index.summaries()                  # [{name, method, task, status, step, latest, ...}]
    index.metrics("my-run", after_step=10)
"""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import yaml

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
RUN_FILES = ("config.yaml", "lineage.json", "metrics.jsonl", "samples.jsonl")
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster
LIVE_SECONDS = 120  # a run without final/ whose metrics moved this recently is running


class Lines:
    """A JSONL file read by appended bytes only. mode "rows" keeps every parsed row; "latest"
    keeps each key's latest number (a first look parses only the file's last TAIL bytes);
    "offsets" keeps only where each line starts (samples, read a page at a time)."""

    TAIL = 64 * 1024

    def __init__(self, path: Path, mode: str = "rows"):
        self.path, self.mode = path, mode
        self.offset, self.rows, self.starts, self.n = 0, [], [], 0
        self.latest: dict = {}
        self.reads = 0  # how many times bytes were read from disk (tests count them)

    def refresh(self) -> bool:
        """Read what was appended; True when something changed. A shorter file is re-read."""
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        if size < self.offset:  # truncated (a resume drops rows past its checkpoint)
            self.__init__(self.path, self.mode)
        if size == self.offset:
            return False
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read(size - self.offset)
        self.reads += 1
        end = chunk.rfind(b"\n") + 1  # a half-written last line waits for the next look
        lines, pos = chunk[:end].split(b"\n")[:-1], self.offset
        skip_before = end - self.TAIL if self.mode == "latest" else -1
        for line in lines:
            if pos - self.offset < skip_before:
                self.n += bool(line.strip())
            else:
                self._take(line, pos)
            pos += len(line) + 1
        self.offset += end
        return end > 0

    def _take(self, line: bytes, pos: int) -> None:
        if not line.strip():
            return
        self.n += 1
        if self.mode == "offsets":
            self.starts.append(pos)
            return
        try:
            row = json.loads(line)
        except ValueError:
            return
        if not isinstance(row, dict):
            return
        if self.mode == "latest":
            self.latest.update({k: v for k, v in row.items() if _number(v) or k == "step"})
        else:
            self.rows.append(row)

    def page(self, offset: int, limit: int) -> list[dict]:
        """Rows offset..offset+limit, read by their byte offsets (samples are not kept)."""
        out = []
        with open(self.path, "rb") as f:
            for start in self.starts[offset:offset + limit]:
                f.seek(start)
                try:
                    out.append(json.loads(f.readline()))
                except ValueError:
                    out.append({"error": "this line is not valid JSON"})
        return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _stat_key(run: Path) -> tuple:
    key = []
    for name in RUN_FILES:
        try:
            st = (run / name).stat()
            key.append((st.st_mtime_ns, st.st_size))
        except OSError:
            key.append(None)
    key.append((run / "final").is_dir())
    return tuple(key)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=SafeLoader)
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe(run: Path) -> dict:
    """method, task, base model and started time from config.yaml and lineage.json."""
    cfg, lineage = _read_yaml(run / "config.yaml"), _read_json(run / "lineage.json")
    extra = lineage.get("extra") if isinstance(lineage.get("extra"), dict) else {}
    method = extra.get("method") or cfg.get("method")
    if not method and ("models" in cfg or "strategies" in cfg or "strategy" in cfg):
        method = "eval"
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    ev = cfg.get("eval") if isinstance(cfg.get("eval"), dict) else {}
    task = cfg.get("task") or data.get("task") or ev.get("task") or ""
    model_cfg = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    model = (lineage.get("base_model") or model_cfg.get("name")
             or (cfg["model"] if isinstance(cfg.get("model"), str) else "")
             or ", ".join(map(str, cfg.get("models") or [])))
    return {"method": str(method or "?"), "task": str(task), "model": str(model or ""),
            "started": lineage.get("time") or ""}


class RunIndex:
    """Summaries of every run under `root`, each recomputed only when its files changed."""

    def __init__(self, root):
        self.root = Path(root)
        self._cache: dict[str, tuple[tuple, dict]] = {}
        self._metrics: dict[str, Lines] = {}  # every row, for runs whose page was opened
        self._tails: dict[str, Lines] = {}  # latest values only, for the list
        self._samples: dict[str, Lines] = {}
        self._lock = threading.Lock()
        self.recomputed = 0  # summaries rebuilt (tests check a second call rebuilds none)

    def run_dir(self, name: str) -> Path | None:
        """The folder of run `name`, or None for anything that is not a run under root."""
        if not NAME.match(name or ""):
            return None
        run = self.root / name  # NAME has no slash and no leading dot: never outside root
        if not run.is_dir():
            return None
        return run if any((run / f).exists() for f in RUN_FILES) else None

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and NAME.match(p.name) and not p.name.startswith("."))

    def summaries(self) -> list[dict]:
        with self._lock:
            out = [s for s in (self._summary(n) for n in self.names()) if s is not None]
            gone = set(self._cache) - {s["name"] for s in out}
            for name in gone:
                self._cache.pop(name, None)
        return sorted(out, key=lambda s: s["updated"], reverse=True)

    def summary(self, name: str) -> dict | None:
        """One run's summary (no look at the other runs)."""
        with self._lock:
            return self._summary(name)

    def _summary(self, name: str) -> dict | None:
        run = self.root / name
        key = _stat_key(run)
        if not any(key[:-1]) and not key[-1]:
            return None
        cached = self._cache.get(name)
        if cached and cached[0] == key:
            return cached[1]
        self.recomputed += 1
        tail = self._tails.setdefault(name, Lines(run / "metrics.jsonl", "latest"))
        tail.refresh()
        mtimes = [k[0] for k in key[:-1] if k]
        updated = max(mtimes) / 1e9 if mtimes else 0.0
        summary = {"name": name, **describe(run), "step": tail.latest.get("step", 0),
                   "rows": tail.n, "latest": {k: v for k, v in tail.latest.items()
                                              if k != "time"},
                   "updated": round(updated, 3), "status": _status(run, key, updated)}
        self._cache[name] = (key, summary)
        return summary

    def metrics(self, name: str, after_step: int | None = None) -> list[dict]:
        """Metrics rows of a run (those with step > after_step), read incrementally."""
        with self._lock:
            lines = self._metrics.setdefault(name, Lines(self.root / name / "metrics.jsonl"))
            lines.refresh()
            rows = lines.rows
        if after_step is None:
            return list(rows)
        return [r for r in rows if isinstance(r.get("step"), (int, float))
                and r["step"] > after_step]

    def samples(self, name: str, offset: int, limit: int) -> tuple[int, list[dict]]:
        """(total, rows offset..offset+limit) of samples.jsonl, indexed by line offsets."""
        with self._lock:
            lines = self._samples.setdefault(
                name, Lines(self.root / name / "samples.jsonl", "offsets"))
            lines.refresh()
            total = lines.n
            return total, lines.page(offset, limit) if total else []


def _status(run: Path, key: tuple, updated: float) -> str:
    if key[-1]:
        return "done"
    if not (run / "checkpoints").is_dir() and key[RUN_FILES.index("samples.jsonl")]:
        return "done"  # an evaluation: its samples are written when it finishes
    if time.time() - updated < LIVE_SECONDS:
        return "running"
    return "stopped"
