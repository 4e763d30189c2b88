"""`tunewise users add NAME | list | remove NAME`: the chat's accounts in the users file (see accounts.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from assistant.chat import accounts

users_app = typer.Typer(help="Chat accounts: salted password hashes in $TUNEWISE_HOME/users.yaml.",
                        no_args_is_help=True)


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", fg="red", err=True)
    return typer.Exit(2)


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, '.', '_', '-', '@').")],
    password: Annotated[str | None, typer.Option(
        "--password", help="For scripts; prompted (hidden, twice) when left out.")] = None,
    role: Annotated[str, typer.Option(help="user or admin.")] = "user",
    update: Annotated[bool, typer.Option("--update", help="Change the password of an existing user.")] = False,
) -> None:
    """Add a chat user (or change a password with --update)."""
    try:
        accounts.validate_name(name)
        if password is None:
            password = typer.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
        path = accounts.add_user(name, password, role=role, update=update)
    except accounts.AccountError as exc:
        raise _fail(exc) from None
    typer.echo(f"{'updated' if update else 'added'} {name} ({role}) in {path}")


@users_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False) -> None:
    """List chat users and where each comes from (users file or TUNEWISE_USERS)."""
    try:
        rows = accounts.list_users()
    except accounts.AccountError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo(f"no users yet: add one with `tunewise users add NAME` (file: {accounts.users_file()})")
        return
    for row in rows:
        typer.echo(f"{row['name']:<24} {row['role']:<6} {row['source']:<5} {row['created']}")


@users_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Remove a chat user from the users file (their threads, uploads and runs stay)."""
    try:
        path = accounts.remove_user(name)
    except accounts.AccountError as exc:
        raise _fail(exc) from None
    typer.echo(f"removed {name} from {path}")
