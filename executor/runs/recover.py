"""`tunewise runs recover`: rebuild a lost, empty or unreadable run store from the run directories.

The broken file is moved aside as `runs.sqlite.broken-<UTC time>` (with its -wal and -shm), never deleted, and a
fresh store gets one run per run directory: its plan (plan.yaml), owner, priority and creation time (run.json),
its progress (metrics.jsonl), result (result.json), evaluation headline (report.json) and artifacts. A run whose
result.json exists is `succeeded`; any other is `failed` with a note, and `tunewise runs resume ID` continues it
from its last checkpoint: nothing starts training on its own after a recovery.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from executor.paths import data_dir
from executor.runs.autostart import worker_pid
from executor.runs.child import ARTIFACTS, PILOT_ARTIFACTS, REPORT_ARTIFACTS
from executor.runs.events import Reporter
from executor.runs.store import RUN_RECORD, RunStore, StoreError, run_dirs

UNFINISHED = ("recovered from its run directory after the run store was lost; it had not finished. "
              "`tunewise runs resume {id}` continues it from its last checkpoint")


@dataclass
class Recovery:
    store: Path
    moved: list[Path] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)  # run id -> status
    skipped: dict[str, str] = field(default_factory=dict)  # run directory -> why
    # Runs from before run.json was written (an older Tunewise): they come back without owner or priority.
    unrecorded: list[str] = field(default_factory=list)


def readable(path: Path) -> bool:
    """Whether SQLite reads the whole store (quick_check) and it holds the runs table."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)  # read-only: it may be broken
        try:
            ok = db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            return ok and db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is not None
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return False


def recover(path: str | Path | None = None, *, force: bool = False, now: Callable[[], float] = time.time) -> Recovery:
    path = Path(path) if path else data_dir() / "runs.sqlite"
    root = path.parent / "runs"
    pid = worker_pid(path)
    if pid is not None:
        raise StoreError(f"a worker (pid {pid}) is using {path}: stop it before recovering the store")
    if readable(path) and not force:
        raise StoreError(f"the run store {path} is readable: nothing to recover (--force rebuilds it from the run "
                         "directories anyway, keeping the current file beside it)")
    if not path.exists() and not run_dirs(root):
        raise StoreError(f"no run store at {path} and no run directories in {root}: nothing to recover")
    report = Recovery(path, moved=_move_aside(path, time.strftime("%Y%m%d-%H%M%S", time.gmtime(now()))))
    store = RunStore(path, rebuilding=True)
    for run_dir in run_dirs(root):
        try:
            report.runs[run_dir.name] = _import(store, run_dir, now())
            if not (run_dir / RUN_RECORD).is_file():
                report.unrecorded.append(run_dir.name)
        except (OSError, ValueError, yaml.YAMLError, sqlite3.DatabaseError) as exc:
            report.skipped[str(run_dir)] = f"{type(exc).__name__}: {exc}"
    return report


def _move_aside(path: Path, stamp: str) -> list[Path]:
    moved = []
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            target = Path(f"{path}.broken-{stamp}{suffix}")
            source.rename(target)
            moved.append(target)
    return moved


def _import(store: RunStore, run_dir: Path, at: float) -> str:
    plan_text = (run_dir / "plan.yaml").read_text(encoding="utf-8")
    plan = yaml.safe_load(plan_text) or {}
    record = _json(run_dir / RUN_RECORD) or {}
    kind = record.get("kind") or "train"
    # A pilot's finished mark is its report; a training run's is result.json.
    result = _json(run_dir / ("pilot.json" if kind == "pilot" else "result.json"))
    status = "succeeded" if result is not None else "failed"
    run = {
        "id": run_dir.name, "owner": record.get("owner") or "", "plan": plan_text, "plan_path": record.get("plan_path"),
        "status": status, "priority": int(record.get("priority") or 0),
        "created_at": float(record.get("created_at") or run_dir.stat().st_mtime),
        "finished_at": (run_dir / ("pilot.json" if kind == "pilot" else "result.json")).stat().st_mtime
        if result is not None else at,
        "max_attempts": int(record.get("max_attempts") or 3), "run_dir": str(run_dir),
        "error": None if result is not None else UNFINISHED.format(id=run_dir.name),
        "gpus": max(1, int(((plan.get("hardware") or {}).get("gpu_count")) or 1)),
        "kind": kind, "budget_seconds": record.get("budget_seconds"),
    }
    events = _events(run_dir, plan, None, at) if kind == "pilot" else _events(run_dir, plan, result, at)
    if kind == "pilot" and result is not None:
        Reporter(lambda k, data: events.append((k, data, at))).pilot(result)
    events.append(("status", {"status": status, "reason": f"recovered from {run_dir}",
                              **({"error": run["error"]} if run["error"] else {})}, at))
    artifacts = {name: str(run_dir / name) for name in ARTIFACTS + REPORT_ARTIFACTS + PILOT_ARTIFACTS
                 if (run_dir / name).exists()}
    store.restore(run, events, artifacts)
    return status


def _events(run_dir: Path, plan: dict, result: dict | None, at: float) -> list[tuple[str, dict[str, Any], float]]:
    """The run's progress, result and evaluation as the run process reported them (through the same Reporter)."""
    events: list[tuple[str, dict[str, Any], float]] = []
    moment = [at]
    reporter = Reporter(lambda kind, data: events.append((kind, data, moment[0])))
    records = _metrics(run_dir / "metrics.jsonl")
    total = (plan.get("training") or {}).get("max_steps") or max((r["step"] for r in records), default=0)
    for record in records:
        moment[0] = float(record.get("time") or at)
        reporter.progress(record["step"], total, {k: v for k, v in record.items() if k != "step"})
    moment[0] = at
    if result is not None:
        reporter.result(result)
    report = _json(run_dir / "report.json")
    if report is not None:
        try:
            reporter.evaluation(report)
        except (KeyError, TypeError, AttributeError):
            pass  # a report of another shape: its file stays an artifact
    return events


def _metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the crash that lost the store
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else None
