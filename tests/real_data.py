"""Where the tests' real datasets are: ../shared/datasets when it is there, else the slice the repository ships.

The slice (tests/data/datasets, made by its make_slice.py) has the same folders, file names and layouts and the
same first rows, with far fewer rows; a test states what it expects of each with `full_or_slice`. So a checkout
without ../shared/datasets runs these tests on real data instead of skipping them. TUNEWISE_TEST_DATASETS=shipped
uses the slice even where the full files are (to check the slice's expectations).
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SHIPPED = Path(__file__).resolve().parent / "data" / "datasets"
FULL = SHARED.is_dir() and os.environ.get("TUNEWISE_TEST_DATASETS") != "shipped"
ROOT = SHARED if FULL else SHIPPED


def path(relative: str) -> Path:
    """A dataset file; a missing one fails the test (it is never skipped quietly)."""
    found = ROOT / relative
    if not found.is_file():
        raise FileNotFoundError(f"{found}: not there (the shipped slice is made by tests/data/datasets/make_slice.py)")
    return found


def full_or_slice(full, sliced):
    """What a test expects of the full file, or of the shipped slice of it."""
    return full if FULL else sliced
