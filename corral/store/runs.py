"""RunStore: the only code that writes a run directory (`runs/<name>/`), every write atomic.

Layout: config.yaml, metrics.jsonl, samples.jsonl, lineage.json, checkpoints/step-N/, final/.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import (  # noqa: F401 (atomic_write_* re-exported)
    append_jsonl,
    append_lines,
    atomic_write_bytes,
    atomic_write_text,
    file_sha256,
    fsync_dir,
    read_jsonl,
)

_SINK_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


def new_run_name(prefix: str) -> str:
    """`<prefix>-YYYYmmdd-HHMMSS` in local time, e.g. `sft-20250102-130405`."""
    return f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _plain(value):
    """Tuples, tensors and paths as YAML/JSON-safe lists, numbers and strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # torch / numpy scalars
        return value.item()
    return value


def _fsync_tree(root: Path) -> None:
    # Writers such as torch.save or save_pretrained do not fsync; the rename that publishes
    # a checkpoint must not overtake its contents on the disk.
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))


def _publish_dir(tmp: Path, dest: Path) -> None:
    """Rename a finished temp directory onto `dest`, replacing any previous one."""
    _fsync_tree(tmp)
    old = None
    if dest.exists():
        old = dest.with_name(f".old-{dest.name}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dest, old)
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def resolve_run(name: str, root: str = "runs") -> Path | None:
    """The run directory `name` means (a path to a run, or <root>/<name>), or None."""
    for candidate in (Path(name).expanduser(), Path(root) / name):
        if (candidate / "final").is_dir() or (candidate / "config.yaml").is_file():
            return candidate
    return None


def run_model_path(name: str, root: str = "runs") -> str:
    """A run name or run dir means its final model; anything else is a model name as given."""
    run = resolve_run(name, root)
    return str(run / "final") if run is not None and (run / "final").is_dir() else name


def data_entry(path) -> dict:
    """path, sha256 (and bytes) of a data file or saved dataset dir; sha256 None for a hub id."""
    p = Path(path)
    if p.is_file():
        entry = {"path": str(p), "sha256": file_sha256(p), "bytes": p.stat().st_size}
        manifest = Path(f"{p}.manifest.json")
        if manifest.is_file():  # made by corral: keep where it came from, even if moved later
            try:
                entry["manifest"] = json.loads(manifest.read_text(encoding="utf-8"))
            except ValueError:
                entry["manifest"] = None
        return entry
    if p.is_dir():  # a saved dataset directory: hash names and contents in a fixed order
        h = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0" + file_sha256(f).encode())
        return {"path": str(p), "sha256": h.hexdigest()}
    return {"path": str(path), "sha256": None}  # a hub id: nothing local to hash


class RunStore:
    """The run directory `root/name`; nothing is created on disk until the first write.

    `keep` is how many `checkpoints/step-N` survive pruning (<= 0 keeps all); `report_to` is
    `none` or a comma-separated list of `tensorboard`, `wandb`, `trackio` that also receive
    every metrics row.
    """

    def __init__(self, root, name: str, *, keep: int = 2, report_to: str = "none"):
        if not name:
            raise CorralError("run.name is empty; give the run a name or leave it unset")
        self.root = Path(root)
        self.name = name
        self.path = self.root / name
        self.keep = keep
        self._sink_names = _parse_report_to(report_to)
        self._sinks = None  # opened on the first metrics row, so exists() starts no service

    # -- plain files -------------------------------------------------------------------
    def exists(self) -> bool:
        """True when the run directory holds anything (a previous run with this name)."""
        return self.path.is_dir() and any(self.path.iterdir())

    def write_config(self, cfg_dict: dict) -> Path:
        import yaml

        dest = self.path / "config.yaml"
        atomic_write_text(dest, yaml.safe_dump(_plain(cfg_dict), sort_keys=False))
        return dest

    def append_metrics(self, step: int, metrics: dict) -> dict:
        """Append one row `{step, time, **metrics}` to metrics.jsonl (and the sinks)."""
        row = {"step": int(step), "time": round(time.time(), 3), **_plain(metrics)}
        append_lines(self.path / "metrics.jsonl", [json.dumps(row)])
        for sink in self._open_sinks():
            sink.log(int(step), {k: v for k, v in row.items() if _is_number(v)
                                 and k not in ("step", "time")})
        return row

    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")

    def truncate_metrics(self, after_step: int) -> None:
        """Drop rows with step > after_step (logged after the checkpoint a resume starts from)."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return
        kept = [r for r in read_jsonl(path) if r.get("step", 0) <= after_step]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    def append_samples(self, rows: list[dict]) -> None:
        if rows:
            append_lines(self.path / "samples.jsonl", [json.dumps(_plain(r)) for r in rows])

    def append_resume(self, changes: dict) -> dict:
        """One row per resume in resumes.jsonl: when, from which checkpoint, what changed."""
        latest = self.latest_checkpoint()
        row = {"time": round(time.time(), 3), "from_step": latest[0] if latest else 0,
               "changes": _plain(changes)}
        append_jsonl(self.path / "resumes.jsonl", [row])
        return row

    def read_resumes(self) -> list[dict]:
        return read_jsonl(self.path / "resumes.jsonl")

    def write_artifact(self, name: str, data: bytes) -> Path:
        """A method's own file in the run (e.g. cached reference log-probs), written atomically."""
        path = self.path / name
        atomic_write_bytes(path, data)
        return path

    def read_artifact(self, name: str) -> bytes | None:
        path = self.path / name
        return path.read_bytes() if path.is_file() else None

    def write_lineage(self, base_model: str, data_files: list, parent_run: str = "",
                      extra: dict | None = None) -> Path:
        """lineage.json: base model, sha256 of each data file, parent run, corral version.
        A data file is a path, or {"path": ..., more fields} (a mixed file's weight)."""
        from corral import __version__

        lineage = {
            "base_model": str(base_model),
            "data": [{**data_entry(p["path"]), **{k: v for k, v in p.items() if k != "path"}}
                     if isinstance(p, dict) else data_entry(p) for p in data_files if p],
            "parent_run": parent_run or None,
            "corral_version": __version__,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "extra": _plain(extra or {}),
        }
        dest = self.path / "lineage.json"
        atomic_write_text(dest, json.dumps(lineage, indent=2) + "\n")
        return dest

    # -- checkpoints -------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        return self.path / "checkpoints" / f"step-{step}"

    def save_checkpoint(self, step: int, writer: Callable[[Path], None]) -> Path:
        """writer(temp dir) fills `checkpoints/.tmp-step-N`, published by one rename, then prune."""
        ckpts = self.path / "checkpoints"
        ckpts.mkdir(parents=True, exist_ok=True)
        for stale in ckpts.glob(".tmp-step-*"):  # left by a crash mid-save; never a checkpoint
            shutil.rmtree(stale, ignore_errors=True)
        tmp = ckpts / f".tmp-step-{step}"
        tmp.mkdir()
        try:
            writer(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        dest = self.checkpoint_dir(step)
        _publish_dir(tmp, dest)
        self._prune()
        return dest

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Published checkpoints, oldest first (temp dirs are not checkpoints)."""
        ckpts = self.path / "checkpoints"
        if not ckpts.is_dir():
            return []
        found = []
        for d in ckpts.iterdir():
            tail = d.name[len("step-"):]
            if d.is_dir() and d.name.startswith("step-") and tail.isdigit():
                found.append((int(tail), d))
        return sorted(found)

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def _prune(self) -> None:
        if self.keep <= 0:
            return
        for _, d in self.checkpoints()[:-self.keep]:
            shutil.rmtree(d, ignore_errors=True)

    def save_final(self, writer: Callable[[Path], None]) -> Path:
        """writer(temp dir) fills `.tmp-final`, published as `final/` by one rename."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / ".tmp-final"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            writer(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        dest = self.path / "final"
        _publish_dir(tmp, dest)
        return dest

    # -- external sinks ----------------------------------------------------------------
    def _open_sinks(self) -> list:
        if self._sinks is None:
            self._sinks = [_SINKS[name](self) for name in self._sink_names]
        return self._sinks

    def close(self) -> None:
        """Finish the external sinks (metrics.jsonl needs no closing)."""
        for sink in self._sinks or []:
            sink.close()
        self._sinks = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _parse_report_to(report_to: str) -> list[str]:
    names = [n.strip() for n in (report_to or "none").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    for name in names:
        if name not in _SINK_PACKAGES:
            raise CorralError(f"train.report_to={name} is not known; use none, "
                              f"{', '.join(_SINK_PACKAGES)} (comma-separated for several)")
        package = _SINK_PACKAGES[name]
        if importlib.util.find_spec(package) is None:
            raise CorralError(f"train.report_to={name} needs the {package} package; "
                              f"run `pip install {package}` or set train.report_to=none")
    return names


class _TensorBoard:
    def __init__(self, store: RunStore):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(store.path / "tensorboard"))

    def log(self, step: int, metrics: dict) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, store: RunStore):
        import wandb

        self.wandb = wandb
        # id = run name, so a resumed corral run continues the same wandb run.
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "corral"),
                              name=store.name, id=store.name, resume="allow",
                              dir=str(store.path))

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class _Trackio:
    def __init__(self, store: RunStore):
        import trackio

        self.trackio = trackio
        trackio.init(project=os.environ.get("TRACKIO_PROJECT", "corral"), name=store.name)

    def log(self, step: int, metrics: dict) -> None:
        try:
            self.trackio.log(metrics, step=step)
        except TypeError:  # older trackio counts steps itself
            self.trackio.log(metrics)

    def close(self) -> None:
        self.trackio.finish()


_SINKS = {"tensorboard": _TensorBoard, "wandb": _Wandb, "trackio": _Trackio}
