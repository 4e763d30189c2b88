"""Groups for `--group-by`: rows that belong together (a database, a document, a customer, a conversation).

    group_key            a row's group as a short, stable string (a long value such as a SQuAD passage by hash)
    check_group_column   the column must hold a value in some row, else an error listing the columns seen
    suggest_group_column without --group-by: a column whose name says it is a group and whose values repeat,
                         so a held-out split by it would measure unseen databases / documents / customers
    CrossGroupDuplicates duplicate and near-duplicate pairs of rows from different groups: they leak across the
                         group boundary that the group split draws
    group_summary        groups and rows per split, and what could not be done, for the report
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from executor.data.dedup import jaccard
from executor.data.records import Example, RawRow, SourceRef
from executor.data.schema import MISSING, SchemaError, column_value
from executor.data.split import SPLITS

MAX_KEY_CHARS = 80         # longer group values (a whole passage) are named by a preview and a hash
MIN_GROUPS = len(SPLITS)   # one group per split: fewer cannot give a held-out split
MIN_ROWS_PER_GROUP = 1.5   # below this most rows are alone in their group and grouping changes little
MIN_PRESENT = 0.9          # a suggested column must name the group of nearly every row (others are rejected)
DUPLICATE_EXAMPLES = 5

# A column named by one of these words (alone, or with id/name/key) holds a group; the value is the plural used
# in the suggestion ("so the test split measures unseen databases").
GROUP_WORDS = {
    "db": "databases", "database": "databases", "doc": "documents", "document": "documents",
    "article": "articles", "title": "titles", "context": "passages", "passage": "passages",
    "paragraph": "passages", "conversation": "conversations", "dialog": "conversations",
    "dialogue": "conversations", "session": "sessions", "thread": "threads", "customer": "customers",
    "client": "customers", "account": "accounts", "patient": "patients", "author": "authors",
    "repo": "repositories", "repository": "repositories",
}
# These name a chat turn's text as often as a group ("user": "How do I ..."): a group only as user_id, ...
SPEAKER_WORDS = {"user": "users", "speaker": "speakers"}
ID_WORDS = {"id", "name", "key", "uuid"}


# ---------------------------------------------------------------------------------------------- values

def group_key(data: Any, path: str) -> str | None:
    """The row's group, or None when it has none (absent, null or blank: a CSV's empty cell).

    Groups are compared by their text, so 7 and "7" are one group. A long value is a passage shared by
    many rows (a SQuAD context): it is named by its opening words and a hash of the whole text, which keeps
    the report readable and memory small while two passages that differ anywhere stay two groups.
    """
    value = column_value(data, path)
    if value is MISSING or value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if not text.strip():
        return None
    if len(text) <= MAX_KEY_CHARS:
        return text
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()
    return f"{' '.join(text[:48].split())}… #{digest}"


def _paths(obj: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in obj.items():
        out.append(f"{prefix}{key}")
        if isinstance(value, dict):
            out += _paths(value, f"{prefix}{key}.")
    return out


def columns_seen(rows: list[RawRow], sample: int = 200) -> list[str]:
    """Every column path of the first `sample` parsed rows, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in [r for r in rows if isinstance(r.data, dict)][:sample]:
        seen.update(dict.fromkeys(_paths(row.data)))
    return list(seen)


def check_group_column(rows: list[RawRow], column: str, where: str) -> None:
    """Refuse a --group-by column that no row holds, before any work is done on the rows."""
    if any(group_key(r.data, column) is not None for r in rows):
        return
    seen = columns_seen(rows)
    listed = ", ".join(seen[:40]) + (f", ... ({len(seen)} in all)" if len(seen) > 40 else "")
    raise SchemaError(f"{where}: --group-by column {column!r} has no value in any row. "
                      f"Columns seen: {listed or '(none)'}")


# ---------------------------------------------------------------------------------------------- suggestion

def _words(name: str) -> list[str]:
    """db_id -> [db, id]; documentId -> [document, id]; conversation-id -> [conversation, id]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w.lower() for w in re.findall(r"[A-Za-z]+|[0-9]+", spaced)]


def group_noun(column: str) -> str | None:
    """What a column's values are groups of, judged by its name alone (the last part of a dotted path)."""
    words = _words(column.rsplit(".", 1)[-1])
    nouns = [GROUP_WORDS.get(w) or SPEAKER_WORDS.get(w) for w in words if w not in ID_WORDS]
    if not nouns or None in nouns or len(set(nouns)) != 1:
        return None
    if words[0] in SPEAKER_WORDS and not set(words) & ID_WORDS:
        return None
    return nouns[0]


@dataclass
class _Candidate:
    column: str
    noun: str
    values: Counter
    rows: int      # rows holding a value
    longest: int   # longest value, in characters

    @property
    def per_group(self) -> float:
        return self.rows / max(len(self.values), 1)


