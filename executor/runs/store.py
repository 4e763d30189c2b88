"""The run store: runs, their append-only event log and artifacts, in SQLite (WAL) under the data directory.

Every state change is a transaction, so a run is claimed by exactly one worker, and a crash loses nothing that
was committed before it. States: queued -> running -> succeeded | failed | cancelled.

A run is its plan (data folder, step cap and evaluation included) plus who owns it, its priority and its state;
`gpus` is copied out of the plan only so that `claim` can schedule in SQL.

Each queued run gets its directory at submit (private: 0700, the store file 0600): plan.yaml and run.json (id,
owner, priority, creation time), which the run process fills with its outputs. That is what `recover` rebuilds a
lost or corrupt store from. A store that SQLite cannot read raises StoreError naming the file and the way out, and
so does a missing or empty store while run directories exist: the history was lost, not never written.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from executor.paths import data_dir
from executor.runs.events import Reporter, check, progress_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, owner TEXT, plan TEXT NOT NULL, plan_path TEXT,
    status TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL,
    finished_at REAL, attempt INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL DEFAULT 3,
    run_dir TEXT NOT NULL, error TEXT, worker TEXT, pid INTEGER, heartbeat_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0, gpus INTEGER NOT NULL DEFAULT 1, backend TEXT, external_id TEXT,
    kind TEXT NOT NULL DEFAULT 'train', budget_seconds REAL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, time REAL NOT NULL, kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id, id);
CREATE TABLE IF NOT EXISTS artifacts (run_id TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY (run_id, name));
"""
# Columns added after the first release: a store written by an older Tunewise gets them on open.
ADDED_COLUMNS = {"gpus": "INTEGER NOT NULL DEFAULT 1", "backend": "TEXT", "external_id": "TEXT",
                 "kind": "TEXT NOT NULL DEFAULT 'train'", "budget_seconds": "REAL"}
# What a run does with its plan: train it (and evaluate when the plan says so), or pilot it (executor/pilot).
RUN_KINDS = ("train", "pilot")
# Columns that once carried parts of a run beside its plan; an older store's values move into its plans on open.
LEGACY_COLUMNS = ("data_dir", "max_steps", "evaluate", "eval_limit")
FINAL = ("succeeded", "failed", "cancelled")
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")  # what `submit` names a run (and its directory)
RUN_RECORD = "run.json"  # in each run directory: who submitted the run and when, for `recover`
# SQLite's result codes for a file that is not (or no longer) a database; other errors (locked, ...) pass as they are.
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


class RunNotFound(KeyError):
    pass


class StoreError(Exception):
    """The run store cannot be used as it is; the message names the file and the way out."""


