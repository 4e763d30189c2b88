"""The records that flow through data preparation.

    RawRow   one parsed input record (or the reason it could not be parsed), with where it came from
    Example  the canonical form every supported schema maps to: chat messages (+ preference replies,
             label, or plain text for corpora)
    Reject   a row that will not be trained on, with the reason and the source line: rejects.jsonl

Rows never disappear: the pipeline turns each RawRow into exactly one Example or one Reject.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Why a row was rejected (the keys of report.json's `rejected`).
REJECT_REASONS = (
    "parse_error",          # the line/record is not valid JSON/CSV/... (truncated line, binary bytes)
    "schema_error",         # parsed, but a required field is missing or has the wrong type
    "undesirable",          # the data itself judges it bad: a KTO completion labeled false, a solution with a
                            # wrong step (stepwise supervision); supervised training must not learn it
    "empty",                # no text left after cleaning
    "too_short",            # below the minimum length
    "too_long",             # longer than the model's context after tokenization
    "response_equals_prompt",
    "wrong_language",
    "duplicate",            # exact duplicate of an earlier row
    "near_duplicate",       # MinHash near-duplicate of an earlier row
    "template_error",       # the chat template cannot render it
)


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a row came from: file and 1-based line (the line the record starts on), or item index."""

    file: str
    line: int | None = None
    item: int | None = None  # 0-based index inside a JSON array / Parquet table / dataset folder

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.file}:{self.line}"
        if self.item is not None:
            return f"{self.file}[{self.item}]"
        return self.file

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("file", self.file), ("line", self.line), ("item", self.item)) if v is not None}


@dataclass(slots=True)
class RawRow:
    source: SourceRef
    data: dict[str, Any] | None  # column/field -> value, as parsed; None when it could not be parsed
    error: str | None = None     # why it could not be parsed (becomes a parse_error reject)


@dataclass(slots=True)
class Example:
    """The canonical form.

    messages  [{"role": "system"|"user"|"assistant", "content": str}, ...]. For SFT data the last turn is
              the assistant's; for preference data these are the prompt turns (ending with the user's).
    chosen / rejected   preference data: the better and the worse assistant reply.
    text      plain-text rows (a document corpus, continued pre-training): no messages.
    label     classification label or category: what stratified splitting and the label chart use.
    """

    source: SourceRef
    messages: list[dict[str, str]] = field(default_factory=list)
    chosen: str | None = None
    rejected: str | None = None
    text: str | None = None
    label: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if self.chosen is not None:
            return "preference"
        if self.text is not None and not self.messages:
            return "text"
        return "chat"

    def strings(self) -> list[str]:
        """Every text field, in a fixed order (for cleaning, hashing, length checks)."""
        out = [m["content"] for m in self.messages]
        out += [s for s in (self.chosen, self.rejected, self.text) if s is not None]
        return out

    def dedup_strings(self) -> list[str]:
        """What makes two rows the same example: everything but system turns. A shared system prompt or
        a shared reference document says nothing about whether two rows teach the same thing."""
        out = [m["content"] for m in self.messages if m["role"] != "system"]
        out += [s for s in (self.chosen, self.rejected, self.text) if s is not None]
        return out

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.messages:
            data["messages"] = self.messages
        if self.chosen is not None:
            data["chosen"] = self.chosen
            data["rejected"] = self.rejected
        if self.text is not None:
            data["text"] = self.text
        if self.label is not None:
            data["label"] = self.label
        if self.metadata:
            data["metadata"] = self.metadata
        data["source"] = self.source.to_dict()
        return data


@dataclass(slots=True)
class Reject:
    source: SourceRef
    reason: str   # one of REJECT_REASONS
    detail: str   # what exactly was wrong, naming the field ("missing field 'output'")
    data: Any = None  # the row as parsed (or the raw text for parse errors), so nothing is lost

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "detail": self.detail, "source": self.source.to_dict(), "row": self.data}
