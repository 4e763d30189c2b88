"""The run events contract (executor/runs/events.py): what the run process writes is what the readers get back."""

from __future__ import annotations

import errno

import pytest

from executor.runs.events import KINDS, EventError, Reporter, RunEvent, explain, read_event
from executor.runs.store import RunStore


def test_reported_events_round_trip_through_the_store(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.submit("approach: prompting\n", runs_root=tmp_path / "runs")
    report_to = store.reporter(run_id)
    report_to.stage("train", processes=1, mode="single", why="no GPU")
    report_to.message("resuming from the last checkpoint")
    report_to.progress(3, 10, {"loss": 1.5, "eval_loss": None, "epoch": 0.3})
    report_to.result({"steps": 10, "final_loss": 0.9})
    report_to.eval_progress("tuned", 2, 4)
    report_to.evaluation({"headline_metric": "accuracy", "n": 4, "task": "classification",
                          "systems": {"tuned": {"accuracy": {"value": 0.75}}, "base": {}}})
    try:
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x")
    except OSError as exc:
        report_to.failure(exc)
        report_to.evaluation_failed(exc)
    report_to.pilot({"verdict": "fine_tuning", "reason": "tuned above few-shot", "headline_metric": "accuracy", "n": 50,
                     "systems": {"few_shot": {"accuracy": {"value": 0.1}}, "tuned": {"accuracy": {"value": 0.6}}},
                     "curve": {"fit": {"predicted": 0.8, "ci_low": 0.7, "ci_high": 0.85, "target": 900,
                                       "alpha": 0.4}}})
    events = [read_event(row) for row in store.events(run_id)]
    assert all(isinstance(e, RunEvent) and e.id and e.time for e in events)
    assert [e.kind for e in events] == ["status", "stage", "message", "progress", "result", "eval_progress",
                                        "evaluation", "error", "evaluation_error", "pilot"]
    assert set(e.kind for e in events) == set(KINDS)  # every declared kind has a writer
    by_kind = {e.kind: e.data for e in events}
    assert by_kind["progress"] == {"step": 3, "total": 10, "loss": 1.5, "epoch": 0.3}  # absent numbers left out
    assert by_kind["evaluation"]["systems"] == {"tuned": 0.75, "base": None}
    assert "disk full" in by_kind["error"]["error"] and "OSError" in by_kind["error"]["traceback"]
    assert by_kind["pilot"] == {"verdict": "fine_tuning", "reason": "tuned above few-shot", "headline_metric":
                                "accuracy", "n": 50, "systems": {"few_shot": 0.1, "tuned": 0.6},
                                "predicted": {"predicted": 0.8, "ci_low": 0.7, "ci_high": 0.85, "target": 900}}


def test_unknown_kinds_and_incomplete_payloads_are_refused(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.submit("approach: prompting\n", runs_root=tmp_path / "runs")
    with pytest.raises(EventError, match=r"unknown run event kind 'progres'; the kinds are: status, stage, message"):
        store.add_event(run_id, "progres", {"step": 1, "total": 2})
    with pytest.raises(EventError, match=r"progress event: missing total \(got: step\)"):
        Reporter(lambda kind, data: None)._send("progress", {"step": 1})
    with pytest.raises(EventError, match="unknown run event kind 'chat'"):
        read_event({"id": 1, "time": 0.0, "kind": "chat", "data": {}})
    assert [e["kind"] for e in store.events(run_id)] == ["status"]  # nothing refused was written


def test_failures_are_explained():
    oom = explain(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert "out of memory" in oom and "per_device_batch_size" in oom and "qlora" in oom
    full = explain(OSError(errno.ENOSPC, "No space left on device", "/data/run/checkpoints"))
    assert "disk full" in full and "/data/run/checkpoints" in full and "tunewise runs resume" in full
    assert explain(ValueError("bad")) == "ValueError: bad"
