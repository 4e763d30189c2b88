"""The worker: claims runs atomically, runs each in a child process, heartbeats, cancels, recovers orphans.

`tunewise worker` runs forever; `--once` drains the queue and exits. Slots: one training at a time per GPU
(configurable); a run whose plan asks for several GPUs gets that many (capped at the machine's) and waits at
the head of the queue until they are free; a CPU-only machine runs one at a time. A run whose child crashes is
retried from its last checkpoint until it has used `max_attempts`; a run whose worker died (no heartbeat for
`orphan_after` seconds) is picked up by the next worker the same way.

Where the child runs is the launcher's business: a local process group (default), or a Ray job on a cluster
when TUNEWISE_RAY_ADDRESS is set (executor.runs.ray_backend). The run store records the state either way.

Lazy imports: torch and the project modules that pull them in are imported inside the functions that use them, so
importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from executor.runs.events import attempt_error
from executor.runs.store import RunStore, StoreError

PRIVATE_UMASK = 0o077  # run logs, run directories and everything the runs write: their owner's alone


def visible_gpus() -> list[int]:
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except ImportError:
        return []


class Launcher(Protocol):
    name: str

    def start(self, run: dict, env: dict[str, str]) -> Any: ...
    def poll(self, handle: Any) -> int | None: ...  # None while running, else the exit code
    def stop(self, handle: Any) -> None: ...


class LocalLauncher:
    """The child as a local process in its own session (its process group is what a cancel kills)."""

    name = "local"

    def __init__(self, store: RunStore):
        self.store = store

    def start(self, run: dict, env: dict[str, str]) -> subprocess.Popen:
        log_path = self.store.path.parent / f"run-{run['id']}.log"
        with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "executor.runs.child", run["id"], str(self.store.path)],
                                       env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.store.heartbeat(run["id"], process.pid)
        return process

    def poll(self, handle: subprocess.Popen) -> int | None:
        return handle.poll()

    def stop(self, handle: subprocess.Popen) -> None:
        os.killpg(handle.pid, signal.SIGTERM)
        try:
            handle.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(handle.pid, signal.SIGKILL)
            handle.wait()


@dataclass
class Active:
    run: dict
    handle: Any
    gpus: list[int]


@dataclass
class Worker:
    store: RunStore
    slots: int | None = None
    heartbeat_seconds: float = 2.0
    orphan_after: float = 30.0
    gpus: list[int] | None = None
    launcher: Launcher | None = None
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    active: dict[str, Active] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gpus is None:
            self.gpus = visible_gpus()
        if self.slots is None:
            self.slots = max(1, len(self.gpus))
        if self.launcher is None:
            self.launcher = LocalLauncher(self.store)

    def _free_gpus(self) -> list[int]:
        used = {g for a in self.active.values() for g in a.gpus}
        return [g for g in self.gpus if g not in used]

    def _spawn(self, run: dict) -> None:
        env = dict(os.environ)
        share: list[int] = []
        if self.gpus:
            share = self._free_gpus()[:min(run["gpus"], len(self.gpus))]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, share))
        handle = self.launcher.start(run, env)
        self.active[run["id"]] = Active(run, handle, share)

    def _check(self, run_id: str, active: Active) -> None:
        code = self.launcher.poll(active.handle)
        current = self.store.get(run_id)
        if code is None:
            if current["cancel_requested"]:
                self.launcher.stop(active.handle)
                self.store.finish(run_id, "cancelled")
                del self.active[run_id]
            else:
                self.store.heartbeat(run_id)
            return
        del self.active[run_id]
        if code == 0:
            self.store.finish(run_id, "succeeded")
            return
        error = attempt_error(self.store.events(run_id))
        if error:  # the child reported why: a plan or data problem does not get better by retrying
            self.store.finish(run_id, "failed", error)
        elif current["attempt"] >= current["max_attempts"]:
            self.store.finish(run_id, "failed", f"crashed {current['attempt']} times (last exit code {code})")
        else:
            self.store.requeue(run_id, f"the run process died (exit code {code}); resuming from its last checkpoint")

    def _adopt_orphans(self) -> None:
        """Runs whose worker died but whose process outlived it (a Ray job) are watched again, not restarted."""
        adopt = getattr(self.launcher, "adopt", None)
        if adopt is None:
            return
        stale = time.time() - self.orphan_after
        for run in self.store.list(status="running"):
            if (run["id"] in self.active or run["backend"] != self.launcher.name or not run["external_id"]
                    or (run["heartbeat_at"] or 0) >= stale):
                continue
            handle = adopt(run)
            if handle is not None and self.store.adopt(run["id"], self.name, self.orphan_after):
                self.active[run["id"]] = Active(run, handle, [])

    def tick(self, claim: bool = True) -> None:
        for run_id, active in list(self.active.items()):
            self._check(run_id, active)
        self._adopt_orphans()
        while claim and len(self.active) < self.slots:
            free = len(self._free_gpus()) if self.gpus else None
            run = self.store.claim(self.name, self.orphan_after, free_gpus=free,
                                   total_gpus=len(self.gpus) if self.gpus else None, backend=self.launcher.name)
            if run is None:
                break
            self._spawn(run)

    def run(self, once: bool = False, timeout: float | None = None,
            until: Callable[[], bool] | None = None) -> None:
        """Serve the queue. `once`: return when nothing is running or queued. `until`: once it says so, take no
        new run and return when the running ones have ended (the chat's worker after the chat has gone)."""
        started = time.monotonic()
        while True:
            winding_down = until is not None and until()
            self.tick(claim=not winding_down)
            if winding_down and not self.active:
                return
            if once and not self.active and not self.store.list(status="queued"):
                return
            if timeout is not None and time.monotonic() - started > timeout:
                raise TimeoutError(f"worker still busy after {timeout} s")
            time.sleep(self.heartbeat_seconds)


def parent_gone(pid: int | None) -> Callable[[], bool] | None:
    """Whether the process that started this worker has ended: this worker was handed to init (or a subreaper),
    so its parent pid changed (a check on the pid alone could be fooled by a reused pid)."""
    if pid is None:
        return None
    return lambda: os.getppid() != pid


def make_launcher(store: RunStore):
    """Ray when TUNEWISE_RAY_ADDRESS is set, local processes otherwise."""
    address = os.environ.get("TUNEWISE_RAY_ADDRESS")
    if address:
        from executor.runs.ray_backend import RayLauncher

        return RayLauncher(store, address)
    return LocalLauncher(store)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tunewise worker")
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--slots", type=int, default=None)
    parser.add_argument("--orphan-after", type=float, default=30.0)
    parser.add_argument("--heartbeat", type=float, default=2.0)
    parser.add_argument("--store", default=None)
    parser.add_argument("--with-parent", type=int, default=None, metavar="PID",
                        help="Started by the chat (process PID): when it has gone, finish the running runs and exit.")
    args = parser.parse_args(argv)
    from executor.runs.autostart import hold_worker_lock

    os.umask(PRIVATE_UMASK)  # inherited by every run process it starts
    hold_worker_lock(args.store)  # the chat sees this worker and does not start another beside it
    try:
        store = RunStore(args.store)
        launcher = make_launcher(store)
        # On Ray the cluster schedules GPUs: the worker only bounds how many runs it keeps in flight.
        gpus = [] if launcher.name == "ray" else None
        Worker(store, slots=args.slots or (4 if launcher.name == "ray" else None), heartbeat_seconds=args.heartbeat,
               orphan_after=args.orphan_after, gpus=gpus, launcher=launcher).run(once=args.once, until=parent_gone(
                   args.with_parent))
    except StoreError as exc:
        print(f"tunewise worker: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
