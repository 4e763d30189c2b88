"""The preparation report: statistics, the human review sample, JSON + Markdown + a PNG of distributions.

Lazy imports: matplotlib is imported inside the functions that use it, so importing this module (from the CLI,
the chat or a run process) stays cheap.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from executor.data.records import Example

REVIEW_COLUMNS = ("review_id", "split", "source", "kind", "label", "prompt", "response", "rejected_response",
                  "verdict", "notes")


def length_stats(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {"count": 0}
    ordered = sorted(lengths)

    def pct(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]

    return {"count": len(ordered), "min": ordered[0], "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
            "max": ordered[-1], "mean": round(sum(ordered) / len(ordered), 1)}


def _prompt_and_reply(ex: Example) -> tuple[str, str, str]:
    if ex.kind == "text":
        return "", ex.text or "", ""
    prompt = "\n\n".join(f"[{m['role']}] {m['content']}" for m in ex.messages
                         if ex.kind == "preference" or m is not ex.messages[-1])
    if ex.kind == "preference":
        return prompt, ex.chosen or "", ex.rejected or ""
    last = ex.messages[-1] if ex.messages else {"content": ""}
    return prompt, last["content"], ""


def write_review_sample(path: Path, kept: list[tuple[str, Example]], size: int, seed: int) -> int:
    """A random sample for a domain expert: one row each, with empty `verdict` (ok / fix / drop) and `notes`."""
    rng = random.Random(seed)
    sample = rng.sample(kept, min(size, len(kept)))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REVIEW_COLUMNS)
        for n, (split, ex) in enumerate(sample, start=1):
            prompt, reply, rejected = _prompt_and_reply(ex)
            writer.writerow([n, split, str(ex.source), ex.kind, ex.label or "", prompt, reply, rejected, "", ""])
    return len(sample)


def read_review_verdicts(path: Path) -> dict[str, Any]:
    """Tally what the reviewer recorded (blank verdicts are counted as not yet reviewed)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    verdicts = Counter((row.get("verdict") or "").strip().lower() or "unreviewed" for row in rows)
    return {"rows": len(rows), "verdicts": dict(verdicts)}


def write_chart(path: Path, lengths_by_split: dict[str, list[int]], labels: Counter) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    panels = 2 if labels else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.5), squeeze=False)
    ax = axes[0][0]
    for split, lengths in lengths_by_split.items():
        if lengths:
            ax.hist(lengths, bins=40, histtype="step", linewidth=1.5, label=f"{split} ({len(lengths)})")
    ax.set_title("Tokens per example (chat template applied)")
    ax.set_xlabel("tokens")
    ax.set_ylabel("examples")
    ax.legend()
    if labels:
        top = labels.most_common(25)
        ax = axes[0][1]
        ax.barh([str(k)[:30] for k, _ in reversed(top)], [v for _, v in reversed(top)])
        more = f" (top 25 of {len(labels)})" if len(labels) > 25 else ""
        ax.set_title(f"Label distribution{more}")
        ax.set_xlabel("examples")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "/")


def _side(row: dict[str, Any]) -> str:
    """One row of a duplicate pair: where it is, its group, its group's split (— when the group was removed)."""
    return _cell(f"{row['source']} · `{row['group'][:40]}` · {row['split'] or '—'}")


def _groups_markdown(groups: dict[str, Any] | None, suggestion: dict[str, Any] | None) -> list[str]:
    """The group split (--group-by): groups and rows per split, notes, cross-group duplicates; or the hint."""
    if not groups:
        return [f"**Suggestion:** {suggestion['text']}."] if suggestion else []
    kept = sum(s["rows"] for s in groups["splits"].values()) or 1
    parts = [f"### Groups by `{groups['column']}`",
             f"{groups['groups']:,} groups; every group is in exactly one split, so the test split measures "
             "unseen groups." + (f" Rows rejected for having no `{groups['column']}` value (schema_error): "
                                 f"{groups['rows_without_group']:,}." if groups["rows_without_group"] else ""),
             _table([(s, f"{v['groups']:,}", f"{v['rows']:,}", f"{v['rows'] / kept:.1%}")
                     for s, v in groups["splits"].items()], ("split", "groups", "rows", "share of rows"))]
    parts += [f"- **Note:** {note}" for note in groups["notes"]]
    dups = groups["cross_group_duplicates"]
    if dups["pairs"]:
        fate = ("the later row of each was removed, so none is in two splits" if dups["removed"]
                else "de-duplication is off, so they stay: the test split is not fully unseen")
        parts.append(f"Duplicate or near-duplicate pairs joining rows of different groups: **{dups['pairs']:,}** "
                     f"({dups['across_splits']:,} with their groups in different splits); {fate}.")
        header = ("kept", "removed") if dups["removed"] else ("first", "second")
        parts.append(_table([(e["kind"], e["jaccard"], _side(e["first"]), _side(e["second"]), _cell(e["text"]))
                             for e in dups["examples"]], ("kind", "Jaccard", *header, "text")))
    else:
        parts.append("No duplicate or near-duplicate joins rows of different groups.")
    return parts


def render_markdown(report: dict[str, Any]) -> str:
    fmt = report["detected_format"]
    rejected = {k: v for k, v in report["rejected"].items() if v}
    parts = [
        "# Data preparation report",
        f"Input: `{report['input']}` — detected format **{fmt['name']}**. {fmt['explanation']}",
        f"**{report['input_rows']:,}** input rows → **{report['kept']:,}** kept, "
        f"**{sum(report['rejected'].values()):,}** rejected (see `rejects.jsonl`). "
        f"All rows accounted for: {'yes' if report['accounted_for'] else 'NO'}."
        + (f" Blank lines skipped: {report['blank_lines_skipped']:,}." if report.get("blank_lines_skipped") else ""),
        "## Splits",
        _table([(s, f"{n:,}") for s, n in report["splits"].items()], ("split", "rows")),
        *_groups_markdown(report.get("groups"), report.get("group_suggestion")),
        "## Rejected rows by reason",
        _table(sorted(rejected.items(), key=lambda kv: -kv[1]), ("reason", "rows")) if rejected else "None.",
        "## PII redacted",
        _table(sorted(report["pii_redacted"].items()), ("type", "values")) if report["pii_redacted"]
        else ("None found." if report["settings"]["redact_pii"] else "Redaction was switched off."),
        "## Token lengths",
        _table([(s, *(st.get(k, "") for k in ("count", "min", "p50", "p90", "p99", "max", "mean")))
                for s, st in report["token_lengths"].items()],
               ("split", "rows", "min", "p50", "p90", "p99", "max", "mean")),
    ]
    if report["labels"]:
        parts += ["## Labels (top 20)", _table(
            [(label, *(report["labels"][s].get(label, 0) for s in report["splits"]))
             for label in list(report["labels"]["all"])[:20]],
            ("label", *report["splits"]))]
    template = report.get("template") or {}
    if template:
        parts.append("## Chat template checks")
        parts.append(f"Tokenizer `{template['tokenizer']}`, end of turn `{template['end_of_turn']}`, pad "
                     f"`{template['pad_token']}`, max length {report['settings']['max_length']}.")
        parts += [f"- **Problem:** {p}" for p in template["problems"]] or ["- No problems found."]
        parts += [f"- Note: {n}" for n in template["notes"]]
    parts += ["## Review", f"`{report['review']['file']}`: {report['review']['rows']} random rows for a domain "
              "expert; fill in `verdict` (ok / fix / drop) and `notes`.",
              "![distributions](report.png)" if report.get("chart") else ""]
    return "\n\n".join(p for p in parts if p) + "\n"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
