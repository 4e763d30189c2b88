"""Executor commands (`tunewise data ...`), mounted on the `tunewise` CLI by assistant/cli.py.

Lazy imports: each command imports what it runs when it runs, so `tunewise --help` and the other commands answer at
once.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(help="Prepare a team's data: load, clean, redact, de-duplicate, split, report.",
                       no_args_is_help=True)


def _fractions(spec: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in spec.split(","))
    except ValueError:
        raise typer.BadParameter(f"{spec!r}: expected three numbers like 0.8,0.1,0.1", param_hint="--split") from None
    if len(parts) != 3 or abs(sum(parts) - 1.0) > 1e-6 or min(parts) < 0:
        raise typer.BadParameter(f"{spec!r}: three non-negative fractions summing to 1", param_hint="--split")
    return parts  # type: ignore[return-value]


@data_app.command("prepare")
def prepare_command(
    input: Annotated[Path, typer.Argument(help="A JSONL/JSON/CSV/TSV/Parquet/Arrow file, a `datasets` "
                                               "folder, a Hugging Face Hub dataset folder (data files or Parquet "
                                               "shards) or a folder of .txt/.md documents.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    model: Annotated[str | None, typer.Option("--model", help="Base model (catalog id, local folder, hub id) "
                                              "whose tokenizer and chat template are used.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Output format: chatml, alpaca, sharegpt, openai.")] = "chatml",
    split: Annotated[str, typer.Option("--split", help="train,validation,test fractions.")] = "0.8,0.1,0.1",
    stratify: Annotated[str | None, typer.Option("--stratify", help="Column to stratify the split on "
                                                 "(default: the detected label column).")] = None,
    group_by: Annotated[str | None, typer.Option("--group-by", help="Column (dotted for nested) whose rows stay "
                                                 "in one split: db_id, document_id, customer_id. The test split "
                                                 "then measures unseen groups.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    no_pii: Annotated[bool, typer.Option("--no-pii", help="Do not redact PII.")] = False,
    mapping: Annotated[str | None, typer.Option("--map", help="Column mapping when detection is ambiguous, e.g. "
                                                "prompt=question,completion=answer.")] = None,
    system: Annotated[str | None, typer.Option("--system", help="System prompt for rows without one.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Max tokens per example (default: model context).")] = None,
    language: Annotated[str | None, typer.Option(help="Keep only rows in this language (en, de, fr, es, it, "
                                                 "pt, nl).")] = None,
    near_dup: Annotated[float, typer.Option("--near-dup-threshold", help="MinHash Jaccard threshold.")] = 0.85,
    dedup: Annotated[bool, typer.Option(help="Remove exact and near duplicates.")] = True,
    review: Annotated[int, typer.Option("--review", help="Rows in the human review sample.")] = 50,
) -> None:
    """Turn INPUT into train/validation/test splits, rejects.jsonl and a report (JSON, Markdown, PNG)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from executor.data.load import DataError
    from executor.data.pipeline import PrepareConfig, prepare
    from executor.data.schema import SchemaError, parse_mapping
    from executor.models.registry import ModelError

    console = Console(stderr=True)
    try:
        config = PrepareConfig(
            input=input, out=out, model=model, output_format=fmt, split=_fractions(split), stratify=stratify,
            group_by=group_by, seed=seed, redact_pii=not no_pii, deduplicate=dedup, near_duplicate_threshold=near_dup,
            max_length=max_length, language=language, mapping=parse_mapping(mapping) if mapping else None,
            system_prompt=system, review_size=review,
        )
        with Progress(TextColumn("{task.description:12s}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int | None) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            report = prepare(config, progress)
    except (DataError, SchemaError, ModelError, ValueError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        if isinstance(exc, SchemaError) and "mapping" in str(exc):
            console.print("Give the mapping with --map, e.g. --map prompt=question,completion=answer")
        raise typer.Exit(2) from None
    rejected = {k: v for k, v in report["rejected"].items() if v}
    console.print(f"{report['input_rows']:,} rows read as [bold]{report['detected_format']['name']}[/bold] -> "
                  f"{report['kept']:,} kept ({', '.join(f'{k} {v:,}' for k, v in report['splits'].items())}), "
                  f"{sum(rejected.values()):,} rejected {json.dumps(rejected) if rejected else ''}")
    if report["pii_redacted"]:
        console.print(f"PII redacted: {json.dumps(report['pii_redacted'])}")
    _print_groups(console, report)
    for problem in report["template"]["problems"]:
        console.print(f"[yellow]template problem:[/yellow] {problem}")
    console.print(f"Report: {out / 'report.md'}")


def _print_groups(console, report: dict) -> None:
    groups, suggestion = report.get("groups"), report.get("group_suggestion")
    if suggestion:
        console.print(f"[yellow]suggestion:[/yellow] {suggestion['text']}", highlight=False)
    if not groups:
        return
    per_split = ", ".join(f"{s} {v['groups']:,} ({v['rows']:,} rows)" for s, v in groups["splits"].items())
    console.print(f"{groups['groups']:,} groups of {groups['column']} -> {per_split}", highlight=False)
    for note in groups["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    dups = groups["cross_group_duplicates"]
    if dups["pairs"]:
        console.print(f"{dups['pairs']:,} (near-)duplicate pairs across groups, {dups['across_splits']:,} across "
                      f"splits ({'removed' if dups['removed'] else 'kept: de-duplication is off'})", highlight=False)


@data_app.command("review")
def review_command(
    out: Annotated[Path, typer.Argument(help="The folder `tunewise data prepare` wrote.")],
) -> None:
    """Tally the verdicts a reviewer recorded in OUT/review.csv and store them in OUT/report.json."""
    from executor.data.report import read_review_verdicts, write_json

    review, report_path = out / "review.csv", out / "report.json"
    if not review.exists() or not report_path.exists():
        typer.secho(f"error: {out} has no review.csv/report.json; run `tunewise data prepare` first", err=True,
                    fg="red")
        raise typer.Exit(2)
    tally = read_review_verdicts(review)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    report["review"].update(tally)
    write_json(report_path, report)
    typer.echo(json.dumps(tally))


def run_flags(plan, data: Path | None = None, max_steps: int | None = None, evaluate: bool = False,
              eval_limit: int | None = None) -> dict:
    """The plan fields that the run flags set, for `plan.with_overrides` (a flag left out keeps the plan's value):
    the plan stored and written to the run directory is then the whole run."""
    overrides: dict = {}
    if data is not None:
        overrides["data.path"] = str(data)
    if max_steps and plan.training is not None:  # a plan that trains nothing is refused by preflight, as before
        overrides["training.max_steps"] = max_steps
    if evaluate or eval_limit is not None:
        overrides["evaluation.after_training"] = True
    if eval_limit:
        overrides["evaluation.max_rows"] = eval_limit
    return overrides


def train_command(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN.yaml",
                                              help="A plan from `tunewise recommend --plan-out`.")],
    data: Annotated[Path | None, typer.Option("--data", help="Prepared data folder (default: the plan's "
                                              "data.path).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default: runs/<plan name>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's last checkpoint.")] = False,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Cap optimizer steps (a quick smoke run).")]
    = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate plan and data, then run a few steps with a "
                                          "tiny model sharing the base model's tokenizer.")] = False,
) -> None:
    """Train a plan: full, LoRA, QLoRA, prompt tuning, DPO, RLHF, or hosted API fine-tuning."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from executor.models.registry import ModelError
    from executor.paths import data_dir as home
    from executor.plan import PlanError, load_plan
    from executor.train.api import HostedFineTuneError
    from executor.train.data import DataDirError
    from executor.train.runner import PlanCannotRun, train

    console = Console(stderr=True)
    try:
        plan = load_plan(plan_path)
        plan = plan.with_overrides(run_flags(plan, data, max_steps))
        run_dir = out or home() / "runs" / plan_path.stem
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(f"{plan.technique} on {plan.base_model.id}", total=None, info="")

            def progress(step: int, total: int, record: dict) -> None:
                info = []
                if record.get("loss") is not None:
                    info.append(f"loss {record['loss']:.4f}")
                if record.get("eval_loss") is not None:
                    info.append(f"eval {record['eval_loss']:.4f}")
                if record.get("tokens_per_second"):
                    info.append(f"{record['tokens_per_second']:.0f} tok/s")
                bar.update(task, completed=step, total=total or None, info=", ".join(info))

            result = train(plan, run_dir, resume=resume, dry_run=dry_run, progress=progress)
    except (PlanError, PlanCannotRun, ModelError, DataDirError, HostedFineTuneError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    for note in result.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    console.print(f"Trained {result.get('steps', '?')} steps: loss {result.get('first_loss')} -> "
                  f"{result.get('final_loss')}, best eval loss {result.get('best_eval_loss')}. Run: {run_dir}")


def eval_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory from `tunewise train`.")],
    test: Annotated[Path | None, typer.Option("--test", help="Test file (default: the run's test split).")] = None,
    task: Annotated[str, typer.Option("--task", help="auto, exact_match, classification, json, generation.")]
    = "auto",
    baselines: Annotated[str | None, typer.Option("--baselines", help="Comma list of zero_shot, few_shot, rag "
                                                  "(default: the plan's).")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", help="Evaluate a seeded random sample of N test rows (stratified by label).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compare the tuned model with its base and the cheaper baselines on the test split."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from executor.evaluate.report import comparison_rows
    from executor.evaluate.runner import EvalError, evaluate
    from executor.models.registry import ModelError
    from executor.plan import PlanError
    from executor.train.data import DataDirError

    console = Console(stderr=True)
    chosen = tuple(b.strip() for b in baselines.split(",") if b.strip()) if baselines is not None else None
    try:
        report = evaluate(run_dir, test_file=test, task=task, baselines=chosen, limit=limit)
    except (EvalError, PlanError, ModelError, DataDirError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    metrics, rows = comparison_rows(report)
    table = Table(title=f"{report['task']} on {report['n']} test examples (95% CI)")
    table.add_column("system")
    for metric in metrics:
        table.add_column(metric)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    typer.echo(f"Report: {run_dir / 'report.md'}")


runs_app = typer.Typer(help="The run queue: submit plans, follow, cancel and resume runs.", no_args_is_help=True)


def _store():
    from executor.runs.store import RunStore

    return RunStore()


def _store_errors(command):
    """A store that cannot be read, or a run id it does not hold, ends the command with one line (exit 2), not a
    traceback."""
    @functools.wraps(command)
    def wrapped(*args, **kwargs):
        from executor.runs.store import RunNotFound, StoreError

        try:
            return command(*args, **kwargs)
        except StoreError as exc:
            typer.secho(f"error: {exc}", err=True, fg="red")
            raise typer.Exit(2) from None
        except RunNotFound as exc:
            typer.secho(f"error: no run {exc.args[0]!r} (see `tunewise runs list`)", err=True, fg="red")
            raise typer.Exit(2) from None

    return wrapped


@runs_app.command("submit")
@_store_errors
def runs_submit(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN.yaml")],
    data: Annotated[Path | None, typer.Option("--data", help="Prepared data folder.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps")] = None,
    priority: Annotated[int, typer.Option("--priority", help="Higher runs first.")] = 0,
    evaluate: Annotated[bool, typer.Option("--evaluate", help="Evaluate on the test split after training.")] = False,
    eval_limit: Annotated[int | None, typer.Option("--eval-limit", help="Evaluate on at most N test rows.")] = None,
    pilot: Annotated[bool, typer.Option("--pilot", help="Queue a pilot of the plan instead of its training: the "
                                        "candidates measured on a sample of the data (see `tunewise pilot`).")]
    = False,
    budget_minutes: Annotated[float | None, typer.Option("--budget-minutes", min=0.1, help="A pilot's time budget "
                                                         "(default: 5 minutes on a GPU, 15 on a CPU).")] = None,
) -> None:
    """Queue a plan; prints the run id alone on its last line."""
    from executor.plan import PlanError, load_plan

    try:
        plan = load_plan(plan_path)
        folder = data or (Path(plan.data.path) if plan.data.path else None)  # absolute: the worker runs elsewhere
        plan = plan.with_overrides(run_flags(plan, folder.resolve() if folder else None, max_steps, evaluate,
                                             eval_limit))
    except PlanError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None
    if budget_minutes is not None and not pilot:
        typer.secho("error: --budget-minutes is a pilot's budget; add --pilot", err=True, fg="red")
        raise typer.Exit(2)
    if pilot and not plan.data.path:
        typer.secho("error: a pilot needs the prepared data folder: --data DIR", err=True, fg="red")
        raise typer.Exit(2)
    run_id = _store().submit(plan.to_yaml(), priority=priority, plan_path=str(plan_path),
                             kind="pilot" if pilot else "train",
                             budget_seconds=budget_minutes * 60 if budget_minutes else None)
    typer.echo(run_id)


@runs_app.command("list")
@_store_errors
def runs_list() -> None:
    """All runs, oldest first."""
    for run in _store().list():
        typer.echo(f"{run['id']}  {run['status']:9s}  attempt {run['attempt']}  {run['run_dir']}")


@runs_app.command("show")
@_store_errors
def runs_show(run_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Status, progress, latest metrics and run directory."""
    from executor.runs.events import read_event
    from executor.runs.store import RunNotFound

    store = _store()
    try:
        run = store.get(run_id)
    except RunNotFound:
        typer.secho(f"error: no run {run_id!r} (see `tunewise runs list`)", err=True, fg="red")
        raise typer.Exit(2) from None
    latest = {}  # each kind's last payload, read through the events contract (executor/runs/events.py)
    for event in map(read_event, store.events(run_id)):
        latest[event.kind] = event.data
    info = {k: run[k] for k in ("id", "kind", "status", "attempt", "max_attempts", "run_dir", "error", "created_at",
                                "started_at", "finished_at", "gpus", "backend", "external_id")}
    info["stage"] = latest.get("stage")
    info["evaluation"] = latest.get("evaluation")
    if run["kind"] == "pilot":
        info["pilot"] = latest.get("pilot")
    progress = latest.get("progress")
    info["progress"] = {"step": progress["step"], "total": progress["total"]} if progress else None
    info["latest_metrics"] = progress
    info["artifacts"] = store.artifacts(run_id)
    if as_json:
        typer.echo(json.dumps(info))
        return
    for key, value in info.items():
        typer.echo(f"{key:15s} {value}")


