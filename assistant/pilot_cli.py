"""`tunewise pilot PLAN.yaml --data DIR [--budget-minutes N] [--json]` (mounted by assistant/cli.py).

The executor measures (executor/pilot); the advisor revises its advice from the measurement (pilot_advice). The
use case the plan was made for is read again from the plan's `use_case` line, so the revision starts from the
same facts the plan came from.

Lazy imports: the pilot (torch, transformers) and the advisor load inside the command, so `tunewise --help` stays
fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer


def pilot_command(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN.yaml", help="A plan from `tunewise recommend "
                                              "--plan-out`.")],
    data: Annotated[Path, typer.Option("--data", help="Prepared data folder (train.jsonl, test.jsonl; from "
                                       "`tunewise data prepare`).")],
    budget_minutes: Annotated[float | None, typer.Option("--budget-minutes", min=0.1, help="Time budget (default: "
                                                         "5 minutes on a GPU, 15 on a CPU).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default: runs/<plan name>-pilot).")]
    = None,
    documents: Annotated[Path | None, typer.Option("--documents", help="Documents to answer from (a folder of "
                                                   ".txt/.md files or a file `tunewise data prepare` reads): the "
                                                   "pilot then measures RAG over them. Default: the plan's "
                                                   "corpus_path.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report and the revised advice as JSON.")]
    = False,
) -> None:
    """Measure the candidate approaches on a sample of your data within a budget, and revise the advice."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from executor.models.registry import ModelError
    from executor.paths import data_dir as home
    from executor.pilot.runner import PilotError, pilot
    from executor.plan import PlanError, load_plan
    from executor.train.data import DataDirError
    from executor.train.runner import PlanCannotRun

    console = Console(stderr=True)
    try:
        plan = load_plan(plan_path)
        if documents is not None:
            if not documents.exists():
                raise PilotError(f"--documents {documents}: no such file or folder")
            # The plan's corpus, for this pilot only: the RAG system retrieves from it (the plan file is unchanged).
            where = {"data.corpus_path": str(documents)}
            if plan.retrieval is not None:
                where["retrieval.corpus_path"] = str(documents)
            plan = plan.with_overrides(where)
        folder = out or home() / "runs" / f"{plan_path.stem}-pilot"
        # The trainer prints its logs on stdout; they go to stderr so that stdout holds the report alone (--json).
        with console.status("pilot: starting") as status, contextlib.redirect_stdout(sys.stderr):
            report = pilot(plan, data, folder, budget_seconds=budget_minutes * 60 if budget_minutes else None,
                           progress=lambda text: status.update(f"pilot: {escape(text)}"))
    except (PlanError, PilotError, ModelError, DataDirError, PlanCannotRun) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None

    from assistant.pilot_advice import revise
    from assistant.recommend import Advisor

    advisor = Advisor(index=None)  # the revision needs the rules, not the guidance passages
    profile, _ = advisor.profile_from_text(plan.use_case)
    revision = revise(advisor, profile, report, plan.use_case)
    if as_json:
        typer.echo(json.dumps({"pilot": report, "advice": revision.to_dict()}, ensure_ascii=False))
        return
    metric = report["headline_metric"]
    table = Table(title=f"{metric} on {report['n']} test rows (95% CI), {report['model']}")
    table.add_column("system")
    table.add_column(metric)
    for name, metrics in report["systems"].items():
        m = metrics.get(metric) or {}
        table.add_row(name, f"{m.get('value', 0):.3f} [{m.get('ci_low', 0):.3f}, {m.get('ci_high', 0):.3f}]")
    Console().print(table)
    fit = (report.get("curve") or {}).get("fit")
    if fit:
        typer.echo(f"Learning curve: with all {fit['target']:,} train rows, predicted {fit['predicted']:.3f} "
                   f"[{fit['ci_low']:.3f}, {fit['ci_high']:.3f}].")
    for line in report["skipped"]:
        typer.echo(f"Skipped: {line}")
    for line in report["notes"]:
        typer.echo(f"Note: {line}")
    typer.echo(revision.summary())
    typer.echo(f"Report: {folder / 'pilot.md'}")