class RunStore:
    def __init__(self, path: str | Path | None = None, *, rebuilding: bool = False):
        """`rebuilding`: a fresh store that `recover` fills from the run directories (which exist, of course)."""
        self.path = Path(path) if path else data_dir() / "runs.sqlite"
        self.runs_root = self.path.parent / "runs"  # where `submit` puts run directories unless told otherwise
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not rebuilding:
            self._refuse_lost_history()
        _create_private(self.path)
        with self._db() as db:
            db.executescript(SCHEMA)
            present = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
            for name, decl in ADDED_COLUMNS.items():
                if name not in present:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")
            if present & set(LEGACY_COLUMNS):
                _fold_legacy_columns(db)

    def _refuse_lost_history(self) -> None:
        """A missing or empty store next to run directories lost its history: opening it would hide that."""
        if self.path.is_file() and self.path.stat().st_size > 0:
            return
        orphans = run_dirs(self.runs_root)
        if orphans:
            state = "is empty (0 bytes)" if self.path.exists() else "is missing"
            raise StoreError(f"the run store {self.path} {state}, but {len(orphans)} run directories remain in "
                             f"{self.runs_root}: the run history was lost. `tunewise runs recover` rebuilds the "
                             "store from them" + (" (the empty file is kept beside it)" if self.path.exists() else ""))

    def _broken(self, exc: sqlite3.DatabaseError) -> StoreError:
        return StoreError(f"the run store {self.path} is unreadable ({exc}). `tunewise runs recover` moves it aside "
                          f"(to {self.path.name}.broken-<time>, never deleted) and rebuilds the store from the run "
                          f"directories in {self.runs_root}")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection, closed after use; a file SQLite cannot read becomes a StoreError."""
        try:
            db = self._connect()
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                raise self._broken(exc) from exc
            raise
        try:
            with db:
                yield db
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                raise self._broken(exc) from exc
            raise
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # explicit transactions below
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # ------------------------------------------------------------------ runs
    def submit(self, plan_yaml: str, *, owner: str = "", priority: int = 0, max_attempts: int = 3,
               runs_root: Path | None = None, plan_path: str | None = None, kind: str = "train",
               budget_seconds: float | None = None) -> str:
        """Queue a plan: everything the run does is in it (data.path, training.max_steps, and with
        evaluation.after_training the run evaluates itself on at most evaluation.max_rows test rows). A `pilot`
        run measures the plan's candidates on a sample of its data within `budget_seconds` instead."""
        if kind not in RUN_KINDS:
            raise ValueError(f"run kind {kind!r}: use one of {', '.join(RUN_KINDS)}")
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        run_dir = (runs_root or self.runs_root) / run_id
        hardware = (yaml.safe_load(plan_yaml) or {}).get("hardware") or {}
        # What the run asks for; the worker caps it. A pilot is one process on one device.
        gpus = 1 if kind == "pilot" else max(1, int(hardware.get("gpu_count") or 1))
        record = {"id": run_id, "owner": owner, "priority": priority, "created_at": time.time(),
                  "max_attempts": max_attempts, "plan_path": plan_path, "kind": kind, "budget_seconds": budget_seconds}
        _write_run_dir(run_dir, plan_yaml, record)
        with self._db() as db:
            db.execute(
                "INSERT INTO runs (id, owner, plan, plan_path, status, priority, created_at, max_attempts, run_dir, "
                "gpus, kind, budget_seconds) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (run_id, owner, plan_yaml, plan_path, priority, record["created_at"], max_attempts, str(run_dir),
                 gpus, kind, budget_seconds))
        self.add_event(run_id, "status", {"status": "queued"})
        return run_id

    def get(self, run_id: str) -> dict[str, Any]:
        with self._db() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return dict(row)

    def list(self, status: str | None = None, owner: str | None = None) -> list[dict[str, Any]]:
        where, values = [], []
        for column, value in (("status", status), ("owner", owner)):
            if value is not None:
                where.append(f"{column} = ?")
                values.append(value)
        query = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created_at"
        with self._db() as db:
            return [dict(r) for r in db.execute(query, values)]

    def claim(self, worker: str, orphan_after: float, free_gpus: int | None = None, total_gpus: int | None = None,
              backend: str = "local") -> dict[str, Any] | None:
        """Atomically take the next run: orphans first (running, heartbeat stale: their worker died), then the
        queue by priority and age. An orphan that used up its attempts is failed instead.

        `free_gpus`: when the head of the queue asks for more GPUs than are free, nothing is claimed; the head waits
        (strict FIFO with priority: a small run never overtakes a big one and starves it). A request is capped at
        `total_gpus`, so a run asking for 8 on a 4-GPU worker waits for 4."""
        now = time.time()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for orphan in db.execute(
                        "SELECT * FROM runs WHERE status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)",
                        (now - orphan_after,)).fetchall():
                    if orphan["attempt"] >= orphan["max_attempts"]:
                        db.execute("UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                                   (now, f"crashed {orphan['attempt']} times (last: worker stopped answering)",
                                    orphan["id"]))
                    else:
                        db.execute("UPDATE runs SET status = 'queued', worker = NULL, pid = NULL WHERE id = ?",
                                   (orphan["id"],))
                    self._event(db, orphan["id"], "status", {"status": "orphaned", "worker": orphan["worker"]})
                row = db.execute("SELECT * FROM runs WHERE status = 'queued' AND cancel_requested = 0 "
                                 "ORDER BY priority DESC, created_at LIMIT 1").fetchone()
                if row is None or (free_gpus is not None and min(row["gpus"], total_gpus or 1) > free_gpus):
                    db.execute("COMMIT")
                    return None
                db.execute("UPDATE runs SET status = 'running', worker = ?, attempt = attempt + 1, "
                           "started_at = COALESCE(started_at, ?), heartbeat_at = ?, backend = ?, external_id = NULL "
                           "WHERE id = ?", (worker, now, now, backend, row["id"]))
                self._event(db, row["id"], "status", {"status": "running", "worker": worker,
                                                      "attempt": row["attempt"] + 1})
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return self.get(row["id"])

    def set_external_id(self, run_id: str, external_id: str) -> None:
        """The id of the run in another system (a Ray job id), so a later worker can find it again."""
        with self._db() as db:
            db.execute("UPDATE runs SET external_id = ? WHERE id = ?", (external_id, run_id))

    def adopt(self, run_id: str, worker: str, orphan_after: float) -> bool:
        """Take over a running run whose worker stopped answering but whose process lives on elsewhere (a Ray
        job): only one worker wins, and the run keeps its attempt count."""
        with self._db() as db:
            changed = db.execute("UPDATE runs SET worker = ?, heartbeat_at = ? WHERE id = ? AND status = 'running' "
                                 "AND (heartbeat_at IS NULL OR heartbeat_at < ?)",
                                 (worker, time.time(), run_id, time.time() - orphan_after)).rowcount
        if changed:
            self.add_event(run_id, "status", {"status": "running", "worker": worker, "adopted": True})
        return bool(changed)

    def heartbeat(self, run_id: str, pid: int | None = None) -> None:
        with self._db() as db:
            db.execute("UPDATE runs SET heartbeat_at = ?, pid = COALESCE(?, pid) WHERE id = ?",
                       (time.time(), pid, run_id))

    def finish(self, run_id: str, status: str, error: str | None = None) -> None:
        assert status in FINAL
        # Status and its event in one transaction: a reader that sees the final status also sees the event.
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                       (status, error, time.time(), run_id))
            self._event(db, run_id, "status", {"status": status, **({"error": error} if error else {})})
            db.execute("COMMIT")

    def requeue(self, run_id: str, reason: str) -> None:
        with self._db() as db:
            db.execute("UPDATE runs SET status = 'queued', worker = NULL, pid = NULL WHERE id = ?", (run_id,))
        self.add_event(run_id, "status", {"status": "queued", "reason": reason})

    def request_cancel(self, run_id: str) -> str:
        run = self.get(run_id)
        if run["status"] in FINAL:
            return run["status"]
        with self._db() as db:
            db.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))
        if run["status"] == "queued":
            self.finish(run_id, "cancelled")
            return "cancelled"
        return "cancelling"

    def resume(self, run_id: str) -> None:
        """Queue a failed or cancelled run again; it continues from its last checkpoint."""
        run = self.get(run_id)
        if run["status"] not in ("failed", "cancelled"):
            raise ValueError(f"run {run_id} is {run['status']}; only failed or cancelled runs can be resumed")
        with self._db() as db:
            db.execute("UPDATE runs SET status = 'queued', cancel_requested = 0, error = NULL, finished_at = NULL, "
                       "attempt = 0 WHERE id = ?", (run_id,))
        self.add_event(run_id, "status", {"status": "queued", "reason": "resumed by request"})

    # ------------------------------------------------------------------ events and artifacts
    @staticmethod
    def _event(db: sqlite3.Connection, run_id: str, kind: str, data: dict[str, Any], at: float | None = None) -> None:
        check(kind, data)  # only the kinds executor.runs.events declares reach the log its readers rely on
        db.execute("INSERT INTO events (run_id, time, kind, data) VALUES (?, ?, ?, ?)",
                   (run_id, time.time() if at is None else at, kind, json.dumps(data)))

    def add_event(self, run_id: str, kind: str, data: dict[str, Any]) -> None:
        with self._db() as db:
            self._event(db, run_id, kind, data)

    def reporter(self, run_id: str, resumed: bool = False) -> Reporter:
        """What a run process (or rank 0 of a launch) reports through: the run's events, written here. A resumed
        run's reporter skips the progress its earlier attempts logged (the steps after its last checkpoint)."""
        logged = {progress_key(e["data"]) for e in self.events(run_id) if e["kind"] == "progress"} if resumed else set()
        return Reporter(lambda kind, data: self.add_event(run_id, kind, data), logged)

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM events WHERE run_id = ? AND id > ? ORDER BY id", (run_id, after))
            return [{"id": r["id"], "time": r["time"], "kind": r["kind"], "data": json.loads(r["data"])}
                    for r in rows]

    def follow(self, run_id: str, after: int = 0, interval: float = 0.5, timeout: float | None = None):
        """Yield the run's events as they are appended, until it ends: two indexed queries per interval, its
        status then its new events (the database wakes nobody, but a sleeping reader costs nothing and sees every
        event exactly once)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # The status is read before the events: the final status and its event are one transaction, so a run
            # seen ended here has all its events committed, and the read below gets the last of them.
            ended = self.get(run_id)["status"] in FINAL
            fresh = self.events(run_id, after)
            for event in fresh:
                after = event["id"]
                yield event
            if ended:
                return
            if deadline is not None and time.monotonic() > deadline:
                return
            if not fresh:
                time.sleep(interval)

    def restore(self, run: dict[str, Any], events: list[tuple[str, dict[str, Any], float]],
                artifacts: dict[str, str]) -> None:
        """Insert a run rebuilt from its directory (`recover`) with its events and artifacts, in one transaction."""
        columns = ", ".join(run)
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"INSERT INTO runs ({columns}) VALUES ({', '.join('?' for _ in run)})", list(run.values()))
                for kind, data, at in events:
                    self._event(db, run["id"], kind, data, at)
                for name, path in artifacts.items():
                    db.execute("INSERT INTO artifacts (run_id, name, path) VALUES (?, ?, ?)", (run["id"], name, path))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def add_artifact(self, run_id: str, name: str, path: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO artifacts (run_id, name, path) VALUES (?, ?, ?)", (run_id, name, path))

    def artifacts(self, run_id: str) -> dict[str, str]:
        with self._db() as db:
            return {r["name"]: r["path"] for r in db.execute("SELECT * FROM artifacts WHERE run_id = ?", (run_id,))}


def data_dir_root() -> Path:
    return data_dir() / "runs"


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (code & 0xFF) in _CORRUPT_CODES if code is not None else type(exc) is sqlite3.DatabaseError


def _create_private(path: Path) -> None:
    """The store file exists and only its owner can read it (SQLite gives its -wal and -shm the same mode)."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    _chmod(path, 0o600)


