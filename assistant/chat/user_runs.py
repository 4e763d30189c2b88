"""Which runs a chat user may see: only their own (`RunStore.submit(..., owner=user.identifier)`).

Another user's run and a run that does not exist get the same answer, so a chat user cannot probe which run ids
exist (issue #17)."""

from __future__ import annotations

from typing import Any

from assistant.chat.uploads import user_identifier
from executor.runs.store import RunNotFound, RunStore


class RunNotVisible(LookupError):
    """No run with this id among the user's runs (it does not exist, or it belongs to someone else)."""


def runs_for(user: Any, store: RunStore | None = None) -> list[dict[str, Any]]:
    """The runs `user` submitted, oldest first."""
    return (store or RunStore()).list(owner=user_identifier(user))


def get_run_for(user: Any, run_id: str, store: RunStore | None = None) -> dict[str, Any]:
    """The run, if `user` owns it; otherwise RunNotVisible, with the same message whether or not it exists."""
    owner = user_identifier(user)
    try:
        run = (store or RunStore()).get(run_id)
    except RunNotFound:
        run = None
    if run is None or run["owner"] != owner:
        raise RunNotVisible(f"{run_id}: no such run among your runs")
    return run
