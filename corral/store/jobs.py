"""Row-level resumable generation jobs, and the manifests that say where a data file came from.

    job = GenerationJob("out.jsonl", template=tmpl, model=gen.identity(), params=sp,
                        usage=gen.usage)
    report = job.run(rows, lambda batch: [...one output (or an Exception) per row...])

Finished rows go to `out.jsonl.partial` as they complete (one JSON line per row, appended and
fsynced per batch), keyed by sha256 of (input row, prompt template, model identity,
generation parameters). A killed or failed job run again skips every row already there;
changing the template, model or parameters changes the keys, so stale rows are recomputed.
A row whose output is an Exception (or whose batch raised) is kept with its error: reported,
listed in `out.jsonl.failed.jsonl`, and tried again only with `retry_failed=True`. The partial
file is kept after the job finishes: it is the row cache (delete it to start over).

At the end `out.jsonl` holds the outputs of the rows that succeeded, in input order, written
atomically, and `out.jsonl.manifest.json` records its sha256, the counts, token and request
accounting, the model identity, template hash, parameters and wall time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import (
    append_jsonl,
    atomic_write_lines,
    atomic_write_text,
    content_hash,
    file_sha256,
)

try:
    import fcntl
except ImportError:  # Windows: no lock, so two jobs on one file are the user's to avoid
    fcntl = None

_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "requests", "retries")


def manifest_path(path) -> Path:
    """Where the manifest of data file `path` lives: `<path>.manifest.json`."""
    return Path(f"{path}.manifest.json")


def write_manifest(path, **fields) -> Path:
    """Write `<path>.manifest.json` atomically: the data file's path, sha256, bytes and line
    count, then `fields` (JSON-safe: anything else is written as its str), the corral
    version and the time. Returns the manifest's path."""
    from corral import __version__

    path = Path(path)
    with open(path, "rb") as f:
        lines = sum(1 for line in f if line.strip())
    body = {"output": {"path": str(path), "sha256": file_sha256(path),
                       "bytes": path.stat().st_size, "rows": lines},
            **fields, "corral_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    dest = manifest_path(path)
    atomic_write_text(dest, json.dumps(body, indent=2, ensure_ascii=False, default=str) + "\n")
    return dest


@dataclasses.dataclass
class JobReport:
    """What a run did. failures: {"index", "error"} of every failed row, in input order."""
    out_path: Path
    manifest_path: Path
    rows_in: int
    generated: int
    reused: int
    failed: int
    retried: int
    failures: list
    usage: dict
    wall_s: float

    def require_output(self, what: str = "row", fix: str = "run again") -> None:
        """Raise when every row failed (none generated, none reused): the first row's error
        is the cause to show, not the empty output a later step would complain about.
        `what` names a row ("prompt"), `fix` says how to redo the failed rows."""
        if self.rows_in and self.failed == self.rows_in:
            raise CorralError(
                f"every {what} failed ({self.failed} of {self.rows_in}, listed in "
                f"{self.out_path}.failed.jsonl); the first error: "
                f"{self.failures[0]['error']}; fix that cause, then {fix}.")


class GenerationJob:
    """A resumable job writing `out_path`; see the module docstring.

    template: the prompt template (text, or any JSON value such as a prompt program); model:
    the generator's identity(); params: the generation parameters (a dict or a dataclass such
    as SamplingParams). All three enter every row's cache key. usage: the generator's
    counters (anything with prompt_tokens, completion_tokens, requests, retries), read before
    and after to account this run and show tokens/s. extra: more fields for the manifest.
    """

    def __init__(self, out_path, *, template="", model: dict | None = None, params=None,
                 batch_size: int = 16, retry_failed: bool = False, usage=None,
                 progress: bool = True, extra: dict | None = None):
        if batch_size < 1:
            raise CorralError(f"generation job {out_path}: batch_size must be at least 1; "
                              f"got {batch_size}.")
        self.out_path = Path(out_path)
        self.partial_path = Path(f"{out_path}.partial")
        self.failed_path = Path(f"{out_path}.failed.jsonl")
        self.manifest_path = manifest_path(out_path)
        self.template_sha256 = _template_hash(template)
        self.model = _json_safe(model or {})
        self.params = _json_safe(dataclasses.asdict(params) if dataclasses.is_dataclass(params)
                                 else params or {})
        self.batch_size, self.retry_failed = batch_size, retry_failed
        self.usage, self.progress, self.extra = usage, progress, extra or {}

    def keys(self, rows: list[dict]) -> list[str]:
        """Each row's cache key. A repeated input row gets its occurrence number in the key,
        so duplicates are sampled independently, not copied from one another."""
        seen: dict[str, int] = {}
        keys = []
        for row in rows:
            base = {"row": row, "template": self.template_sha256, "model": self.model,
                    "params": self.params}
            plain = content_hash(base)
            k = seen[plain] = seen.get(plain, -1) + 1
            keys.append(content_hash({**base, "occurrence": k}) if k else plain)
        return keys

    def run(self, rows, fn: Callable[[list], list]) -> JobReport:
        """Produce an output for every row: fn(batch of rows) -> one output per row, each a
        JSON value or an Exception (that row failed). An exception fn raises fails its whole
        batch, except a CorralError (a user mistake), which stops the job."""
        started = time.monotonic()
        rows = list(rows)
        keys = self.keys(rows)
        with _PartialFile(self.partial_path) as partial:
            cached = partial.records()
            done: dict[int, dict] = {}
            pending, retried = [], 0
            for i, key in enumerate(keys):
                record = cached.get(key)
                if record is None or ("error" in record and self.retry_failed):
                    retried += record is not None
                    pending.append(i)
                else:
                    done[i] = record
            failed_before = sum("error" in r for r in done.values())
            reused = len(done) - failed_before
            before = _usage(self.usage)
            self._generate(rows, keys, pending, fn, partial, done)
        usage = {k: v - before.get(k, 0) for k, v in _usage(self.usage).items()}
        failures = self._write_outputs(rows, done)
        report = JobReport(self.out_path, self.manifest_path, len(rows),
                           len(rows) - reused - len(failures), reused, len(failures), retried,
                           failures, usage, round(time.monotonic() - started, 3))
        self._write_manifest(report, failed_before)
        return report

    def _generate(self, rows, keys, pending, fn, partial, done) -> None:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), initial=len(rows) - len(pending), unit="row",
                   desc=self.out_path.name, disable=None if self.progress else True)
        start, tokens0 = time.monotonic(), _usage(self.usage).get("completion_tokens", 0)
        try:
            for at in range(0, len(pending), self.batch_size):
                idx = pending[at:at + self.batch_size]
                records = _attempt(fn, [rows[i] for i in idx], [keys[i] for i in idx], idx)
                partial.append(records)  # on disk before the bar moves: a kill loses no row
                done.update(zip(idx, records))
                tokens = _usage(self.usage).get("completion_tokens", 0) - tokens0
                bar.set_postfix(tok_s=f"{tokens / max(time.monotonic() - start, 1e-9):.1f}",
                                refresh=False)
                bar.update(len(idx))
        finally:
            bar.close()

    def _write_outputs(self, rows, done: dict[int, dict]) -> list[dict]:
        lines, failures = [], []
        for i in range(len(rows)):
            record = done[i]
            if "error" in record:
                failures.append({"index": i, "error": record["error"]})
            else:
                lines.append(json.dumps(record["output"], ensure_ascii=False))
        atomic_write_lines(self.out_path, lines)
        if failures:
            atomic_write_lines(self.failed_path, [
                json.dumps({**f, "row": rows[f["index"]]}, ensure_ascii=False, default=str)
                for f in failures])
        else:
            self.failed_path.unlink(missing_ok=True)
        return failures

    def _write_manifest(self, report: JobReport, failed_before: int) -> None:
        write_manifest(
            self.out_path, kind="generation",
            counts={"rows_in": report.rows_in, "generated": report.generated,
                    "reused": report.reused, "failed": report.failed,
                    "failed_before": failed_before, "retried": report.retried},
            usage=report.usage, model=self.model, template_sha256=self.template_sha256,
            params=self.params, wall_s=report.wall_s,
            failed_file=str(self.failed_path) if report.failed else None,
            partial_file=str(self.partial_path), **self.extra)


