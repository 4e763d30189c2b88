"""Deterministic train/validation/test splitting: by rows, stratified by label; or by whole groups.

`stratified_split`: rows are grouped by label (one group when there is none), each group is shuffled with
the seed and cut by the fractions using largest-remainder rounding, so every label keeps its share in every
split where it has enough rows, and the same seed always gives the same split.

`group_split` (`--group-by`): every group (a database, a document, a customer) goes whole to one split, so
the test split measures unseen groups. Groups are placed largest first, each into the split whose row and
label deficits it fills best (the greedy step of scikit-learn's StratifiedGroupKFold, aimed at row
fractions rather than group counts); the seed orders groups of equal size.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence

SPLITS = ("train", "validation", "test")
# Which split takes a group when two want it equally, and which gets a group first when one is empty: an
# unseen group to measure on matters more than one to choose checkpoints with.
PREFERENCE = ("test", "validation", "train")


def allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Split n items by fractions with largest-remainder rounding (the counts always sum to n)."""
    raw = [n * f for f in fractions]
    counts = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def check_fractions(fractions: Sequence[float]) -> None:
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")


def stratified_split(
    labels: Sequence[str | None], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 42
) -> list[str]:
    """The split name for each row index."""
    check_fractions(fractions)
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


def group_split(
    labels: Sequence[str | None], groups: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 42,
) -> list[str]:
    """The split name for each row index; rows of one group always share a split."""
    check_fractions(fractions)
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -len(members[g]))  # stable: the seeded shuffle orders groups of equal size
    label_of = ["" if label is None else str(label) for label in labels]
    placed = _place_greedily(order, members, label_of, fractions)
    _fill_empty_splits(placed, members, [s for s, f in zip(SPLITS, fractions, strict=True) if f > 0])
    assignment = [""] * len(groups)
    for group, split in placed.items():
        for index in members[group]:
            assignment[index] = split
    return assignment


def _place_greedily(order: list[str], members: dict[str, list[int]], label_of: list[str],
                    fractions: Sequence[float]) -> dict[str, str]:
    """Each group to the split that most lowers sum((rows - target)^2) + sum over labels ((count - target)^2).

    Adding g rows (c_l of label l) to a split with row deficit d and label deficits d_l changes that cost by a
    constant minus 2 (g d + sum c_l d_l), so the best split maximizes g d + sum c_l d_l. Rows dominate (their
    deficits are larger), labels decide between splits that want the group about as much.
    """
    totals = Counter(label_of)
    share = dict(zip(SPLITS, fractions, strict=True))
    row_deficit = {s: len(label_of) * share[s] for s in SPLITS}
    label_deficit = {s: {label: n * share[s] for label, n in totals.items()} for s in SPLITS}
    candidates = [s for s in PREFERENCE if share[s] > 0]  # a split asked to be empty never gets a group
    placed: dict[str, str] = {}
    for group in order:
        counts = Counter(label_of[i] for i in members[group])
        size = len(members[group])

        def gain(split: str, size=size, counts=counts) -> float:
            return size * row_deficit[split] + sum(n * label_deficit[split][lab] for lab, n in counts.items())

        best = max(candidates, key=gain)  # the first of equals in PREFERENCE order
        placed[group] = best
        row_deficit[best] -= size
        for label, n in counts.items():
            label_deficit[best][label] -= n
    return placed


def _fill_empty_splits(placed: dict[str, str], members: dict[str, list[int]], wanted: list[str]) -> None:
    """A split asked for but left empty (three groups of 10 rows at 80/10/10 all fit train best) gets the
    smallest group of the split holding the most groups, as long as that split keeps one: a held-out split
    with one group measures more than an empty one, at the cost of row fractions."""
    for split in (s for s in PREFERENCE if s in wanted):
        if split in placed.values():
            continue
        held = Counter(placed.values())
        donor = max((s for s in PREFERENCE if held[s] > 1), key=lambda s: held[s], default=None)
        if donor is None:
            return
        smallest = min((g for g, s in placed.items() if s == donor), key=lambda g: len(members[g]))
        placed[smallest] = split
