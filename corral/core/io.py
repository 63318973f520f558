"""Files, one way each: atomic writes (temp + fsync + rename), appends, hashes, $CORRAL_HOME.

    atomic_write_text(path, text)     # readers see the old file or the new one, never a torn one
    file_sha256(path), content_hash(row), corral_home()
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from corral.core.errors import CorralError


def corral_home() -> Path:
    """Cache root: $CORRAL_HOME, else ~/.cache/corral (converted models, sealed splits)."""
    return Path(os.environ.get("CORRAL_HOME") or Path.home() / ".cache" / "corral")


def fsync_dir(path) -> None:
    # Makes a rename durable; some filesystems and platforms refuse to open a directory.
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_lines(path, lines) -> None:
    """Each line plus a newline, written atomically."""
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def append_lines(path, lines: list[str]) -> None:
    # Appends cannot be temp+rename without rewriting the file; flush+fsync bounds the loss
    # to a torn last line, which read_jsonl skips.
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())


def append_jsonl(path, rows) -> None:
    """The one fsynced JSONL appender (caches, job rows, resume records): each row a line."""
    rows = list(rows)
    if rows:
        append_lines(path, [json.dumps(row, ensure_ascii=False, default=str) for row in rows])


def read_jsonl(path) -> list[dict]:
    """Rows of a JSON-lines file; unparsable lines (a write torn by a crash) are skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def file_sha256(path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError as e:
        raise CorralError(f"data file not found: {path}; check the path") from e
    return digest.hexdigest()


def content_hash(row: dict) -> str:
    """sha256 of the row's canonical JSON (sorted keys, no whitespace): stable across runs.
    Sealed unseen splits are stored as these hashes, so the form must never change."""
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)  # default=str: parquet dates and the like
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
