"""One run, in its own process (isolation, clean GPU memory, cancellable): `python -m executor.runs.child ID`.

Reads the run from the store, trains (resuming from the last checkpoint on a retry), and writes progress,
metrics and the outcome to the store's event log. Dies with its worker (PR_SET_PDEATHSIG), so a worker
killed with -9 leaves an orphan the next worker resumes rather than a training nobody watches.
"""

from __future__ import annotations

import ctypes
import errno
import signal
import sys
import traceback
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the worker's heartbeat timeout still catches the orphan
        pass


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


def main(run_id: str, store_path: str | None = None) -> int:
    die_with_parent()
    import yaml

    from executor.plan import TrainingPlan
    from executor.runs.store import RunStore
    from executor.train.runner import train

    store = RunStore(store_path)
    run = store.get(run_id)
    run_dir = Path(run["run_dir"])
    resume = any((run_dir / "checkpoints").glob("checkpoint-*"))
    if resume:
        store.add_event(run_id, "message", {"text": f"resuming from the last checkpoint (attempt {run['attempt']})"})

    def progress(step: int, total: int, record: dict) -> None:
        store.add_event(run_id, "progress", {"step": step, "total": total, **{k: v for k, v in record.items()
                                                                            if v is not None}})

    try:
        plan = TrainingPlan.model_validate(yaml.safe_load(run["plan"]))
        result = train(plan, Path(run["data_dir"]) if run["data_dir"] else None, run_dir, resume=resume,
                       max_steps=run["max_steps"], progress=progress)
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded with its reason
        store.add_event(run_id, "error", {"error": explain(exc), "traceback": traceback.format_exc()[-4000:]})
        return 1
    store.add_event(run_id, "result", result)
    for name in ("adapter", "model", "merged", "loss_curve.png", "metrics.jsonl", "result.json"):
        if (run_dir / name).exists():
            store.add_artifact(run_id, name, str(run_dir / name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
