"""Export the canonical Example to the formats trainers and vendors read.

    chatml   {"messages": [...], "text": "<|im_start|>user\\n...<|im_end|>\\n..."} - the canonical messages
             plus the same conversation as ChatML text; preference rows use TRL's conversational layout
             {"prompt": [...], "chosen": [...], "rejected": [...]}
    openai   OpenAI fine-tuning JSONL: {"messages": [...]}; preference rows in OpenAI's DPO layout
             {"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}
    alpaca   {"instruction", "input", "output", "system", "history": [[user, assistant], ...]}
    sharegpt {"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]} (+ chosen/rejected)
Corpus rows (plain text) are {"text": ...} in every format. Except `openai` (whose API refuses unknown
keys), rows also carry `label`, `metadata` and `source`, so every output row traces back to its input.
"""

from __future__ import annotations

from typing import Any

from executor.data.records import Example

FORMATS = ("chatml", "openai", "alpaca", "sharegpt")
_SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}


def chatml_text(messages: list[dict[str, str]]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _chatml(ex: Example) -> dict[str, Any]:
    if ex.kind == "preference":
        return {"prompt": ex.messages, "chosen": _assistant(ex.chosen), "rejected": _assistant(ex.rejected)}
    return {"messages": ex.messages, "text": chatml_text(ex.messages)}


def _openai(ex: Example) -> dict[str, Any]:
    if ex.kind == "preference":
        return {
            "input": {"messages": ex.messages},
            "preferred_output": _assistant(ex.chosen),
            "non_preferred_output": _assistant(ex.rejected),
        }
    return {"messages": ex.messages}


def _alpaca(ex: Example) -> dict[str, Any]:
    system = "\n\n".join(m["content"] for m in ex.messages if m["role"] == "system")
    turns = [m for m in ex.messages if m["role"] != "system"]
    pairs: list[list[str]] = []
    pending: str | None = None
    for m in turns:
        if m["role"] == "user":
            pending = m["content"] if pending is None else pending + "\n\n" + m["content"]
        elif pending is not None:
            pairs.append([pending, m["content"]])
            pending = None
    row: dict[str, Any] = {"instruction": pending or "", "input": "", "output": ""}
    if ex.kind == "preference":
        row.update(chosen=ex.chosen, rejected=ex.rejected)
        del row["output"]
    elif pairs and pending is None:
        row["instruction"], row["output"] = pairs.pop()
    row["system"] = system
    row["history"] = pairs
    return row


def _sharegpt(ex: Example) -> dict[str, Any]:
    row: dict[str, Any] = {
        "conversations": [{"from": _SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in ex.messages]
    }
    if ex.kind == "preference":
        row["chosen"] = {"from": "gpt", "value": ex.chosen}
        row["rejected"] = {"from": "gpt", "value": ex.rejected}
    return row


_EXPORTERS = {"chatml": _chatml, "openai": _openai, "alpaca": _alpaca, "sharegpt": _sharegpt}


def export(ex: Example, fmt: str) -> dict[str, Any]:
    if fmt not in _EXPORTERS:
        raise ValueError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
    row = {"text": ex.text} if ex.kind == "text" else _EXPORTERS[fmt](ex)
    if fmt != "openai":
        if ex.label is not None:
            row["label"] = ex.label
        if ex.metadata:
            row["metadata"] = ex.metadata
        row["source"] = ex.source.to_dict()
    return row
