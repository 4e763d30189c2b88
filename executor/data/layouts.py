"""TRL's dataset types that take more than renaming columns to become Tunewise examples.

    implicit prompt    preference pairs given as two whole conversations (or two whole texts): the part they
                       share is the prompt, where they part is the chosen and the rejected reply
    unpaired           TRL's KTO layout, prompt + completion + label true/false, one completion per row
    stepwise           TRL's process-supervision layout, prompt + completions (the steps) + labels (one per step)

Tunewise trains with SFT and DPO (and RLHF's reward model on pairs); it has no KTO or process-reward trainer,
so the last two become supervised examples of what was judged good, and the rest is rejected with a reason
(see `desirable_completion` and `correct_solution`). Pairing desirable and undesirable completions of one
prompt into DPO pairs would need every row at once, and the pipeline converts row by row, each row into
exactly one example or reject.
"""

from __future__ import annotations

import re
from typing import Any

_WORD_BREAK = re.compile(r"\s")


class RowError(ValueError):
    """One row does not fit its layout; the schema turns it into a schema_error Reject with this message."""


class Undesirable(RowError):
    """The row was judged bad (label false, or a wrong step): it is kept out of training, reason 'undesirable'."""


# ---------------------------------------------------------------------------------------------- implicit prompt

def split_conversations(chosen: list[dict[str, str]], rejected: list[dict[str, str]], names: tuple[str, str]
                        ) -> tuple[list[dict[str, str]], str, str]:
    """(prompt turns, chosen reply, rejected reply) of two conversations that share their start.

    The shared turns are the prompt and the first turn where they differ must be the assistant's in both: that
    reply is what the preference judged. When the conversations go on after it, the later turns answer to
    different replies, so they are not part of the pair (TRL keeps them as a multi-turn completion; a
    Tunewise pair compares one reply to one reply).
    """
    a, b = names
    if chosen == rejected:
        raise RowError(f"fields '{a}' and '{b}' are the same conversation: no reply to prefer")
    shared = _shared_turns(chosen, rejected)
    if shared == len(chosen) or shared == len(rejected):
        shorter = a if shared == len(chosen) else b
        raise RowError(f"field '{shorter}' ends where the other goes on: no pair of differing replies")
    if chosen[shared]["role"] != "assistant" or rejected[shared]["role"] != "assistant":
        raise RowError(f"fields '{a}' and '{b}' continue different conversations")
    return chosen[:shared], chosen[shared]["content"], rejected[shared]["content"]


def _shared_turns(first: list[dict[str, str]], second: list[dict[str, str]]) -> int:
    count = 0
    for x, y in zip(first, second, strict=False):
        if x != y:
            break
        count += 1
    return count


def split_texts(chosen: str, rejected: str, names: tuple[str, str]) -> tuple[str, str, str]:
    """(prompt, chosen reply, rejected reply) of two plain texts that share their beginning (TRL's standard
    implicit-prompt preference: "The sky is blue." / "The sky is green."). The cut goes back to the last
    whitespace inside the shared part, so no reply starts mid-word ("blue" / "blurry" share "blu")."""
    a, b = names
    if chosen.strip() == rejected.strip():
        raise RowError(f"fields '{a}' and '{b}' are the same text: no reply to prefer")
    shared = len(_common_prefix(chosen, rejected))
    cut = max((m.start() for m in _WORD_BREAK.finditer(chosen, 0, shared + 1)), default=0)
    prompt = chosen[:cut].strip()
    if not prompt:
        raise RowError(f"fields '{a}' and '{b}' share no beginning: there is no implicit prompt (give a prompt "
                       "column)")
    return prompt, chosen[cut:].strip(), rejected[cut:].strip()


def _common_prefix(first: str, second: str) -> str:
    end = 0
    for x, y in zip(first, second, strict=False):
        if x != y:
            break
        end += 1
    return first[:end]


# ---------------------------------------------------------------------------------------------- unpaired preference

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def judgement(value: Any, path: str) -> bool:
    """A KTO/stepwise label: a boolean, or the same written as text ("True", "false") as CSV exports do."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
        return value.strip().lower() in _TRUE
    raise RowError(f"field '{path}' must be true or false, got {value!r}")


def desirable_completion(label: Any, path: str) -> None:
    """Unpaired preference -> SFT: only completions labeled desirable are learned; an undesirable one would
    teach the model exactly what the label says to avoid, so it is rejected (counted, not silently dropped)."""
    if not judgement(label, path):
        raise Undesirable(f"field '{path}' is false: an undesirable completion; SFT learns only the desirable "
                          "ones (Tunewise has no KTO trainer)")


# ---------------------------------------------------------------------------------------------- stepwise supervision

def correct_solution(steps: Any, labels: Any, names: tuple[str, str]) -> str:
    """Stepwise supervision -> SFT: a solution whose every step is labeled correct, its steps one per line.

    A solution with a wrong step is rejected rather than cut before that step: the steps before it are
    correct but do not finish the solution, and learning them as a whole answer would teach stopping halfway.
    """
    steps_name, labels_name = names
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise RowError(f"field '{steps_name}' must be a non-empty list of step texts")
    if not isinstance(labels, list) or len(labels) != len(steps):
        count = len(labels) if isinstance(labels, list) else "not a list"
        raise RowError(f"field '{labels_name}' must hold one true/false per step ({len(steps)} steps, labels: "
                       f"{count})")
    wrong = [i for i, label in enumerate(labels, start=1) if not judgement(label, labels_name)]
    if wrong:
        raise Undesirable(f"step {wrong[0]} of {len(steps)} is labeled false in '{labels_name}': SFT learns only "
                          "solutions whose every step is correct (Tunewise has no process-reward trainer)")
    return "\n".join(step.strip() for step in steps)
