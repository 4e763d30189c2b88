"""The worker: claims runs atomically, runs each in a child process, heartbeats, cancels, recovers orphans.

`tunewise worker` runs forever; `--once` drains the queue and exits. Slots: one training at a time per GPU
(configurable); a CPU-only machine runs one at a time. A run whose child crashes is retried from its last
checkpoint until it has used `max_attempts`; a run whose worker died (no heartbeat for `orphan_after`
seconds) is picked up by the next worker the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from executor.runs.store import RunStore


def default_slots() -> int:
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except ImportError:
        return 1


@dataclass
class Active:
    run: dict
    process: subprocess.Popen
    gpu: int | None


@dataclass
class Worker:
    store: RunStore
    slots: int = 1
    heartbeat_seconds: float = 2.0
    orphan_after: float = 30.0
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    active: dict[str, Active] = field(default_factory=dict)

    def _spawn(self, run: dict) -> None:
        used = {a.gpu for a in self.active.values()}
        gpu = next((g for g in range(self.slots) if g not in used), None) if self.slots > 1 else None
        env = dict(os.environ)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        log = open(os.path.join(os.path.dirname(str(self.store.path)), f"run-{run['id']}.log"), "ab")  # noqa: SIM115
        process = subprocess.Popen([sys.executable, "-m", "executor.runs.child", run["id"], str(self.store.path)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.store.heartbeat(run["id"], process.pid)
        self.active[run["id"]] = Active(run, process, gpu)

    def _check(self, run_id: str, active: Active) -> None:
        code = active.process.poll()
        current = self.store.get(run_id)
        if code is None:
            if current["cancel_requested"]:
                os.killpg(active.process.pid, signal.SIGTERM)
                try:
                    active.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(active.process.pid, signal.SIGKILL)
                    active.process.wait()
                self.store.finish(run_id, "cancelled")
                del self.active[run_id]
            else:
                self.store.heartbeat(run_id)
            return
        del self.active[run_id]
        if code == 0:
            self.store.finish(run_id, "succeeded")
            return
        errors = [e for e in self.store.events(run_id) if e["kind"] == "error"]
        if errors:  # the child reported why: a plan or data problem does not get better by retrying
            self.store.finish(run_id, "failed", errors[-1]["data"]["error"])
        elif current["attempt"] >= current["max_attempts"]:
            self.store.finish(run_id, "failed", f"crashed {current['attempt']} times (last exit code {code})")
        else:
            self.store.requeue(run_id, f"the run process died (exit code {code}); resuming from its last checkpoint")

    def tick(self) -> None:
        for run_id, active in list(self.active.items()):
            self._check(run_id, active)
        while len(self.active) < self.slots:
            run = self.store.claim(self.name, self.orphan_after)
            if run is None:
                break
            self._spawn(run)

    def run(self, once: bool = False, timeout: float | None = None) -> None:
        started = time.monotonic()
        while True:
            self.tick()
            if once and not self.active:
                return
            if timeout is not None and time.monotonic() - started > timeout:
                raise TimeoutError(f"worker still busy after {timeout} s")
            time.sleep(self.heartbeat_seconds)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="tunewise worker")
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--slots", type=int, default=None)
    parser.add_argument("--orphan-after", type=float, default=30.0)
    parser.add_argument("--heartbeat", type=float, default=2.0)
    parser.add_argument("--store", default=None)
    args = parser.parse_args(argv)
    Worker(RunStore(args.store), slots=args.slots or default_slots(), heartbeat_seconds=args.heartbeat,
           orphan_after=args.orphan_after).run(once=args.once)


if __name__ == "__main__":
    main()
