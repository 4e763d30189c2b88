"""A recommendation as a person reads it in a terminal (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from assistant.recommend import Recommendation
from executor.plan import TECHNIQUES

LABELS = {
    "prompting": "Prompting", "rag": "RAG (retrieval-augmented generation)", "fine_tuning": "Fine-tuning",
    "rag_fine_tuning": "RAG + fine-tuning", "from_scratch": "Training from scratch",
    **{name: info.label for name, info in TECHNIQUES.items()},
}


def _money(value) -> str:
    return "—" if value is None else f"${value:,.2f}"


def _hours(value) -> str:
    if value is None:
        return "—"
    return f"{value * 60:.0f} min" if value < 1 else f"{value:,.1f} h"


def print_recommendation(rec: Recommendation, console: Console | None = None) -> None:
    console = console or Console()
    head = (
        f"[bold]{LABELS[rec.approach]}[/bold]"
        + (f" with [bold]{LABELS[rec.technique]}[/bold]" if rec.technique != "none" else "")
        + f"\nBase model: [bold]{rec.base_model_info['name']}[/bold] ({rec.base_model_info['why']})"
        + f"\nConfidence: {rec.confidence_label} ({rec.confidence:.2f})"
    )
    console.print(Panel(head, title="Tunewise recommendation", expand=False))
    for note in rec.notes:
        console.print(f"[yellow]Note:[/yellow] {note}")

    console.print("\n[bold]Why[/bold]")
    for reason in rec.reasons:
        console.print(f"  • {escape(reason.text)} [dim]{escape('[' + ', '.join(reason.citations) + ']')}[/dim]")

    est = rec.estimates
    table = Table(title="Estimates", show_header=False, box=None)
    table.add_row("GPU memory", "—" if est["gpu_memory_gb"] is None else f"{est['gpu_memory_gb']:g} GB")
    table.add_row("Training time", _hours(est["train_hours"]))
    table.add_row("Cost", _money(est["cost_usd"]))
    table.add_row("Hardware", est["hardware"])
    table.add_row("Assumptions", "; ".join(est["assumptions"]))
    console.print(table)

    if rec.hyperparameters:
        hp = rec.hyperparameters
        keys = ["epochs", "learning_rate", "per_device_batch_size", "gradient_accumulation_steps", "max_seq_length"]
        line = ", ".join(f"{k}={hp[k]}" for k in keys if k in hp)
        if "lora" in hp:
            line += f", lora r={hp['lora']['r']} alpha={hp['lora']['alpha']}"
        console.print(f"\n[bold]Hyperparameters[/bold]: {line}")

    console.print("\n[bold]Data preparation[/bold]")
    for step in rec.data_preparation:
        console.print(f"  {escape(step)}")
    console.print("\n[bold]Evaluation[/bold]")
    for step in rec.evaluation_plan:
        console.print(f"  {escape(step)}")

    if rec.alternatives:
        console.print("\n[bold]Alternatives[/bold]")
        for alt in rec.alternatives:
            name = LABELS[alt.approach] + ("" if alt.technique == "none" else f" / {LABELS[alt.technique]}")
            console.print(f"  {name}: {alt.when_it_wins}")

    if rec.questions:
        console.print("\n[bold]Questions that would change this[/bold]")
        for q in rec.questions[:5]:
            options = " / ".join(o["label"] for o in q.options)
            console.print(f"  ? {q.text} [dim]({options})[/dim]")

    console.print("\n[bold]Citations[/bold]")
    for c in rec.citations:
        snippet = " ".join(c.passage.split())[:160]
        tag = "" if c.source == "rule" else f" [dim](retrieved, {c.score:.2f})[/dim]"
        console.print(f"  {escape('[' + c.id + ']')} {escape(c.title)} — {escape(c.section)}{tag}\n"
                      f"    [dim]{escape(snippet)}…[/dim]")
