"""Run events: the one declared contract for what a run writes to its log and what the chat and `runs show` read.

    kind              payload (keys marked ? may be absent)                      written by
    status            status, worker?, attempt?, error?, reason?, adopted?       the store (queue, claim, finish)
    stage             stage (train | evaluate | pilot), processes?, mode?, why? the run process
    message           text                                                       the run process
    progress          step, total, and the Trainer's numbers (loss?, ...)        the run process, or rank 0
    result            result.json's fields                                       the run process, or rank 0
    error             error (a reason a person can act on), traceback            the run process, or rank 0
    eval_progress     system, done, total                                        the run process
    evaluation        headline_metric, n, task, systems                          the run process
    evaluation_error  error                                                      the run process
    pilot             verdict, reason, headline_metric, n, systems, predicted?  the run process (a pilot run)

A `Reporter` writes them through whatever sink it is given (the run store, in practice), so the trainer and a
rank's entry point report without knowing where events go; `read_event` turns a stored row back into a `RunEvent`,
refusing kinds this contract does not declare.
"""

from __future__ import annotations

import errno
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Each kind with the payload keys it must carry.
KINDS: dict[str, tuple[str, ...]] = {
    "status": ("status",),
    "stage": ("stage",),
    "message": ("text",),
    "progress": ("step", "total"),
    "result": (),
    "error": ("error",),
    "eval_progress": ("system", "done", "total"),
    "evaluation": ("headline_metric", "n", "task", "systems"),
    "evaluation_error": ("error",),
    "pilot": ("verdict", "reason", "headline_metric", "n", "systems"),
}


class EventError(ValueError):
    """An event outside the contract: an unknown kind or a payload without its required keys."""


@dataclass(frozen=True)
class RunEvent:
    kind: str
    data: dict[str, Any]
    id: int = 0          # the store's sequence number (0 before it is stored)
    time: float = 0.0

    def __post_init__(self) -> None:
        check(self.kind, self.data)


def check(kind: str, data: dict[str, Any]) -> None:
    if kind not in KINDS:
        raise EventError(f"unknown run event kind {kind!r}; the kinds are: {', '.join(KINDS)}")
    if not isinstance(data, dict):
        raise EventError(f"{kind} event: the payload is a mapping, got {type(data).__name__}")
    missing = [key for key in KINDS[kind] if key not in data]
    if missing:
        raise EventError(f"{kind} event: missing {', '.join(missing)} (got: {', '.join(data) or 'nothing'})")


def read_event(row: dict[str, Any]) -> RunEvent:
    """A stored event (`RunStore.events` rows: id, time, kind, data) as a RunEvent."""
    return RunEvent(row["kind"], row["data"], row.get("id", 0), row.get("time", 0.0))


def attempt_error(rows: list[dict[str, Any]]) -> str | None:
    """The reason the current attempt's run process reported (its last `error` event after the run was last claimed,
    `status: running`), or None: an error of an earlier attempt, resumed since, is not this attempt's."""
    error = None
    for event in map(read_event, rows):
        if event.kind == "status" and event.data["status"] == "running":
            error = None
        elif event.kind == "error":
            error = event.data["error"]
    return error


def progress_key(data: dict[str, Any]) -> tuple[Any, int, str]:
    """A progress event's stage (steps restart in each stage of a multi-stage technique), step, and what it logs (a
    training loss, an evaluation, a summary): a resumed run repeats the logs between its last checkpoint and the
    crash, and one of each is kept."""
    what = "eval" if "eval_loss" in data else "train" if "loss" in data else "other"
    return data.get("stage"), int(data["step"]), what


def explain(exc: BaseException) -> str:
    """A failure message a person can act on (out of memory and full disks get their own)."""
    name = type(exc).__name__
    if "OutOfMemory" in name or "out of memory" in str(exc).lower():
        return (f"out of memory: {exc}. Try a smaller per_device_batch_size (with more gradient accumulation), "
                "technique qlora, gradient_checkpointing: on, or a shorter max_seq_length")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"disk full while writing {getattr(exc, 'filename', '') or 'the run directory'}: free space or move " \
               "TUNEWISE_HOME to a bigger disk, then `tunewise runs resume ID`"
    return f"{name}: {exc}"


@dataclass
class Reporter:
    """Writes a run's events through `write(kind, data)`; every event is checked against the contract first."""

    write: Callable[[str, dict[str, Any]], None]

    # Progress already logged (progress_key) by an earlier attempt of a resumed run: not sent again.
    logged: set[tuple[Any, int, str]] = field(default_factory=set)

    def _send(self, kind: str, data: dict[str, Any]) -> None:
        check(kind, data)
        if kind == "progress" and progress_key(data) in self.logged:
            return
        self.write(kind, data)

    def message(self, text: str) -> None:
        self._send("message", {"text": text})

    def stage(self, stage: str, **info: Any) -> None:
        self._send("stage", {"stage": stage, **info})

    def progress(self, step: int, total: int, record: dict[str, Any]) -> None:
        """The trainer's progress callback: one Trainer log (absent numbers left out)."""
        self._send("progress", {"step": step, "total": total, **{k: v for k, v in record.items() if v is not None}})

    def result(self, result: dict[str, Any]) -> None:
        self._send("result", result)

    def failure(self, exc: BaseException) -> None:
        """Call from an `except` block: the traceback is the one being handled."""
        self._send("error", {"error": explain(exc), "traceback": traceback.format_exc()[-4000:]})

    def eval_progress(self, system: str, done: int, total: int) -> None:
        self._send("eval_progress", {"system": system, "done": done, "total": total})

    def evaluation(self, report: dict[str, Any]) -> None:
        """The headline of an evaluation report: each system's value of the headline metric."""
        headline = report["headline_metric"]
        systems = {name: (metrics.get(headline) or {}).get("value") for name, metrics in report["systems"].items()}
        self._send("evaluation", {"headline_metric": headline, "n": report["n"], "task": report["task"],
                                  "systems": systems})

    def pilot(self, report: dict[str, Any]) -> None:
        """A pilot's outcome: its verdict with the reason, each system's headline value, the predicted full run."""
        headline = report["headline_metric"]
        systems = {name: (metrics.get(headline) or {}).get("value") for name, metrics in report["systems"].items()}
        fit = (report.get("curve") or {}).get("fit")
        self._send("pilot", {"verdict": report["verdict"], "reason": report["reason"], "headline_metric": headline,
                             "n": report["n"], "systems": systems,
                             **({"predicted": {k: fit[k] for k in ("predicted", "ci_low", "ci_high", "target")}}
                                if fit else {})})

    def evaluation_failed(self, exc: BaseException) -> None:
        self._send("evaluation_error", {"error": explain(exc)})
