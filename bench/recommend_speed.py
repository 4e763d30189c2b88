"""Advisor latency on this machine: in-process recommendation and retrieval, after warm-up.

Targets (issue #2): recommendation p50 <= 50 ms, retrieval p50 <= 20 ms on the 2-core CPU box.
Prints p50/p95 for each and the ratio to its target (< 1.0 = within target), measured in one run.

    make bench            # or: .venv/bin/python bench/recommend_speed.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TARGET_RECOMMEND_MS = 50.0
TARGET_RETRIEVAL_MS = 20.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5, help="passes over the scenario texts")
    args = parser.parse_args()
    os.environ.setdefault("TUNEWISE_HOME", tempfile.mkdtemp(prefix="tunewise-bench-"))

    from test_scenarios import SCENARIOS

    from assistant.quiet import quiet_libraries
    from assistant.recommend import Advisor

    quiet_libraries()
    start = time.perf_counter()
    advisor = Advisor()
    texts = [s[1] for s in SCENARIOS]
    for text in texts[:3]:  # warm-up: loads MiniLM, touches every code path once
        advisor.recommend(text)
    print(f"start-up incl. index build/open and warm-up: {time.perf_counter() - start:.1f} s")

    recommend_ms, retrieval_ms = [], []
    for _ in range(args.rounds):
        for text in texts:
            t0 = time.perf_counter()
            advisor.recommend(text)
            recommend_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            advisor.index.search(text or "prompting", k=3)
            retrieval_ms.append((time.perf_counter() - t0) * 1000)

    for name, values, target in [
        ("recommendation", recommend_ms, TARGET_RECOMMEND_MS),
        ("retrieval", retrieval_ms, TARGET_RETRIEVAL_MS),
    ]:
        p50, p95 = statistics.median(values), percentile(values, 0.95)
        print(f"{name:15s} n={len(values):4d}  p50={p50:6.1f} ms  p95={p95:6.1f} ms  "
              f"target p50<={target:.0f} ms  ratio={p50 / target:.2f}")


if __name__ == "__main__":
    main()
