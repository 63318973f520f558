"""The service's durable state: files, jobs, events and checkpoints in one SQLite database
(WAL) at `ROOT/serve.db`. Every write is one transaction, so a process killed at any moment
(the server or a worker, `kill -9`) leaves the last committed state; the server and its
worker processes share the file (WAL lets readers run beside the one writer).

A job's row holds its OpenAI object (`obj`, JSON) and the parsed request (`spec`); its
`status` column mirrors `obj.status` so state changes can be conditional (`transition`)."""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS files(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
  created_at INTEGER NOT NULL, bytes INTEGER NOT NULL, filename TEXT NOT NULL,
  purpose TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
  created_at INTEGER NOT NULL, status TEXT NOT NULL, obj TEXT NOT NULL, spec TEXT NOT NULL,
  request_hash TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  model TEXT, model_deleted INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS jobs_model ON jobs(model);
CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
  job_id TEXT NOT NULL, obj TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints(seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL, step INTEGER NOT NULL, obj TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS checkpoints_job ON checkpoints(job_id, seq);
"""
ACTIVE = ("validating_files", "queued", "running", "pausing", "paused")
FINISHED = ("succeeded", "failed", "cancelled")


def now() -> int:
    return int(time.time())


class Store:
    """One SQLite file; a short-lived connection per operation (safe across threads and
    processes)."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "serve.db"
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: set once for the file
            db.executescript(SCHEMA)
        finally:
            db.close()

    @contextmanager
    def tx(self):
        """One transaction (BEGIN IMMEDIATE: writers queue up instead of failing midway)."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def query(self, sql: str, params=()) -> list:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    # -- files ---------------------------------------------------------------------------
    def add_file(self, obj: dict) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO files(id, created_at, bytes, filename, purpose) "
                       "VALUES (?,?,?,?,?)", (obj["id"], obj["created_at"], obj["bytes"],
                                              obj["filename"], obj["purpose"]))

    def file(self, file_id: str) -> dict | None:
        rows = self.query("SELECT id, created_at, bytes, filename, purpose FROM files "
                          "WHERE id=? AND deleted=0", (file_id,))
        return file_obj(rows[0]) if rows else None

    def delete_file(self, file_id: str, in_use) -> bool:
        """Mark the file deleted unless `in_use(db)` objects (raises); False when unknown."""
        with self.tx() as db:
            in_use(db)
            return db.execute("UPDATE files SET deleted=1 WHERE id=? AND deleted=0",
                              (file_id,)).rowcount == 1

    # -- jobs ----------------------------------------------------------------------------
    def job(self, job_id: str) -> dict | None:
        rows = self.query("SELECT obj FROM jobs WHERE id=?", (job_id,))
        return json.loads(rows[0][0]) if rows else None

    def job_row(self, job_id: str) -> dict | None:
        rows = self.query("SELECT obj, spec, attempts FROM jobs WHERE id=?", (job_id,))
        if not rows:
            return None
        return {"obj": json.loads(rows[0][0]), "spec": json.loads(rows[0][1]),
                "attempts": rows[0][2]}

    def insert_job(self, db, obj: dict, spec: dict, request_hash: str) -> None:
        db.execute("INSERT INTO jobs(id, created_at, status, obj, spec, request_hash) "
                   "VALUES (?,?,?,?,?,?)", (obj["id"], obj["created_at"], obj["status"],
                                            json.dumps(obj), json.dumps(spec), request_hash))

    def transition(self, job_id: str, allowed, **fields) -> dict | None:
        """Set fields of the job's object if its status is in `allowed`; the new object, or
        None when the job is elsewhere (a cancel won the race, say)."""
        with self.tx() as db:
            return self.transition_in(db, job_id, allowed, **fields)

    def transition_in(self, db, job_id: str, allowed, **fields) -> dict | None:
        row = db.execute("SELECT obj FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            return None
        obj = json.loads(row[0])
        if obj["status"] not in allowed:
            return None
        obj.update(fields)
        db.execute("UPDATE jobs SET obj=?, status=?, model=? WHERE id=?",
                   (json.dumps(obj), obj["status"], obj.get("fine_tuned_model"), job_id))
        return obj

    def count_attempt(self, job_id: str) -> int:
        with self.tx() as db:
            db.execute("UPDATE jobs SET attempts=attempts+1 WHERE id=?", (job_id,))
            return db.execute("SELECT attempts FROM jobs WHERE id=?", (job_id,)).fetchone()[0]

    def jobs_in(self, statuses) -> list[str]:
        marks = ",".join("?" * len(statuses))
        return [r[0] for r in self.query(f"SELECT id FROM jobs WHERE status IN ({marks}) "
                                         "ORDER BY seq", tuple(statuses))]

    def model_job(self, model: str) -> dict | None:
        rows = self.query("SELECT obj FROM jobs WHERE model=? AND model_deleted=0 AND "
                          "status='succeeded'", (model,))
        return json.loads(rows[0][0]) if rows else None

    def delete_model(self, model: str) -> bool:
        with self.tx() as db:
            return db.execute("UPDATE jobs SET model_deleted=1 WHERE model=? AND "
                              "model_deleted=0 AND status='succeeded'", (model,)).rowcount > 0

    # -- events and checkpoints ------------------------------------------------------------
    def add_event(self, job_id: str, message: str, level: str = "info", data=None,
                  kind: str = "message", event_id: str | None = None, db=None) -> None:
        """INSERT OR IGNORE: an event with a fixed id (a step's metrics) is written once even
        when a resumed worker redoes the step."""
        from corral.serve.ids import new_id

        obj = {"id": event_id or new_id("ftevent"), "object": "fine_tuning.job.event",
               "created_at": now(), "level": level, "message": message, "data": data or {},
               "type": kind}
        sql = "INSERT OR IGNORE INTO events(id, job_id, obj) VALUES (?,?,?)"
        if db is not None:
            db.execute(sql, (obj["id"], job_id, json.dumps(obj)))
            return
        with self.tx() as conn:
            conn.execute(sql, (obj["id"], job_id, json.dumps(obj)))

    def add_checkpoint(self, db, obj: dict) -> None:
        db.execute("INSERT OR IGNORE INTO checkpoints(id, job_id, step, obj) VALUES (?,?,?,?)",
                   (obj["id"], obj["fine_tuning_job_id"], obj["step_number"], json.dumps(obj)))

    # -- lists -----------------------------------------------------------------------------
    def page(self, table: str, where: str, params: tuple, after: str | None, limit: int,
             desc: bool = True, column: str = "obj") -> tuple[list, bool]:
        """One page of `table` in creation order (newest first when desc), after the row
        whose id is `after`; (rows, has_more). An unknown `after` raises KeyError."""
        if after is not None:
            seq = self.query(f"SELECT seq FROM {table} WHERE id=?", (after,))
            if not seq:
                raise KeyError(after)
            where += f" AND seq {'<' if desc else '>'} ?"
            params = (*params, seq[0][0])
        rows = self.query(f"SELECT {column} FROM {table} WHERE {where} ORDER BY seq "
                          f"{'DESC' if desc else 'ASC'} LIMIT ?", (*params, limit + 1))
        return rows[:limit], len(rows) > limit


def file_obj(row) -> dict:
    return {"id": row[0], "object": "file", "bytes": row[2], "created_at": row[1],
            "filename": row[3], "purpose": row[4], "status": "processed",
            "status_details": None, "expires_at": None}
