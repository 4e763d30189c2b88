"""Data preparation throughput and memory: 100,000 rows of ~500 characters through the whole pipeline.

Target (issue #3): <= 60 s wall time and <= 2 GiB peak RSS on the 2-core CPU machine.
Prints rows/s, wall time, peak RSS and their ratios to the targets (< 1.0 = within target).

    .venv/bin/python bench/data_prepare_speed.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

TARGET_SECONDS = 60.0
TARGET_RSS_GIB = 2.0
WORDS = ("account card payment refund order delivery address invoice password login transfer balance limit "
         "statement fee branch loan mortgage rate interest savings travel abroad currency exchange cash atm pin "
         "blocked stolen lost replace upgrade cancel subscription plan premium support agent wait hours email "
         "phone verify identity document upload photo passport license selfie mobile app update version error "
         "crash screen button settings notification alert security fraud suspicious charge merchant dispute").split()
CATEGORIES = [f"intent_{i:02d}" for i in range(40)]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_rows(n: int, seed: int = 0):
    """Realistic-looking support pairs: ~500 characters, 2% exact and 2% near duplicates, some PII."""
    rng = random.Random(seed)
    previous: list[dict] = []
    for i in range(n):
        roll = rng.random()
        if previous and roll < 0.02:
            yield dict(rng.choice(previous))
            continue
        if previous and roll < 0.04:
            row = dict(rng.choice(previous))
            row["response"] = row["response"] + " Thanks."
            yield row
            continue
        instruction = sentence(rng, rng.randint(10, 20))
        response = " ".join(sentence(rng, rng.randint(8, 14)) for _ in range(5))
        if rng.random() < 0.05:
            response += f" Write to support{i}@example.com or call +1-202-555-{rng.randint(1000, 9999)}."
        row = {"instruction": instruction, "response": response, "category": rng.choice(CATEGORIES)}
        if len(previous) < 5000:
            previous.append(row)
        yield row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("TUNEWISE_HOME", tempfile.mkdtemp(prefix="tunewise-bench-"))
    from executor.data.pipeline import PrepareConfig, prepare
    from executor.models.registry import load_tokenizer

    work = Path(tempfile.mkdtemp(prefix="tunewise-data-bench-"))
    source = work / "support.jsonl"
    with source.open("w", encoding="utf-8") as handle:
        for row in make_rows(args.rows):
            handle.write(json.dumps(row) + "\n")
    mean_chars = source.stat().st_size / args.rows
    load_tokenizer()  # cache the tokenizer folder first, as any second run would have it
    start = time.perf_counter()
    report = prepare(PrepareConfig(input=source, out=work / "out"))
    seconds = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    assert report["accounted_for"], report
    print(f"rows={args.rows:,} (~{mean_chars:.0f} bytes per JSON line)  kept={report['kept']:,}  "
          f"duplicates={report['duplicates_removed']:,}  near={report['near_duplicates_removed']:,}  "
          f"pii={report['pii_redacted']}")
    print(f"stages (s): {report['timings_s']}")
    print(f"wall {seconds:.1f} s  ({args.rows / seconds:,.0f} rows/s)  target <= {TARGET_SECONDS:.0f} s  "
          f"ratio={seconds / TARGET_SECONDS:.2f}")
    print(f"peak RSS {peak_gib:.2f} GiB  target <= {TARGET_RSS_GIB:.0f} GiB  ratio={peak_gib / TARGET_RSS_GIB:.2f}")


if __name__ == "__main__":
    main()
