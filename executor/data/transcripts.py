"""Transcripts: chat conversations published as one string, read back into turns.

Datasets write conversations out as text in a few conventions:

    human_assistant   "\\n\\nHuman: ...\\n\\nAssistant: ..."   Anthropic HH-RLHF (also "### Human: ...### Assistant:")
    user_assistant    "User: ...\\nAssistant: ..."          (also "System:", "### User:")
    zephyr            "<|system|>\\n...</s>\\n<|user|>\\n...</s>\\n<|assistant|>\\n...</s>"   Zephyr, Tulu, Phi-3,
                      OpenAssistant ("<|prompter|>...</s><|assistant|>...")
    chatml            "<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n...<|im_end|>"

`parse_transcript` answers the turns as [{"role", "content"}] with the roles as written (lower case; the schema
maps human -> user and refuses roles it does not know), or None when the text is not a transcript. A transcript
starts with a role marker and holds at least two: prose that mentions "User:" halfway through stays prose. A
last assistant marker with nothing after it ("...\\n\\nAssistant:") is the generation prompt, not a turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Role words at the start of a line, optionally after "###"; mid-line only after "###" (Guanaco writes
# "...question?### Assistant: ..."), since a bare "User:" inside a line is prose.
_ROLE_LINE = re.compile(r"(?:(?:^|\n)[ \t]*(?:#{1,3}[ \t]*)?|###[ \t]*)(human|user|assistant|system)[ \t]*:",
                        re.IGNORECASE)
_ZEPHYR = re.compile(r"<\|(system|user|prompter|assistant)\|>")  # <|prompter|>: OpenAssistant's user turn
_CHATML = re.compile(r"<\|im_start\|>[ \t]*([A-Za-z_]+)[ \t]*\n?")
# What Zephyr-style and ChatML texts put after a turn: the end-of-sequence / end-of-turn token.
_END_TOKENS = ("</s>", "<|end|>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>")

USER_ROLES = ("user", "human", "prompter")  # how transcripts and message lists name the user's turn
STYLES = {
    "human_assistant": "Human:/Assistant: transcripts as in Anthropic HH-RLHF and Guanaco",
    "user_assistant": "User:/Assistant: transcripts",
    "zephyr": "<|user|>/<|assistant|> transcripts as in Zephyr and Tulu",
    "chatml": "ChatML transcripts, <|im_start|>role ... <|im_end|>",
}


@dataclass(frozen=True)
class Transcript:
    style: str                       # a key of STYLES
    turns: list[dict[str, str]]      # [{"role": as written, lower case, "content": stripped}]


def parse_transcript(text: str) -> Transcript | None:
    """The turns of a transcript, or None when `text` is not one (see the module docstring)."""
    if not isinstance(text, str):
        return None
    start = text.lstrip()
    if start.startswith("<|im_start|>"):
        return _split(text, _CHATML, "chatml")
    if _ZEPHYR.match(start):
        return _split(text, _ZEPHYR, "zephyr")
    found = _split(text, _ROLE_LINE, "user_assistant")
    if found and any(t["role"] == "human" for t in found.turns):
        return Transcript("human_assistant", found.turns)
    return found


def _split(text: str, marker: re.Pattern, style: str) -> Transcript | None:
    matches = list(marker.finditer(text))
    if len(matches) < 2 or text[:matches[0].start()].strip():
        return None
    turns = []
    for match, after in zip(matches, [*matches[1:], None], strict=True):
        content = text[match.end():after.start() if after else len(text)]
        turns.append({"role": match.group(1).lower(), "content": _strip_end_tokens(content)})
    if turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
        turns.pop()  # "...\n\nAssistant:" at the end asks for the reply; it is not one
    return Transcript(style, turns)


def _strip_end_tokens(content: str) -> str:
    content = content.strip()
    while content.endswith(_END_TOKENS):
        token = next(t for t in _END_TOKENS if content.endswith(t))
        content = content[:-len(token)].rstrip()
    return content
