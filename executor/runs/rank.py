"""One process of a queued run's multi-process launch: `python -m executor.runs.rank PLAN RUN_DIR --run-id ID`.

The run process (executor.runs.child) launches this instead of executor.train.rank, so that rank 0 reports
progress, the result or the failure to the run store; executor.train.rank receives that reporter and never
imports the run queue.

Lazy imports: the training modules (torch with them) load after the arguments are parsed, so a wrong argument
fails at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m executor.runs.rank")
    parser.add_argument("plan", type=Path)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--run-id", required=True, help="Report progress and the outcome to this run.")
    parser.add_argument("--store", help="The run store's SQLite file (default: the data directory's).")
    args = parser.parse_args(argv)
    from executor.train.distributed import is_main_process
    from executor.train.rank import run_rank

    reporter = None
    if is_main_process():  # one reporter per run, however many processes train it
        from executor.runs.store import RunStore

        reporter = RunStore(args.store).reporter(args.run_id, resumed=args.resume)
    return run_rank(args.plan, args.run_dir, resume=args.resume, reporter=reporter)


if __name__ == "__main__":
    sys.exit(main())