def suggest_group_column(rows: list[RawRow], context_column: str | None = None,
                         exclude: set[str] | None = None) -> dict[str, Any] | None:
    """A column a user should probably group by, with the figures that show why; None when none fits.

    Candidates are columns named like a group (db_id, document_id, title, customer_id, session_id, ...) and the
    column a reading-comprehension layout takes its passage from. One is suggested when it gives at least
    MIN_GROUPS groups, its values repeat (MIN_ROWS_PER_GROUP rows per value on average: otherwise grouping
    changes little) and nearly every row has one. Of several, the coarsest grouping wins (fewest values: all of
    a document's passages stay together), then the shortest values (the same grouping by its id).
    """
    parsed = [r.data for r in rows if isinstance(r.data, dict)]
    names = {c: group_noun(c) for c in columns_seen(rows) if c not in (exclude or set())}
    if context_column:
        names[context_column] = names.get(context_column) or "passages"
    candidates = []
    for column, noun in names.items():
        if noun is None:
            continue
        found = _Candidate(column, noun, Counter(), 0, 0)
        for data in parsed:
            key = group_key(data, column)
            if key is not None:
                found.values[key] += 1
                found.rows += 1
                found.longest = max(found.longest, len(key))
        if (len(found.values) >= MIN_GROUPS and found.per_group >= MIN_ROWS_PER_GROUP
                and found.rows >= MIN_PRESENT * len(parsed)):
            candidates.append(found)
    if not candidates:
        return None
    candidates.sort(key=lambda c: (len(c.values), c.longest))
    best, others = candidates[0], candidates[1:]
    text = (f"rows share `{best.column}` ({len(best.values):,} values over {best.rows:,} rows, "
            f"{best.per_group:.1f} per value): consider --group-by {best.column} so the test split measures "
            f"unseen {best.noun}")
    if others:
        text += " (also possible: " + ", ".join(f"{c.column}, {len(c.values):,} values" for c in others) + ")"
    return {"column": best.column, "values": len(best.values), "rows": best.rows, "text": text,
            "alternatives": [{"column": c.column, "values": len(c.values)} for c in others]}


# ---------------------------------------------------------------------------------------------- duplicates

@dataclass
class _Pair:
    kind: str          # "duplicate" or "near_duplicate"
    first: Example     # the earlier row (the one de-duplication keeps)
    second: Example    # the later row (the one de-duplication removes, when on)


@dataclass
class CrossGroupDuplicates:
    """Duplicate and near-duplicate pairs whose rows belong to different groups."""

    groups: dict[SourceRef, str]
    removed: bool      # whether de-duplication removed the later row of each pair
    pairs: list[_Pair] = field(default_factory=list)

    def note(self, first: Example, second: Example, kind: str) -> None:
        if self.groups[first.source] != self.groups[second.source]:
            self.pairs.append(_Pair(kind, first, second))

    def summary(self, split_of_group: dict[str, str]) -> dict[str, Any]:
        """Pairs whose groups went to different splits are leaks (prevented when the later row was removed)."""
        def side(ex: Example) -> dict[str, Any]:
            group = self.groups[ex.source]
            return {"source": str(ex.source), "group": group, "split": split_of_group.get(group)}

        def crosses(pair: _Pair) -> bool:
            a, b = (split_of_group.get(self.groups[ex.source]) for ex in (pair.first, pair.second))
            return a is not None and b is not None and a != b

        shown = sorted(self.pairs, key=lambda p: not crosses(p))[:DUPLICATE_EXAMPLES]  # stable: input order
        examples = [{"kind": p.kind, "jaccard": round(jaccard(" ".join(p.first.dedup_strings()),
                                                              " ".join(p.second.dedup_strings())), 2),
                     "first": side(p.first), "second": side(p.second),
                     "text": " ".join(" ".join(p.second.dedup_strings()).split())[:160]} for p in shown]
        return {"pairs": len(self.pairs), "across_splits": sum(crosses(p) for p in self.pairs),
                "removed": self.removed, "examples": examples}


# ---------------------------------------------------------------------------------------------- summary

def group_summary(column: str, groups: list[str], assignment: list[str], fractions: tuple[float, float, float],
                  without_group: int, duplicates: dict[str, Any]) -> dict[str, Any]:
    """Groups and rows per split of the kept rows, and a plain note on what the groups did not allow."""
    per_split = {s: {"groups": len({g for g, a in zip(groups, assignment, strict=True) if a == s}),
                     "rows": assignment.count(s)} for s in SPLITS}
    sizes = Counter(groups)
    notes = _notes(column, sizes, per_split, fractions, len(groups))
    return {"column": column, "groups": len(sizes), "rows_without_group": without_group,
            "splits": per_split, "largest_group": max(sizes.values(), default=0),
            "cross_group_duplicates": duplicates, "notes": notes}


def _notes(column: str, sizes: Counter, per_split: dict[str, dict[str, int]], fractions, rows: int) -> list[str]:
    notes = []
    wanted = [s for s, f in zip(SPLITS, fractions, strict=True) if f > 0]
    empty = [s for s in wanted if not per_split[s]["rows"]]
    if len(sizes) < len(wanted):
        placed = ", ".join(f"{per_split[s]['groups']} in {s}" for s in SPLITS if per_split[s]["groups"])
        notes.append(f"Only {len(sizes)} group(s) of `{column}`: a held-out group split needs {len(wanted)} (one "
                     f"per split), so it is impossible here. Each group was kept whole: {placed}; "
                     f"{' and '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty.")
    if rows:
        off = max(abs(per_split[s]["rows"] / rows - f) for s, f in zip(SPLITS, fractions, strict=True))
        if off > 0.05:
            largest = max(sizes.values())
            notes.append(f"Row shares differ from the asked fractions by up to {off:.0%} because groups stay "
                         f"whole (the largest has {largest:,} rows, {largest / rows:.0%} of the data).")
    return notes
