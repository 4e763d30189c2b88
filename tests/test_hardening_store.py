"""Issue #17, the run store: a corrupt, empty or missing store says so and names the way out; `runs recover`
rebuilds it from the run directories; run directories and the store are private; a resumed run logs each step
once; the worker reads the current attempt's typed error events."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from executor.runs.events import attempt_error
from executor.runs.recover import recover
from executor.runs.store import RunStore, StoreError
from executor.runs.worker import Worker

PLAN = "approach: fine_tuning\ntechnique: lora\nhardware:\n  gpu_count: 2\ntraining:\n  max_steps: 4\n"
FIXED_NOW = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    return tmp_path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cli(*args):
    return runner.invoke(app, list(args))


def test_a_corrupt_store_names_the_file_and_the_recovery(home):
    store = RunStore()
    store.submit(PLAN)
    store.path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as err:
        RunStore()
    message = str(err.value)
    assert message.startswith(f"the run store {store.path} is unreadable (file is not a database). ")
    assert "`tunewise runs recover` moves it aside (to runs.sqlite.broken-<time>, never deleted)" in message
    for command in (["runs", "list"], ["runs", "show", "x"], ["runs", "logs", "x"], ["runs", "cancel", "x"]):
        result = cli(*command)
        assert result.exit_code == 2, command
        assert result.output.strip() == f"error: {message}"  # one line, no traceback
    import subprocess
    import sys

    worker = subprocess.run([sys.executable, "-m", "executor.runs.worker", "--store", str(store.path), "--once"],
                            capture_output=True, text=True, timeout=120)
    assert worker.returncode == 2 and worker.stderr == f"tunewise worker: error: {message}\n"


def test_a_store_corrupt_past_its_header_fails_each_use_with_the_same_explanation(home):
    store = RunStore()
    run_id = store.submit(PLAN)
    reporter = store.reporter(run_id)
    for step in range(400):
        reporter.message(f"line {step} " + "x" * 200)
    db = sqlite3.connect(store.path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(store.path.read_bytes())
    page = 4096
    data[2 * page:] = b"\xff" * (len(data) - 2 * page)  # the schema page survives, the event pages do not
    store.path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"is unreadable \(database disk image is malformed\)"):
        RunStore().events(run_id)
    result = cli("runs", "logs", run_id)
    assert result.exit_code == 2 and result.output.startswith(f"error: the run store {store.path} is unreadable")


def test_an_empty_or_missing_store_beside_run_directories_is_not_an_empty_history(home):
    store = RunStore()
    store.submit(PLAN)
    store.submit(PLAN)
    (home / "runs" / "my-plan").mkdir()  # a `tunewise train` folder: not a queued run
    for suffix in ("-wal", "-shm"):
        Path(f"{store.path}{suffix}").unlink(missing_ok=True)
    store.path.write_bytes(b"")
    with pytest.raises(StoreError) as err:
        RunStore()
    assert str(err.value) == (f"the run store {store.path} is empty (0 bytes), but 2 run directories remain in "
                              f"{home / 'runs'}: the run history was lost. `tunewise runs recover` rebuilds the "
                              "store from them (the empty file is kept beside it)")
    store.path.unlink()
    with pytest.raises(StoreError, match="is missing, but 2 run directories remain"):
        RunStore()
    assert cli("runs", "list").exit_code == 2
    assert not store.path.exists()  # the refusal created nothing


def test_a_fresh_store_without_run_directories_opens(home):
    (home / "runs").mkdir()
    (home / "runs" / "my-plan").mkdir()
    assert RunStore().list() == []
    for command in ("cancel", "resume", "show"):  # an unknown id: one line, no traceback
        result = cli("runs", command, "20260101-000000-abcdef")
        assert result.exit_code == 2 and result.output == ("error: no run '20260101-000000-abcdef' (see `tunewise "
                                                           "runs list`)\n"), command


def fake_outputs(run_dir: Path, *, finished: bool) -> None:
    """What a run process leaves behind: its metrics log, and when training finished its result and report."""
    records = [{"step": 1, "loss": 2.5, "time": 100.0}, {"step": 2, "loss": 2.0, "time": 101.0},
               {"step": 2, "eval_loss": 2.2, "time": 102.0}]
    text = "".join(json.dumps(r) + "\n" for r in records)
    (run_dir / "metrics.jsonl").write_text(text + ('{"step": 3, "lo' if not finished else ""))  # cut short
    if finished:
        (run_dir / "result.json").write_text(json.dumps({"steps": 2, "final_loss": 2.0}))
        (run_dir / "report.json").write_text(json.dumps({
            "headline_metric": "exact_match", "n": 5, "task": "exact_match",
            "systems": {"tuned": {"exact_match": {"value": 0.6}}, "base": {"exact_match": {"value": 0.2}}}}))
    else:
        (run_dir / "checkpoints" / "checkpoint-2").mkdir(parents=True)


def test_recover_rebuilds_the_store_from_the_run_directories(home):
    store = RunStore()
    done = store.submit(PLAN, owner="alice", priority=3)
    crashed = store.submit(PLAN, owner="bob")
    waiting = store.submit(PLAN)
    fake_outputs(Path(store.get(done)["run_dir"]), finished=True)
    fake_outputs(Path(store.get(crashed)["run_dir"]), finished=False)
    created = store.get(done)["created_at"]
    broken = b"garbage" * 1000
    store.path.write_bytes(broken)

    report = recover(now=lambda: FIXED_NOW)
    kept = home / "runs.sqlite.broken-20260528-202640"
    assert kept in report.moved and kept.read_bytes() == broken  # moved aside, never deleted
    assert report.runs == {done: "succeeded", crashed: "failed", waiting: "failed"} and report.skipped == {}
    assert report.unrecorded == []
    fresh = RunStore()
    run = fresh.get(done)
    assert (run["status"], run["owner"], run["priority"], run["gpus"], run["plan"]) == (
        "succeeded", "alice", 3, 2, PLAN)
    assert run["created_at"] == created
    assert fresh.get(crashed)["owner"] == "bob"
    assert fresh.get(crashed)["error"].endswith(f"`tunewise runs resume {crashed}` continues it from its last "
                                                "checkpoint")
    events = fresh.events(done)
    assert [(e["kind"], e["data"].get("step")) for e in events] == [
        ("progress", 1), ("progress", 2), ("progress", 2), ("result", None), ("evaluation", None), ("status", None)]
    assert events[0]["data"] == {"step": 1, "total": 4, "loss": 2.5, "time": 100.0} and events[0]["time"] == 100.0
    assert events[4]["data"]["systems"] == {"tuned": 0.6, "base": 0.2}
    assert set(fresh.artifacts(done)) == {"metrics.jsonl", "result.json", "report.json"}
    assert [e["kind"] for e in fresh.events(crashed)] == ["progress", "progress", "progress", "status"]
    fresh.resume(crashed)  # the way on for a run that had not finished
    assert fresh.get(crashed)["status"] == "queued"


def test_recover_refuses_a_readable_store_unless_forced(home):
    store = RunStore()
    run_id = store.submit(PLAN)
    with pytest.raises(StoreError, match="is readable: nothing to recover"):
        recover()
    report = recover(force=True, now=lambda: FIXED_NOW)
    assert report.runs == {run_id: "failed"} and (home / "runs.sqlite.broken-20260528-202640").is_file()
    (home / "runs.sqlite").unlink()
    for leftover in home.glob("runs.sqlite-*"):
        leftover.unlink()
    for run_dir in (home / "runs").iterdir():
        for child in run_dir.iterdir():
            child.unlink()
        run_dir.rmdir()
    with pytest.raises(StoreError, match="nothing to recover"):
        recover()


def test_the_recover_command(home):
    store = RunStore()
    run_id = store.submit(PLAN)
    fake_outputs(Path(store.get(run_id)["run_dir"]), finished=True)
    older = store.submit(PLAN, owner="carol")
    (Path(store.get(older)["run_dir"]) / "run.json").unlink()  # as an older Tunewise left its run directories
    store.path.write_bytes(b"")
    result = cli("runs", "recover")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"kept the old store as {home}/runs.sqlite.broken-")
    assert lines[1:] == [f"recovered 2 runs into {home / 'runs.sqlite'} (1 failed, 1 succeeded)",
                         f"1 runs from before run.json came back without an owner (chat users no longer see them): "
                         f"{older}",
                         "runs that had not finished are marked failed: `tunewise runs resume ID` continues one"]
    assert cli("runs", "list").output.startswith(f"{run_id}  succeeded")


def test_the_store_and_run_directories_are_private(home):
    store = RunStore()
    run_id = store.submit(PLAN)
    run_dir = Path(store.get(run_id)["run_dir"])
    assert mode(store.path) == 0o600 and mode(home / "runs") == 0o700 and mode(run_dir) == 0o700
    assert mode(run_dir / "plan.yaml") == 0o600 and mode(run_dir / "run.json") == 0o600
    for suffix in ("-wal", "-shm"):
        if Path(f"{store.path}{suffix}").exists():
            assert mode(Path(f"{store.path}{suffix}")) == 0o600
    os.chmod(store.path, 0o644)  # a store written by an older Tunewise
    RunStore()
    assert mode(store.path) == 0o600


def test_the_run_process_writes_privately(home, monkeypatch):
    from executor.runs import child

    store = RunStore()
    run_id = store.submit("approach: nonsense\n")  # refused by the plan check: the run fails fast
    run_dir = Path(store.get(run_id)["run_dir"])
    os.chmod(run_dir, 0o755)
    monkeypatch.setattr(child, "die_with_parent", lambda *a: None)  # pytest is no run process
    before = os.umask(0o022)
    try:
        assert child.main(run_id, str(store.path)) == 1
        assert os.umask(0o022) == 0o077
    finally:
        os.umask(before)
    assert mode(run_dir) == 0o700
    assert store.events(run_id)[-1]["kind"] == "error"


def test_a_resumed_run_logs_each_step_once(home):
    store = RunStore()
    run_id = store.submit(PLAN)
    first = store.reporter(run_id)
    for step in (1, 2, 3):
        first.progress(step, 4, {"loss": 1.0 / step})
    first.progress(2, 4, {"eval_loss": 0.9})
    # The crash came after step 3; the last checkpoint was step 2, so steps 3 is trained and logged again.
    resumed = store.reporter(run_id, resumed=True)
    resumed.progress(3, 4, {"loss": 0.33})
    resumed.progress(3, 4, {"eval_loss": 0.8})  # not logged before: kept
    resumed.progress(4, 4, {"loss": 0.25})
    resumed.progress(1, 4, {"loss": 0.1, "stage": "ppo"})  # a later stage's steps start again at 1
    progress = [(e["data"]["step"], e["data"].get("stage"), "eval_loss" in e["data"])
                for e in store.events(run_id) if e["kind"] == "progress"]
    assert progress == [(1, None, False), (2, None, False), (3, None, False), (2, None, True), (3, None, True),
                        (4, None, False), (1, "ppo", False)]
    again = store.reporter(run_id)  # not a resume: a fresh start reports everything
    again.progress(1, 4, {"loss": 3.0})
    assert sum(e["kind"] == "progress" for e in store.events(run_id)) == 8


def test_attempt_error_reads_only_the_current_attempt():
    def status(value):
        return {"kind": "status", "data": {"status": value}}

    def error(text):
        return {"kind": "error", "data": {"error": text, "traceback": ""}}

    assert attempt_error([status("queued"), status("running"), error("bad plan")]) == "bad plan"
    assert attempt_error([status("running"), error("out of memory"), status("failed"), status("queued"),
                          status("running")]) is None
    assert attempt_error([{"kind": "message", "data": {"text": "error: not an error event"}}]) is None


class ExitsWith:
    """A launcher whose run process has already exited with `code`."""

    name = "local"

    def __init__(self, code: int):
        self.code = code

    def start(self, run, env):
        return object()

    def poll(self, handle):
        return self.code

    def stop(self, handle):
        pass


def test_a_crash_after_a_resumed_failure_is_retried_not_failed_with_the_old_error(home):
    store = RunStore()
    run_id = store.submit(PLAN)
    worker = Worker(store, gpus=[], slots=1, launcher=ExitsWith(1))
    worker.tick()  # claimed; its process reports an error and exits 1
    store.reporter(run_id).failure(ValueError("the data folder is empty"))
    worker.tick()
    assert store.get(run_id)["status"] == "failed" and store.get(run_id)["error"].endswith("the data folder is empty")
    store.resume(run_id)
    worker.active.clear()
    worker.tick()  # claimed again; this time the process dies without a word (killed, say)
    worker.tick()  # requeued (and claimed once more), not failed with attempt 1's reason
    statuses = [e["data"] for e in store.events(run_id) if e["kind"] == "status"]
    assert statuses[-2] == {"status": "queued", "reason": "the run process died (exit code 1); resuming from its "
                                                          "last checkpoint"}
    assert store.get(run_id)["status"] == "running" and store.get(run_id)["error"] is None


def test_follow_reads_the_final_events_of_a_run_that_ends_between_two_reads(tmp_path):
    """The race the full suite once hit: the follower read no new events, then the run finished (status and its
    event in one transaction), then the follower saw the final status. It stopped without the status event."""
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.submit("approach: prompting\n", runs_root=tmp_path / "runs")
    read = store.events
    calls = []

    def events_then_finish(rid, after=0):
        found = read(rid, after)
        calls.append(after)
        if len(calls) == 2:  # the follower's second read comes back empty; the run ends right after it
            store.finish(rid, "succeeded")
        return found

    store.events = events_then_finish
    seen = list(store.follow(run_id, interval=0.01, timeout=5))
    assert [(e["kind"], e["data"]["status"]) for e in seen] == [("status", "queued"), ("status", "succeeded")]
