"""Cut the slice of ../shared/datasets that the repository ships (tests/data/datasets), in the same layout.

    .venv/bin/python tests/data/datasets/make_slice.py ../shared/datasets

Tests read ../shared/datasets when it is there and this slice when it is not (tests/real_data.py): the same file
names, formats and first rows, far fewer rows. Each file keeps its source's encoding and layout (the CSV quoting,
the JSON indentation), so the loaders meet what they meet in the full files. What is kept of each file is written
in README.md beside it; the licenses are copied (CC BY 4.0 ones as their notice with the license's address).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def per_label(source: Path, target: Path, column: str, keep: int) -> int:
    """The first `keep` rows of each value of `column`, in file order, with the source's CSV dialect."""
    with source.open(encoding="utf-8", newline="") as handle:  # (newlines inside quoted fields kept as they are)
        text = handle.read()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, at = rows[0], rows[0].index(column)
    seen: Counter = Counter()
    kept = [header]
    for row in rows[1:]:
        if seen[row[at]] < keep:
            seen[row[at]] += 1
            kept.append(row)
    out = io.StringIO(newline="")
    crlf = text[text.index("\n") - 1] == "\r"  # the header's line ending is the file's
    csv.writer(out, lineterminator="\r\n" if crlf else "\n").writerows(kept)
    target.write_bytes(out.getvalue().encode("utf-8"))
    return len(kept) - 1


def first_lines(source: Path, target: Path, n: int) -> int:
    lines = source.read_bytes().splitlines(keepends=True)[:n]
    target.write_bytes(b"".join(lines))
    return len(lines)


def main(shared: Path) -> None:
    for folder in ("banking77", "customer_support", "extraction", "gsm8k", "preference", "rag"):
        (HERE / folder).mkdir(exist_ok=True)
    counts = {
        "banking77/train.csv": per_label(shared / "banking77/train.csv", HERE / "banking77/train.csv", "category", 2),
        "banking77/test.csv": per_label(shared / "banking77/test.csv", HERE / "banking77/test.csv", "category", 4),
        "customer_support/bitext_customer_support_train.csv": per_label(
            shared / "customer_support/bitext_customer_support_train.csv",
            HERE / "customer_support/bitext_customer_support_train.csv", "intent", 2),
        "gsm8k/test.jsonl": first_lines(shared / "gsm8k/test.jsonl", HERE / "gsm8k/test.jsonl", 40),
        "preference/orca_dpo_pairs_validation.jsonl": first_lines(
            shared / "preference/orca_dpo_pairs_validation.jsonl", HERE / "preference/orca_dpo_pairs_validation.jsonl",
            6),
    }
    items = json.loads((shared / "extraction/restaurant8k_train_0.json").read_text(encoding="utf-8"))[:60]
    (HERE / "extraction/restaurant8k_train_0.json").write_text(json.dumps(items, indent=4), encoding="utf-8")
    counts["extraction/restaurant8k_train_0.json"] = len(items)
    covid = json.loads((shared / "rag/covidqa_200423.json").read_text(encoding="utf-8"))
    covid["data"] = [covid["data"][i] for i in (93, 56, 9)]  # the three shortest papers (the first is 31k chars)
    (HERE / "rag/covidqa_200423.json").write_text(json.dumps(covid), encoding="utf-8")
    counts["rag/covidqa_200423.json"] = sum(len(p["qas"]) for d in covid["data"] for p in d["paragraphs"])
    shutil.copyfile(shared / "banking77/categories.json", HERE / "banking77/categories.json")
    for name in ("customer_support/LICENSE.bitext.txt", "gsm8k/LICENSE", "preference/LICENSE.orca_dpo_pairs.md",
                 "rag/LICENSE.covid-qa"):
        shutil.copyfile(shared / name, HERE / name)
    print(json.dumps(counts, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[2].parent / "shared" / "datasets"))
