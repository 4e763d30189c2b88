"""`prepare`: one input (file or folder) -> train/validation/test/rejects + report, nothing lost.

    load (stream) -> detect schema -> canonical Example -> clean -> redact PII -> filter
      -> exact / near-duplicate removal (before splitting) -> chat template + token lengths
      -> stratified split (by whole groups with --group-by) -> write splits, rejects, review sample, report

Every input row ends in exactly one of the three splits or rejects.jsonl; the report's counts add up
and say so (`accounted_for`).

Lazy imports: the modules that do the work (load, pii, template, registry) are imported inside the functions that
use them, so importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor.data.clean import normalize_text
from executor.data.dedup import NearDuplicateIndex, content_key
from executor.data.filters import check_example
from executor.data.formats import FORMATS, export
from executor.data.groups import (
    CrossGroupDuplicates,
    check_group_column,
    group_key,
    group_summary,
    suggest_group_column,
)
from executor.data.load import DECODED_BUDGET, LoadStats, iter_rows
from executor.data.records import REJECT_REASONS, Example, RawRow, Reject, SourceRef
from executor.data.report import (
    length_stats,
    render_markdown,
    write_chart,
    write_json,
    write_review_sample,
)
from executor.data.schema import SchemaError, detect_format, to_example
from executor.data.split import SPLITS, group_split, stratified_split

Progress = Callable[[str, int, int | None], None]  # (stage, done, total)
DETECTION_SAMPLE = 200


@dataclass
class PrepareConfig:
    input: Path
    out: Path
    model: str | None = None           # base model whose tokenizer and chat template are used
    output_format: str = "chatml"
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    stratify: str | None = None        # column name; default: the label column the schema detection found
    group_by: str | None = None        # column (dotted path) whose rows stay in one split: db_id, document_id
    seed: int = 42
    redact_pii: bool = True
    deduplicate: bool = True
    near_duplicate_threshold: float = 0.85
    min_chars: int = 2
    max_length: int | None = None      # default: the model's context length
    language: str | None = None        # keep only rows in this language (en, de, fr, es, it, pt, nl)
    mapping: dict[str, str] | None = None
    system_prompt: str | None = None   # added to rows that have none
    review_size: int = 50
    follow_symlinks: bool = False      # read what symlinks inside an input folder point to (they may lead anywhere)
    decoded_budget: int = DECODED_BUDGET  # bytes of decoded text one preparation may read (compressed files expand)
    tokenizer: Any = field(default=None, repr=False)  # an already-loaded tokenizer (tests, the chat)


def _clean(example: Example) -> None:
    example.messages = [{"role": m["role"], "content": normalize_text(m["content"])} for m in example.messages]
    for name in ("chosen", "rejected", "text"):
        value = getattr(example, name)
        if value is not None:
            setattr(example, name, normalize_text(value))
    if example.label is not None:
        example.label = normalize_text(str(example.label))


def _redact(example: Example, redactor, counts: Counter) -> None:
    def fix(text: str) -> str:
        new, found = redactor.redact(text)
        counts.update(found)
        return new

    example.messages = [{"role": m["role"], "content": fix(m["content"])} for m in example.messages]
    for name in ("chosen", "rejected", "text"):
        value = getattr(example, name)
        if value is not None:
            setattr(example, name, fix(value))


class Preparer:
    def __init__(self, config: PrepareConfig, progress: Progress | None = None):
        if config.output_format not in FORMATS:
            raise ValueError(f"unknown output format {config.output_format!r}; use one of {', '.join(FORMATS)}")
        self.cfg = config
        self.progress = progress or (lambda stage, done, total: None)
        self.rejects: list[Reject] = []
        self.timings: dict[str, float] = {}
        self.groups: dict[SourceRef, str] = {}  # --group-by: each converted row's group
        self.without_group = 0
        self.cross_group = CrossGroupDuplicates(self.groups, removed=config.deduplicate)
        self.group_suggestion: dict[str, Any] | None = None
        self.load_stats = LoadStats(budget=self.cfg.decoded_budget)

    def _reject(self, source, reason: str, detail: str, data: Any = None) -> None:
        assert reason in REJECT_REASONS, reason
        self.rejects.append(Reject(source, reason, detail, data))

    def _stage(self, name: str, started: float) -> float:
        now = time.perf_counter()
        self.timings[name] = round(now - started, 3)
        return now

    # ------------------------------------------------------------------ the story
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        t = start = time.perf_counter()
        raw = self._load()
        t = self._stage("load", t)
        if cfg.group_by:
            check_group_column(raw, cfg.group_by, str(cfg.input))
        fmt = self._detect(raw)
        if not cfg.group_by:
            self.group_suggestion = suggest_group_column(
                raw, fmt.fields.get("context"), {c for c in (cfg.stratify, fmt.label_column) if c})
        examples = self._convert(raw, fmt)
        input_rows = len(raw)
        del raw
        t = self._stage("convert", t)
        pii = self._clean_and_redact(examples)
        t = self._stage("clean_and_redact", t)
        examples = self._filter(examples)
        t = self._stage("filter", t)
        examples, dups, near = self._deduplicate(examples)
        t = self._stage("deduplicate", t)
        template, examples, lengths = self._tokenize(examples)
        t = self._stage("tokenize", t)
        assignment = self._split(examples)
        report = self._write(input_rows, fmt, examples, lengths, assignment, template, pii, dups, near)
        self._stage("write", t)
        report["timings_s"] = {**self.timings, "total": round(time.perf_counter() - start, 3)}
        write_json(cfg.out / "report.json", report)
        return report

    # ------------------------------------------------------------------ stages
    def _load(self) -> list[RawRow]:
        from executor.data.load import estimate_rows

        total = estimate_rows(self.cfg.input, follow_symlinks=self.cfg.follow_symlinks)
        rows = []
        for row in iter_rows(self.cfg.input, follow_symlinks=self.cfg.follow_symlinks, stats=self.load_stats):
            rows.append(row)
            if len(rows) % 2000 == 0:
                self.progress("load", len(rows), total)
        self.progress("load", len(rows), len(rows))
        return rows

    def _detect(self, raw: list[RawRow]):
        sample = [r.data for r in raw if r.data is not None][:DETECTION_SAMPLE]
        if not sample:
            bad = next((r for r in raw if r.error), None)
            where = f"; first problem: {bad.source}: {bad.error}" if bad else ""
            raise SchemaError(f"{self.cfg.input}: no readable rows{where}")
        return detect_format(sample, self.cfg.mapping)

    def _convert(self, raw: list[RawRow], fmt) -> list[Example]:
        examples = []
        stratify = self.cfg.stratify
        if stratify and not any(
            stratify in (r.data or {}) or stratify == fmt.label_column for r in raw[:DETECTION_SAMPLE]
        ):
            raise SchemaError(f"{self.cfg.input}: --stratify column {stratify!r} is not in the data")
        for n, row in enumerate(raw, start=1):
            result = to_example(row, fmt)
            if isinstance(result, Reject):
                self.rejects.append(result)
            elif self._group_or_reject(row, result):
                if stratify and stratify != fmt.label_column:
                    value = result.metadata.get(stratify)
                    result.label = None if value is None else str(value)
                examples.append(result)
            if n % 5000 == 0:
                self.progress("convert", n, len(raw))
        return examples

    def _group_or_reject(self, row: RawRow, example: Example) -> bool:
        """Note the row's --group-by group, read from the row as parsed (a long passage or a column the format
        uses is not in the Example's metadata). A row without one is rejected rather than made a group of its
        own: it may belong to a group in another split, and the split promises the test groups are unseen."""
        column = self.cfg.group_by
        if not column:
            return True
        key = group_key(row.data, column)
        if key is None:
            self.without_group += 1
            self._reject(row.source, "schema_error", f"missing group column '{column}' (--group-by {column}): "
                         "the row cannot be placed with its group", row.data)
            return False
        self.groups[example.source] = key
        return True

    def _clean_and_redact(self, examples: list[Example]) -> Counter:
        counts: Counter = Counter()
        redactor = None
        if self.cfg.redact_pii:
            from executor.data.pii import PiiRedactor

            redactor = PiiRedactor()
        for n, ex in enumerate(examples, start=1):
            _clean(ex)
            if self.cfg.system_prompt and ex.kind != "text" and not any(m["role"] == "system" for m in ex.messages):
                ex.messages.insert(0, {"role": "system", "content": self.cfg.system_prompt})
            if redactor is not None:
                _redact(ex, redactor, counts)
            if n % 5000 == 0:
                self.progress("clean", n, len(examples))
        return counts

    def _filter(self, examples: list[Example]) -> list[Example]:
        kept = []
        for ex in examples:
            problem = check_example(ex, self.cfg.min_chars, self.cfg.language)
            if problem:
                self._reject(ex.source, problem[0], problem[1], ex.to_dict())
            else:
                kept.append(ex)
        return kept

    def _deduplicate(self, examples: list[Example]) -> tuple[list[Example], int, int]:
        """Remove exact and near duplicates (the later row of each pair). With --group-by, pairs whose rows are
        in different groups are also noted for the report, and found even with de-duplication off: they are
        the same example on both sides of a group boundary, so they leak when their groups split apart."""
        if not self.cfg.deduplicate and not self.cfg.group_by:
            return examples, 0, 0
        seen: dict[str, Example] = {}
        near = NearDuplicateIndex(self.cfg.near_duplicate_threshold)
        kept: list[Example] = []
        dups = nears = 0
        for n, ex in enumerate(examples, start=1):
            if n % 5000 == 0:
                self.progress("deduplicate", n, len(examples))
            strings = ex.dedup_strings()
            key = content_key(strings)
            first, reason = seen.get(key), "duplicate"
            if first is None:
                seen[key] = ex
                match = near.add_or_match(key, " ".join(strings))
                first, reason = (seen[match], "near_duplicate") if match is not None else (None, "")
            if first is None:
                kept.append(ex)
                continue
            if self.cfg.group_by:
                self.cross_group.note(first, ex, reason)
            if not self.cfg.deduplicate:
                kept.append(ex)
                continue
            detail = (f"same content as {first.source}" if reason == "duplicate"
                      else f"near-duplicate of {first.source} (Jaccard >= {near.threshold})")
            self._reject(ex.source, reason, detail, ex.to_dict())
            dups += reason == "duplicate"
            nears += reason == "near_duplicate"
        return kept, dups, nears

    def _tokenize(self, examples: list[Example]):
        from executor.data.template import ChatTemplate
        from executor.models.registry import load_tokenizer, resolve

        tokenizer = self.cfg.tokenizer or load_tokenizer(self.cfg.model)
        spec = resolve(self.cfg.model) if self.cfg.tokenizer is None else None
        context = (spec.context_length if spec else None) or min(tokenizer.model_max_length, 1_000_000)
        max_length = self.cfg.max_length or context
        self.max_length = max_length
        template = ChatTemplate(tokenizer, max_length)
        for ex in examples:
            if ex.kind != "text":
                template.place_system(ex)
        lengths: list[int] = []
        batch = 1000
        for start in range(0, len(examples), batch):
            lengths += template.token_lengths(examples[start:start + batch])
            self.progress("tokenize", min(start + batch, len(examples)), len(examples))
        kept, kept_lengths = [], []
        for ex, length in zip(examples, lengths, strict=True):
            if isinstance(length, str):
                self._reject(ex.source, "template_error", length, ex.to_dict())
            elif length > max_length:
                self._reject(ex.source, "too_long", f"{length} tokens > max length {max_length}", ex.to_dict())
            else:
                kept.append(ex)
                kept_lengths.append(length)
        template.check_masks(kept[:50])
        return template, kept, kept_lengths

    def _split(self, examples: list[Example]) -> list[str]:
        labels = [ex.label for ex in examples]
        if not self.cfg.group_by:
            return stratified_split(labels, self.cfg.split, self.cfg.seed)
        return group_split(labels, [self.groups[ex.source] for ex in examples], self.cfg.split, self.cfg.seed)

    def _group_report(self, examples: list[Example], assignment: list[str]) -> dict[str, Any] | None:
        if not self.cfg.group_by:
            return None
        groups = [self.groups[ex.source] for ex in examples]
        split_of_group = dict(zip(groups, assignment, strict=True))
        return group_summary(self.cfg.group_by, groups, assignment, self.cfg.split, self.without_group,
                             self.cross_group.summary(split_of_group))

    def _write(self, input_rows, fmt, examples, lengths, assignment, template, pii, dups, near) -> dict[str, Any]:
        cfg = self.cfg
        cfg.out.mkdir(parents=True, exist_ok=True)
        handles = {s: (cfg.out / f"{s}.jsonl").open("w", encoding="utf-8") for s in SPLITS}
        counts: Counter = Counter()
        lengths_by_split: dict[str, list[int]] = {s: [] for s in SPLITS}
        labels: dict[str, Counter] = {s: Counter() for s in ("all", *SPLITS)}
        try:
            for ex, length, split in zip(examples, lengths, assignment, strict=True):
                handles[split].write(json.dumps(export(ex, cfg.output_format), ensure_ascii=False) + "\n")
                counts[split] += 1
                lengths_by_split[split].append(length)
                if ex.label is not None:
                    labels["all"][ex.label] += 1
                    labels[split][ex.label] += 1
        finally:
            for handle in handles.values():
                handle.close()
        with (cfg.out / "rejects.jsonl").open("w", encoding="utf-8") as handle:
            for reject in sorted(self.rejects, key=lambda r: (r.source.file, r.source.line or 0, r.source.item or 0)):
                handle.write(json.dumps(reject.to_dict(), ensure_ascii=False, default=str) + "\n")
        rejected = {reason: 0 for reason in REJECT_REASONS}
        rejected.update(Counter(r.reason for r in self.rejects))
        kept = sum(counts.values())
        review_rows = write_review_sample(cfg.out / "review.csv", list(zip(assignment, examples, strict=True)),
                                          cfg.review_size, cfg.seed)
        has_labels = bool(labels["all"])
        chart = cfg.out / "report.png"
        write_chart(chart, lengths_by_split, labels["all"])
        report = {
            "input": str(cfg.input),
            "input_rows": input_rows,
            "kept": kept,
            "rejected": rejected,
            "accounted_for": input_rows == kept + sum(rejected.values()),
            "blank_lines_skipped": self.load_stats.blank_lines,  # not rows: counted so every line is accounted for
            "duplicates_removed": dups,
            "near_duplicates_removed": near,
            "pii_redacted": dict(sorted(pii.items())),
            "splits": {s: counts[s] for s in SPLITS},
            "groups": self._group_report(examples, assignment),
            "group_suggestion": self.group_suggestion,
            "detected_format": {"name": fmt.name, "fields": fmt.fields, "label_column": fmt.label_column,
                                "explanation": fmt.explanation},
            "output_format": cfg.output_format,
            "token_lengths": {s: length_stats(v) for s, v in {"all": lengths, **lengths_by_split}.items()},
            "labels": {k: dict(v.most_common()) for k, v in labels.items()} if has_labels else {},
            "template": template.report.to_dict(),
            "review": {"file": "review.csv", "rows": review_rows},
            "chart": "report.png",
            "settings": {
                "model": cfg.model or "smollm2-135m-instruct", "split": list(cfg.split), "seed": cfg.seed,
                "stratify": cfg.stratify or fmt.label_column, "group_by": cfg.group_by, "redact_pii": cfg.redact_pii,
                "deduplicate": cfg.deduplicate, "near_duplicate_threshold": cfg.near_duplicate_threshold,
                "min_chars": cfg.min_chars, "max_length": self.max_length, "language": cfg.language,
                "system_prompt": cfg.system_prompt,
                "mapping": cfg.mapping,
            },
        }
        (cfg.out / "report.md").write_text(render_markdown(report), encoding="utf-8")
        return report


def prepare(config: PrepareConfig, progress: Progress | None = None) -> dict[str, Any]:
    return Preparer(config, progress).run()