def _attempt(fn, batch: list, keys: list[str], idx: list[int]) -> list[dict]:
    """One record per row of the batch: {"key", "index", "output"} or {..., "error"}."""
    try:
        outputs = list(fn(batch))
        if len(outputs) != len(batch):
            raise RuntimeError(f"the row function returned {len(outputs)} outputs for "
                               f"{len(batch)} rows")
    except CorralError:
        raise
    except Exception as exc:  # noqa: BLE001  (any failure of a batch is recorded, not fatal)
        outputs = [exc] * len(batch)
    records = []
    for key, i, out in zip(keys, idx, outputs):
        if isinstance(out, BaseException):
            records.append({"key": key, "index": i, "error": _describe(out)})
            continue
        try:
            json.dumps(out, ensure_ascii=False)
            records.append({"key": key, "index": i, "output": out})
        except (TypeError, ValueError) as exc:
            records.append({"key": key, "index": i, "error": f"output is not JSON: {exc}"})
    return records


class _PartialFile:
    """The row cache: JSON lines, locked against a second job, a torn last line cut off."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+b")
        if fcntl is not None:
            try:
                fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.file.close()
                raise CorralError(f"another job is writing {self.path}; wait for it to "
                                  "finish (or stop it) before starting this one.") from None
        return self

    def __exit__(self, *exc):
        self.file.close()  # closing releases the lock

    def records(self) -> dict[str, dict]:
        """key -> the last record for it (a retried row's success follows its error)."""
        self.file.seek(0)
        data = self.file.read()
        if data and not data.endswith(b"\n"):  # killed mid-write: drop the torn tail, or the
            self.file.truncate(data.rfind(b"\n") + 1)  # next append would glue onto it
            data = data[:data.rfind(b"\n") + 1]
        found = {}
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "key" in record and (
                    "output" in record or "error" in record):
                found[record["key"]] = record
        return found

    def append(self, records: list[dict]) -> None:
        # The lock is held on self.file; the rows go through the one fsynced appender.
        append_jsonl(self.path, records)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _template_hash(template) -> str:
    text = template if isinstance(template, str) else json.dumps(
        template, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json_safe(value):
    # Round-trip through JSON so the manifest shows exactly what the cache key hashed.
    return json.loads(json.dumps(value, default=str))


def _usage(counters) -> dict:
    """Counters as a dict of ints, from an object with attributes (Usage) or a dict."""
    if counters is None:
        return {}
    if isinstance(counters, dict):
        return {k: int(counters.get(k, 0)) for k in _USAGE_KEYS}
    return {k: int(getattr(counters, k, 0)) for k in _USAGE_KEYS}
