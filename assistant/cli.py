"""The `tunewise` command line: the advisor's `recommend`, the executor's commands and the chat's `users`.

    tunewise recommend "TEXT"                  readable recommendation
    tunewise recommend "TEXT" --json           one JSON object
    tunewise recommend --jsonl - < in.jsonl    one JSON line per {"id": ..., "text": ...} input line
    tunewise recommend "TEXT" --plan-out plan.yaml
    tunewise pilot plan.yaml --data DIR        measure the candidates on a sample, revise the advice

This module only mounts commands, so it is the one module above the advisor, the chat and the executor
(tests/test_imports.py): it may import all three and none imports it. Heavy imports (torch, chroma) happen
inside the commands, so --help is fast.
"""

from __future__ import annotations

import typer

from assistant.chat.users_cli import users_app
from assistant.pilot_cli import pilot_command
from assistant.recommend_cli import recommend
from executor.cli import data_app, eval_command, runs_app, train_command, worker_command
from executor.export.cli import export_command, plan_app, serve_command

app = typer.Typer(
    name="tunewise",
    help="Tunewise: advice on customizing a language model for your domain, and the run that proves it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Tunewise command line."""


app.add_typer(data_app, name="data")
app.add_typer(runs_app, name="runs")
app.command("worker")(worker_command)
app.command("train")(train_command)
app.command("eval")(eval_command)
app.command("pilot")(pilot_command)
app.add_typer(users_app, name="users")
app.command("export")(export_command)
app.command("serve")(serve_command)
app.add_typer(plan_app, name="plan")
app.command("recommend")(recommend)


if __name__ == "__main__":  # pragma: no cover
    app()