def _chmod(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except PermissionError:  # another user's file: theirs to fix, and opening it still works
        pass


def run_dirs(root: Path) -> list[Path]:
    """The directories `submit` made under `root` (named by run id); a `tunewise train --out` folder is not one."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if RUN_ID.fullmatch(p.name) and p.is_dir())


def _write_run_dir(run_dir: Path, plan_yaml: str, record: dict[str, Any]) -> None:
    run_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _chmod(run_dir.parent, 0o700)
    run_dir.mkdir(mode=0o700, exist_ok=True)
    for name, text in (("plan.yaml", plan_yaml), (RUN_RECORD, json.dumps(record))):
        fd = os.open(run_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)


def _fold_legacy_columns(db: sqlite3.Connection) -> None:
    """Move an older store's data_dir / max_steps / evaluate / eval_limit into each run's plan and drop the
    columns, in one transaction (several processes open the store at once: the first migrates, the rest see it
    done)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        present = [row["name"] for row in db.execute("PRAGMA table_info(runs)")]
        legacy = [name for name in LEGACY_COLUMNS if name in present]
        if legacy:
            rows = db.execute(f"SELECT id, plan, {', '.join(legacy)} FROM runs").fetchall()
            for row in rows:
                plan = plan_with_legacy_columns(dict(row))
                if plan != row["plan"]:
                    db.execute("UPDATE runs SET plan = ? WHERE id = ?", (plan, row["id"]))
            for name in legacy:
                db.execute(f"ALTER TABLE runs DROP COLUMN {name}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def plan_with_legacy_columns(row: dict[str, Any]) -> str:
    """The plan text of an older store's run with the values it kept beside the plan written into it (as YAML, not
    validated: a stored plan the executor refuses stays as refusable as it was)."""
    try:
        raw = yaml.safe_load(row["plan"])
    except yaml.YAMLError:
        return row["plan"]
    if not isinstance(raw, dict) or not any(row.get(name) for name in LEGACY_COLUMNS):
        return row["plan"]
    if row.get("data_dir"):
        raw["data"] = {**(raw.get("data") or {}), "path": row["data_dir"]}
    if row.get("max_steps") and isinstance(raw.get("training"), dict):
        raw["training"]["max_steps"] = row["max_steps"]
    if row.get("evaluate"):
        raw["evaluation"] = {**(raw.get("evaluation") or {}), "after_training": True,
                             "max_rows": row.get("eval_limit") or None}
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
