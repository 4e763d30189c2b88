"""The recommendation as a chat card: Markdown plus the citation passages it links to.

The card says what to do (approach, technique, base model), why (the fired rules in plain words, each with
its citation ids), what it will cost (estimates with their assumptions), what else would win and when, and
what is still unknown. Each cited passage travels as a separate element named by its citation id; Chainlit
turns the id in the text into a link that opens the passage, so the card stays short and the sources are
one click away.
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.recommend import Recommendation
from assistant.render import LABELS
from executor.plan import trains

CITATIONS_SHOWN = 12  # rule citations come first; retrieval adds three


@dataclass(frozen=True)
class CitationElement:
    name: str      # the citation id, as it appears in the card's text
    title: str
    content: str   # Markdown: title, section, the passage


@dataclass(frozen=True)
class Card:
    content: str
    citations: list[CitationElement]


def option_name(approach: str, technique: str) -> str:
    return LABELS[approach] + ("" if technique == "none" else f" with {LABELS[technique]}")


def hours(value) -> str:
    if value is None:
        return "—"
    return f"{value * 60:.0f} min" if value < 1 else f"{value:,.1f} h"


def money(value) -> str:
    return "—" if value is None else f"${value:,.2f}"


def memory(estimates: dict) -> str:
    value = estimates.get("gpu_memory_gb")
    return "—" if value is None else f"{value:g} GB"


def summary(rec: Recommendation) -> str:
    """The templated one-paragraph explanation (the offline backend shows it as is; an LLM may rephrase it)."""
    first = rec.reasons[0].text.rstrip(".") if rec.reasons else "it is the best-scoring option on the facts known"
    first = first[0].lower() + first[1:]
    text = (f"I recommend {option_name(rec.approach, rec.technique)} on {rec.base_model_info['name']}, "
            f"mainly because {first}.")
    if trains(rec.technique) and rec.estimates.get("train_hours") is not None:
        text += (f" Training should need about {memory(rec.estimates)} of memory and take "
                 f"{hours(rec.estimates['train_hours'])} on {rec.estimates['hardware']}.")
    if rec.confidence_label == "low":
        text += " Confidence is low: answering the open questions will sharpen this."
    return text


def recommendation_card(rec: Recommendation, intro: str | None = None) -> Card:
    info = rec.base_model_info
    size = f"{info['params_b']:g}B, " if info.get("params_b") else ""  # hosted API models do not say
    lines = [
        f"### {option_name(rec.approach, rec.technique)}",
        f"**Base model:** {info['name']} ({size}{info['license']}) — {info['why']}  ",
        f"**Confidence:** {rec.confidence_label} ({rec.confidence:.2f})",
        "",
        intro or summary(rec),
    ]
    lines += [f"> Note: {note}" for note in rec.notes]
    lines += ["", "**Why**"]
    for reason in rec.reasons:
        lines.append(f"- {reason.text} — {', '.join(reason.citations)}")
    est = rec.estimates
    lines += ["", "**Estimates**", "", "| GPU memory | Training time | Cost | Hardware |", "|---|---|---|---|",
              f"| {memory(est)} | {hours(est['train_hours'])} | {money(est['cost_usd'])} | {est['hardware']} |"]
    if est.get("assumptions"):
        lines.append(f"_Assumptions: {'; '.join(est['assumptions'])}_")
    if rec.hyperparameters:
        hp = rec.hyperparameters
        keys = ("epochs", "learning_rate", "per_device_batch_size", "gradient_accumulation_steps", "max_seq_length")
        shown = ", ".join(f"{k} {hp[k]}" for k in keys if k in hp)
        if "lora" in hp:
            shown += f", LoRA r {hp['lora']['r']} alpha {hp['lora']['alpha']}"
        lines += ["", f"**Hyperparameters:** {shown} (editable before launch)"]
    if rec.alternatives:
        lines += ["", "**Alternatives**"]
        lines += [f"- {option_name(a.approach, a.technique)}: {a.when_it_wins}" for a in rec.alternatives]
    if rec.questions:
        lines += ["", "**Still open (each could change this)**"]
        lines += [f"- {q.text}" for q in rec.questions[:4]]
    citations = []
    for c in rec.citations[:CITATIONS_SHOWN]:
        why = "cited by a rule" if c.source == "rule" else f"retrieved for your use case, similarity {c.score:.2f}"
        citations.append(CitationElement(c.id, c.title, f"**{c.title} — {c.section}**\n\n{c.passage.strip()}\n\n"
                                                        f"_{why}_"))
    lines += ["", "**Sources** (click to read): " + " · ".join(c.name for c in citations)]
    lines += ["", "Ask “what if …” (e.g. “what if we only had a 12 GB GPU?”) to see how the advice changes."]
    return Card("\n".join(lines), citations)

