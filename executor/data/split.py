"""Deterministic, stratified train/validation/test splitting.

Rows are grouped by label (one group when there is none), each group is shuffled with the seed and cut
by the fractions using largest-remainder rounding, so every label keeps its share in every split where
it has enough rows, and the same seed always gives the same split.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

SPLITS = ("train", "validation", "test")


def allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Split n items by fractions with largest-remainder rounding (the counts always sum to n)."""
    raw = [n * f for f in fractions]
    counts = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def stratified_split(
    labels: Sequence[str | None], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 42
) -> list[str]:
    """The split name for each row index."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    groups: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        groups["" if label is None else str(label)].append(index)
    assignment = [""] * len(labels)
    rng = random.Random(seed)
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        counts = allocate(len(members), fractions)
        start = 0
        for split, count in zip(SPLITS, counts, strict=True):
            for index in members[start:start + count]:
                assignment[index] = split
            start += count
    return assignment
