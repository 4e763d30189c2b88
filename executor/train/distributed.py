"""Several processes, one plan: DDP through torchrun (NCCL on GPUs, gloo on CPUs).

The worker (or a person) launches `torchrun --nproc_per_node N -m executor.train.distributed PLAN DATA RUN_DIR`;
the Trainer shards batches across the processes and averages gradients. Only the main process writes the
run directory (plan, metrics, weights, result); every process computes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def launch_command(plan: Path, data: Path | None, run_dir: Path, nproc: int, max_steps: int | None = None,
                   resume: bool = False, port: int | None = None) -> list[str]:
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    command = [torchrun, "--nproc_per_node", str(nproc), "--nnodes", "1"]
    if port:
        command += ["--master_port", str(port)]
    command += ["-m", "executor.train.distributed", str(plan), str(data or ""), str(run_dir)]
    if max_steps:
        command += ["--max-steps", str(max_steps)]
    if resume:
        command.append("--resume")
    return command


def launch(plan: Path, data: Path | None, run_dir: Path, nproc: int, **kwargs) -> int:
    return subprocess.run(launch_command(plan, data, run_dir, nproc, **kwargs), check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m executor.train.distributed")
    parser.add_argument("plan", type=Path)
    parser.add_argument("data")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    from executor.plan import load_plan
    from executor.train.runner import train

    train(load_plan(args.plan), Path(args.data) if args.data else None, args.run_dir, resume=args.resume,
          max_steps=args.max_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