@runs_app.command("logs")
@_store_errors
def runs_logs(run_id: str, follow: Annotated[bool, typer.Option("--follow")] = False) -> None:
    """The run's event log (status, progress, messages); --follow until the run ends."""
    store = _store()
    events = store.follow(run_id, interval=1.0) if follow else store.events(run_id)
    for event in events:
        typer.echo(f"{event['kind']:8s} {json.dumps(event['data'])}")


@runs_app.command("cancel")
@_store_errors
def runs_cancel(run_id: str) -> None:
    """Cancel a queued or running run."""
    typer.echo(_store().request_cancel(run_id))


@runs_app.command("resume")
@_store_errors
def runs_resume(run_id: str) -> None:
    """Queue a failed or cancelled run again; it continues from its last checkpoint."""
    try:
        _store().resume(run_id)
    except ValueError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None
    typer.echo("queued")


@runs_app.command("recover")
@_store_errors
def runs_recover(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even a readable store (it is kept beside).")]
    = False,
) -> None:
    """Rebuild a lost or unreadable run store from the run directories (the old file is moved aside, not deleted)."""
    from executor.runs.recover import recover

    report = recover(force=force)
    for moved in report.moved:
        typer.echo(f"kept the old store as {moved}")
    counts = {status: list(report.runs.values()).count(status) for status in sorted(set(report.runs.values()))}
    typer.echo(f"recovered {len(report.runs)} runs into {report.store}"
               + (f" ({', '.join(f'{n} {s}' for s, n in counts.items())})" if counts else ""))
    for run_dir, why in report.skipped.items():
        typer.secho(f"skipped {run_dir}: {why}", err=True, fg="yellow")
    if report.unrecorded:
        typer.echo(f"{len(report.unrecorded)} runs from before run.json came back without an owner (chat users no "
                   f"longer see them): {', '.join(report.unrecorded)}")
    if counts.get("failed"):
        typer.echo("runs that had not finished are marked failed: `tunewise runs resume ID` continues one")


def worker_command(
    once: Annotated[bool, typer.Option("--once", help="Drain the queue, then exit.")] = False,
    slots: Annotated[int | None, typer.Option("--slots", help="Concurrent runs (default: one per GPU, "
                                              "one on CPU).")] = None,
) -> None:
    """Run queued plans, each in its own process, with heartbeats, cancellation and crash recovery."""
    from executor.runs.worker import main as worker_main

    worker_main((["--once"] if once else []) + (["--slots", str(slots)] if slots else []))
