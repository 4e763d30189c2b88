"""An uploaded dataset -> the data pipeline -> what the chat shows about it.

    upload (JSONL / JSON / CSV / TSV / Parquet), stored in the user's folder (uploads.store_upload)
      -> executor.data.pipeline.prepare (the plan's base model tokenizer and chat template)
      -> summary: counts, rejects by reason with examples, PII found, token lengths, the chart, review sample

The prepared folder (train / validation / test splits) is what a launched run trains on.

Lazy imports: the modules that do the work (load, pipeline, schema, registry) are imported where they are used, so
the chat serves its first page before they load.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.chat.uploads import UploadError  # one error for every upload problem

ACCEPTED_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
ACCEPT_MIME = {  # for Chainlit's upload widgets: the browser filters by MIME type and extension
    "application/jsonl": [".jsonl"], "application/json": [".json"], "text/csv": [".csv"],
    "text/tab-separated-values": [".tsv"], "application/octet-stream": [".parquet", ".jsonl"],
    "application/vnd.apache.parquet": [".parquet"],
}
REJECT_EXAMPLES = 3
# An upload is at most 100 MB as sent, but Parquet (and any compression) can expand a thousandfold: a chat upload
# may decode to at most this much text (the CLI's own limit, executor.data.load.DECODED_BUDGET, is 1 GiB).
UPLOAD_DECODED_BUDGET = 256 << 20
REVIEW_SHOWN = 5


@dataclass
class PreparedUpload:
    name: str
    source: Path    # the stored copy of the upload
    out_dir: Path   # train/validation/test.jsonl, rejects.jsonl, report.*, review.csv
    report: dict[str, Any]

    @property
    def chart(self) -> Path | None:
        path = self.out_dir / (self.report.get("chart") or "report.png")
        return path if path.exists() else None

    def to_state(self) -> dict[str, Any]:
        return {"name": self.name, "source": str(self.source), "out_dir": str(self.out_dir),
                "kept": self.report["kept"], "splits": self.report["splits"]}


def check_suffix(name: str) -> None:
    if not name.lower().endswith(ACCEPTED_SUFFIXES):
        raise UploadError(f"{name}: upload a dataset file ({', '.join(ACCEPTED_SUFFIXES)})")


def prepare_upload(stored: Path, out_dir: Path, *, model: str | None = None, tokenizer: Any = None,
                   system_prompt: str | None = None) -> PreparedUpload:
    """Prepare a stored upload into `out_dir` with the base model's tokenizer and chat template. A model whose
    tokenizer is not available here (a hub model offline, an API model) falls back to the bundled default's,
    and the report says so."""
    stored, out_dir = Path(stored), Path(out_dir)
    check_suffix(stored.name)
    from executor.data.load import DataError
    from executor.data.pipeline import PrepareConfig, prepare
    from executor.data.schema import SchemaError
    from executor.models.registry import ModelError, load_tokenizer

    note = None
    if tokenizer is None and model:
        try:
            tokenizer = load_tokenizer(model)
        except (ModelError, OSError) as exc:
            note = f"{model}'s tokenizer is not available here ({exc}); token counts use the bundled default's"
            model = None
    config = PrepareConfig(input=stored, out=out_dir, model=model, tokenizer=tokenizer, system_prompt=system_prompt,
                           decoded_budget=UPLOAD_DECODED_BUDGET)
    try:
        report = prepare(config)
    except (SchemaError, DataError) as exc:
        raise UploadError(str(exc).replace(str(stored.parent) + "/", "")) from None
    if note:
        report["chat_note"] = note
    return PreparedUpload(stored.name, stored, out_dir, report)


def reject_examples(out_dir: Path, per_reason: int = REJECT_EXAMPLES) -> dict[str, list[dict[str, Any]]]:
    shown: dict[str, list[dict[str, Any]]] = {}
    path = out_dir / "rejects.jsonl"
    if not path.exists():
        return shown
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            reject = json.loads(line)
            bucket = shown.setdefault(reject["reason"], [])
            if len(bucket) < per_reason:
                bucket.append(reject)
    return shown


def review_rows(out_dir: Path, limit: int = REVIEW_SHOWN) -> list[dict[str, str]]:
    path = out_dir / "review.csv"
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [row for _, row in zip(range(limit), csv.DictReader(handle), strict=False)]


def _cell(text: Any, width: int = 80) -> str:
    text = " ".join(str(text or "").split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def _line(source: dict[str, Any]) -> str:
    where = Path(source.get("file", "")).name
    if "line" in source:
        return f"line {source['line']}"
    if "item" in source:
        return f"row {source['item']}"
    return where


def summary_markdown(prepared: PreparedUpload) -> str:
    r = prepared.report
    rejected = {k: v for k, v in r["rejected"].items() if v}
    fmt = r["detected_format"]
    lines = [
        f"### Data: {prepared.name}",
        f"Detected format **{fmt['name']}**. {fmt['explanation']}",
        "",
        f"**{r['input_rows']:,}** rows read → **{r['kept']:,}** kept, **{sum(rejected.values()):,}** rejected "
        f"({'every row accounted for' if r['accounted_for'] else 'ROWS MISSING: please report this'}).",
        "",
        "| split | rows |", "|---|---|", *[f"| {s} | {n:,} |" for s, n in r["splits"].items()],
    ]
    folder = str(prepared.source.parent) + "/"  # details name the stored copy; the user knows the file by its name
    if rejected:
        lines += ["", "**Rejected rows**", "", "| reason | rows | for example |", "|---|---|---|"]
        examples = reject_examples(prepared.out_dir)
        for reason, count in sorted(rejected.items(), key=lambda kv: -kv[1]):
            sample = "; ".join(f"{_line(e['source'])}: {_cell(e['detail'].replace(folder, ''), 60)}"
                               for e in examples.get(reason, []))
            lines.append(f"| {reason.replace('_', ' ')} | {count:,} | {sample} |")
    pii = r.get("pii_redacted") or {}
    if pii:
        found = ", ".join(f"{n:,} {kind.lower().replace('_', ' ')}" for kind, n in sorted(pii.items()))
        lines += ["", f"**PII redacted:** {found} (replaced by typed placeholders such as `<EMAIL>`)."]
    elif r["settings"]["redact_pii"]:
        lines += ["", "**PII:** none found."]
    tokens = r["token_lengths"].get("all", {})
    if tokens.get("count"):
        lines += ["", f"**Tokens per example** (chat template applied): median {tokens['p50']}, p90 {tokens['p90']}, "
                      f"max {tokens['max']} (max length {r['settings']['max_length']})."]
    if r.get("chat_note"):
        lines.append(f"> Note: {r['chat_note']}")
    template = r.get("template") or {}
    for problem in template.get("problems", []):
        lines.append(f"> Template problem: {problem}")
    rows = review_rows(prepared.out_dir)
    if rows:
        lines += ["", f"**Review sample** ({r['review']['rows']} random rows in `review.csv` for a domain expert; "
                      "first ones below)", "", "| # | prompt | response |", "|---|---|---|"]
        lines += [f"| {row['review_id']} | {_cell(row['prompt'])} | {_cell(row['response'])} |" for row in rows]
    return "\n".join(lines)
