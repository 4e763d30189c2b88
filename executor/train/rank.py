"""One process of a launch (`accelerate launch ... -m executor.train.rank PLAN RUN_DIR [--resume]`): trains the plan
as its rank. The run queue starts its ranks in executor.runs.rank instead, which hands rank 0 a reporter.

Lazy imports: torch and the project modules that pull them in are imported inside the functions that use them, so
importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _use_local_gpu() -> None:
    """Make this rank's GPU (LOCAL_RANK) the current one before any weights load: `.to("cuda")` and a 4-bit
    load's device map otherwise put every rank's copy on GPU 0 (a quantized model cannot be moved afterwards)."""
    import torch

    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))


def run_rank(plan: Path, run_dir: Path, resume: bool = False, reporter=None) -> int:
    """One process of a launch. `reporter` (rank 0 of a queued run: an executor.runs.events.Reporter, handed in
    by executor.runs.rank) receives progress, then the result or the failure; None reports nothing."""
    _use_local_gpu()
    # Imported once the rank's GPU is chosen, so nothing the trainer loads settles on GPU 0 first.
    from executor.plan import load_plan
    from executor.train.runner import train

    try:
        result = train(load_plan(plan), run_dir, resume=resume, progress=reporter.progress if reporter else None)
    except BaseException as exc:
        if reporter is not None:
            reporter.failure(exc)
        raise
    if reporter is not None:
        reporter.result(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m executor.train.rank")
    parser.add_argument("plan", type=Path)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    return run_rank(args.plan, args.run_dir, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
