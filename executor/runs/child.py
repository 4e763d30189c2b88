"""One run, in its own process (isolation, clean GPU memory, cancellable): `python -m executor.runs.child ID`.

Reads the run's plan from the store (the plan is the whole run), trains (resuming from the last checkpoint on a
retry), evaluates when the plan asks for it (evaluation.after_training), or for a `pilot` run measures the plan's
candidates on a sample of its data (executor/pilot), and writes progress, metrics and the
outcome to the store's event log. Several GPUs given to the run (CUDA_VISIBLE_DEVICES, set by the worker) mean a
multi-process launch through accelerate (DDP or FSDP, see executor.train.distributed). Dies with its worker
(PR_SET_PDEATHSIG), so a worker killed with -9 leaves an
orphan the next worker resumes rather than a training nobody watches.

Lazy imports: torch and the project modules that pull them in are imported inside the functions that use them, so
importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1
ARTIFACTS = ("adapter", "model", "merged", "loss_curve.png", "metrics.jsonl", "result.json")
REPORT_ARTIFACTS = ("report.json", "report.md", "eval_comparison.png", "eval_examples.jsonl")
PILOT_ARTIFACTS = ("pilot.json", "pilot.md", "pilot.png")


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except OSError:  # not Linux: the worker's heartbeat timeout still catches the orphan
        pass


def _launcher_dies_with_us() -> None:
    # The launcher is torchrun's agent: SIGTERM (not SIGKILL) lets it stop its rank processes too, so a run
    # process killed with its worker leaves no ranks training behind it while the next worker resumes the run.
    die_with_parent(signal.SIGTERM)


def visible_devices() -> tuple[int, float | None]:
    """GPUs this process may use (the worker narrowed CUDA_VISIBLE_DEVICES to the run's share) and the
    memory of one. TUNEWISE_CPU_PROCESSES=N gives a CPU-only machine N gloo processes per run."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count(), torch.cuda.get_device_properties(0).total_memory / 1e9
    return int(os.environ.get("TUNEWISE_CPU_PROCESSES", "0")), None


def _train_distributed(store, run: dict, plan, launch, run_dir: Path, resume: bool) -> bool:
    from executor.plan import dump_plan
    from executor.train.distributed import free_port, launch_command

    # The ranks read the run directory's plan.yaml, the same file a single-process run leaves there.
    plan_file = dump_plan(plan, run_dir / "plan.yaml")
    # Its ranks start in executor.runs.rank, where rank 0 gets this run's reporter.
    command = launch_command(plan_file, run_dir, launch.nproc, resume=resume, port=free_port(), mode=launch.mode,
                             module="executor.runs.rank", extra=["--run-id", run["id"], "--store", str(store.path)])
    # The launched processes share this one's process group, so a cancel (killpg) reaches them all.
    return subprocess.run(command, check=False, preexec_fn=_launcher_dies_with_us).returncode == 0


def _evaluate(store, report_to, run: dict, plan, run_dir: Path) -> None:
    from executor.evaluate.runner import evaluate

    report_to.stage("evaluate")
    try:
        report = evaluate(run_dir, limit=plan.evaluation.max_rows, progress=report_to.eval_progress)
    except Exception as exc:  # noqa: BLE001 - the trained model stands; the run says why it has no report
        report_to.evaluation_failed(exc)
        return
    report_to.evaluation(report)
    for name in REPORT_ARTIFACTS:
        if (run_dir / name).exists():
            store.add_artifact(run["id"], name, str(run_dir / name))


def _pilot(store, report_to, run: dict, plan, run_dir: Path) -> None:
    """A pilot run: the measurements land in the run directory; a retry resumes from its pilot_state.json."""
    from executor.pilot.runner import PilotError, pilot

    report_to.stage("pilot")
    if not plan.data.path:
        raise PilotError("data.path: a pilot needs the prepared data folder (submit with --data DIR)")
    report = pilot(plan, Path(plan.data.path), run_dir, budget_seconds=run.get("budget_seconds"),
                   progress=report_to.message)
    report_to.pilot(report)
    for name in PILOT_ARTIFACTS:
        if (run_dir / name).exists():
            store.add_artifact(run["id"], name, str(run_dir / name))


def main(run_id: str, store_path: str | None = None) -> int:
    die_with_parent()
    os.umask(0o077)  # logs, checkpoints, merged models, evaluation examples: readable by their owner alone
    import yaml

    from executor.plan import TrainingPlan, trains
    from executor.runs.store import RunStore
    from executor.train.distributed import choose_launch
    from executor.train.runner import train

    store = RunStore(store_path)
    run = store.get(run_id)
    run_dir = Path(run["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(run_dir, 0o700)  # a run directory made by an older Tunewise, before they were private
    trained = (run_dir / "result.json").exists()  # a retry after a crash during evaluation skips training
    resume = not trained and any((run_dir / "checkpoints").glob("checkpoint-*"))
    report_to = store.reporter(run_id, resumed=resume)
    if resume:
        report_to.message(f"resuming from the last checkpoint (attempt {run['attempt']})")
    try:
        plan = TrainingPlan.model_validate(yaml.safe_load(run["plan"]))
        if run.get("kind") == "pilot":
            _pilot(store, report_to, run, plan, run_dir)
            return 0
        if not trained:
            gpus, memory = visible_devices()
            launch = choose_launch(plan, gpus, memory)
            report_to.stage("train", processes=launch.nproc, mode=launch.mode, why=launch.why)
            if launch.nproc > 1:
                if not _train_distributed(store, run, plan, launch, run_dir, resume):
                    return 1  # rank 0 recorded an explained error, or the processes crashed (the worker retries)
            else:
                report_to.result(train(plan, run_dir, resume=resume, progress=report_to.progress))
        for name in ARTIFACTS:
            if (run_dir / name).exists():
                store.add_artifact(run_id, name, str(run_dir / name))
        if plan.evaluation.after_training and trains(plan.technique):
            _evaluate(store, report_to, run, plan, run_dir)
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded with its reason
        report_to.failure(exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
