"""Column profile: what a sample of rows shows about each column, by its values and by its name.

The schema detection reads layouts off this profile (which columns exist, which hold chat turns, transcripts,
true/false judgements, short repeating labels), and when no known layout fits, `pick_prompt_and_reply` ranks
the columns to name a prompt and a reply: text whose name reads as a question or instruction, made of words,
for the prompt; never an id (Spider's `db_id`), nor a list of tokens (`question_toks`), which is not text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from executor.data.transcripts import USER_ROLES, parse_transcript

MAX_LABEL_CHARS = 64   # a label is a short name, not a sentence
MAX_TOKEN_CHARS = 30   # an item of a token list (Spider's query_toks: "SELECT", "count", "(")

# Name words that say which side of a pair a column is on: strong ones settle it, weak ones only lean ("query"
# is a search query in MS MARCO and the SQL answer in Spider; "text" and "input" are used for anything).
PROMPT_WORDS = {"question": 2, "instruction": 2, "prompt": 2, "problem": 2, "request": 2, "query": 1, "input": 1,
                "source": 1, "context": 1, "document": 1, "article": 1, "dialogue": 1, "dialog": 1, "passage": 1,
                "text": 1, "utterance": 1, "sentence": 1, "message": 1, "user": 1}
REPLY_WORDS = {"answer": 2, "response": 2, "completion": 2, "output": 2, "target": 2, "solution": 2, "summary": 2,
               "highlights": 2, "reply": 2, "sql": 2, "code": 2, "translation": 2, "rationale": 2, "query": 1,
               "result": 1, "explanation": 1}
ID_WORDS = ("id", "ids", "uuid", "guid", "idx", "index", "key", "hash", "url", "path")
_TRANSCRIPT_START = re.compile(r"\s*(?:<\|(?:im_start|system|user|prompter|assistant)\|>|#{0,3}\s*(?:human|user|"
                               r"assistant|system)\s*:)", re.IGNORECASE)
_SPACE = re.compile(r"\s")
_BOOLEAN_TEXT = ("true", "false")


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__


def is_turns(value: Any, role_key: str, content_key: str) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(t, dict) and role_key in t and content_key in t for t in value))


def name_words(path: str) -> list[str]:
    """'userInput.text' -> ['user', 'input', 'text']; 'query_toks_no_value' -> ['query', 'toks', 'no', 'value']."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", path)
    return [w.lower() for w in re.split(r"[^A-Za-z]+", spaced) if w]


@dataclass
class Column:
    """What the sample shows about one column: how often it is present, its value types and shapes."""

    path: str
    present: int = 0
    types: Counter = field(default_factory=Counter)
    values: Counter = field(default_factory=Counter)   # scalar values, for label-likeness
    max_chars: int = 0
    role_turns: int = 0     # values that are lists of {role, content}
    from_turns: int = 0     # values that are lists of {from, value}
    with_user: int = 0      # turn lists or transcripts that include a user turn
    transcripts: Counter = field(default_factory=Counter)   # transcript style -> values written in it
    spaced: int = 0         # strings with whitespace inside: words, not an id or a code
    questions: int = 0      # strings ending with '?'
    booleans: int = 0       # true/false, as booleans or as text
    token_lists: int = 0    # lists of short strings without spaces: a tokenization, not text
    text_lists: int = 0     # lists of strings
    boolean_lists: int = 0  # lists of true/false
    structured: int = 0     # objects and lists of objects (a JSON answer such as slot labels)

    def add(self, value: Any) -> None:
        self.present += 1
        self.types[type_name(value)] += 1
        if isinstance(value, (str, int, float, bool)):
            self.values[str(value)] += 1
            self.max_chars = max(self.max_chars, len(str(value)))
        self.role_turns += is_turns(value, "role", "content")
        self.from_turns += is_turns(value, "from", "value")
        if isinstance(value, str):
            self._add_text(value)
        elif isinstance(value, bool):
            self.booleans += 1
        elif isinstance(value, list) and value:
            self._add_list(value)
        elif isinstance(value, dict):
            self.structured += 1

    def _add_text(self, value: str) -> None:
        self.spaced += bool(_SPACE.search(value.strip()))
        self.questions += value.rstrip().endswith("?")
        self.booleans += value.strip().lower() in _BOOLEAN_TEXT
        transcript = parse_transcript(value) if _TRANSCRIPT_START.match(value) else None
        if transcript:
            self.transcripts[transcript.style] += 1
            self.with_user += any(t["role"] in USER_ROLES for t in transcript.turns)

    def _add_list(self, value: list) -> None:
        if all(isinstance(v, str) for v in value):
            self.text_lists += 1
            self.token_lists += all(len(v) <= MAX_TOKEN_CHARS and not _SPACE.search(v) for v in value)
        self.boolean_lists += all(isinstance(v, bool) for v in value)
        self.structured += all(isinstance(v, dict) for v in value) and not is_turns(value, "role", "content")
        if is_turns(value, "role", "content") or is_turns(value, "from", "value"):
            self.with_user += any(str(t.get("role", t.get("from"))).lower() in USER_ROLES for t in value)

    def mostly(self, count: int) -> bool:
        return self.present > 0 and count >= 0.8 * self.present

    @property
    def is_text(self) -> bool:
        return self.mostly(self.types["string"])

    @property
    def is_free_text(self) -> bool:
        """Strings made of words: what a prompt is, unlike ids, codes and category names."""
        return self.is_text and self.mostly(self.spaced)

    @property
    def is_turns(self) -> bool:
        return self.mostly(self.role_turns) or self.mostly(self.from_turns)

    @property
    def transcript_style(self) -> str | None:
        """The transcript convention most values are written in, if they mostly are transcripts."""
        if not self.transcripts or not self.mostly(sum(self.transcripts.values())):
            return None
        return self.transcripts.most_common(1)[0][0]

    @property
    def is_label_like(self) -> bool:
        """Short scalar values that repeat: a category, not free text or an id."""
        scalar = self.types["string"] + self.types["number"] + self.types["boolean"]
        return (self.mostly(scalar) and 0 < self.max_chars <= MAX_LABEL_CHARS
                and len(self.values) <= max(2, self.present // 2))

    @property
    def is_id_like(self) -> bool:
        return any(w in ID_WORDS for w in name_words(self.path)) or self.path.endswith(("Id", "ID"))

    def leaning(self, words: dict[str, int]) -> int:
        """How strongly the name reads as one side of a pair: 2 strong, 1 weak, 0 not at all."""
        return max((words.get(w, 0) for w in name_words(self.path)), default=0)

    def describe(self) -> str:
        kind = self.types.most_common(1)[0][0] if self.types else "empty"
        return f"{self.path} ({kind})"


class Profile:
    """Every column (nested objects as dotted paths) seen in the sample, in the order first seen."""

    def __init__(self, sample: list[dict]):
        self.rows = len(sample)
        self.sample = sample
        self.columns: dict[str, Column] = {}
        for row in sample:
            self._walk(row, "")

    def _walk(self, obj: dict, prefix: str) -> None:
        for key, value in obj.items():
            path = f"{prefix}{key}"
            if value is None:
                continue
            self.columns.setdefault(path, Column(path)).add(value)
            if isinstance(value, dict) and not is_turns(value, "role", "content"):
                self._walk(value, path + ".")

    def get(self, path: str) -> Column | None:
        """The column if it holds a value in at least half the rows (rarer ones are optional extras)."""
        column = self.columns.get(path)
        return column if column and column.present * 2 >= self.rows else None

    def top_level(self) -> list[Column]:
        return [c for c in self.columns.values() if "." not in c.path and not c.path.startswith("__")]

    def leaves(self) -> list[Column]:
        return [c for c in self.columns.values() if c.types["object"] < c.present]

    def describe(self) -> str:
        return ", ".join(c.describe() for c in self.leaves()) or "(none)"

    def repeats(self, path: str, other: str) -> bool:
        """Whether column `path` holds the same values as `other` in most rows (a copy kept for convenience)."""
        both = [row for row in self.sample if path in row]
        return bool(both) and sum(row.get(path) == row.get(other) for row in both) >= 0.8 * len(both)


# ---------------------------------------------------------------------------------------------- prompt and reply

def pick_prompt_and_reply(profile: Profile, by_name_only: bool = False) -> tuple[Column | None, Column | None]:
    """The most prompt-like and then the most reply-like column (either None when nothing fits).

    With `by_name_only` both must also be named like their side (detection: never a guess from shapes alone);
    without, the shapes decide when names do not (the suggestion in an error message).
    """
    usable = [c for c in profile.leaves() if profile.get(c.path) and not c.is_id_like and not c.path.startswith("__")]
    prompts = [c for c in usable if c.is_text and c.leaning(PROMPT_WORDS) >= c.leaning(REPLY_WORDS)]
    if by_name_only:
        prompts = [c for c in prompts if c.leaning(PROMPT_WORDS) and c.is_free_text]
    prompt = min(prompts, key=lambda c: _prompt_rank(c, usable), default=None)
    replies = [c for c in usable if c is not prompt and not c.mostly(c.token_lists)
               and (c.is_text or c.mostly(c.structured))]
    if by_name_only:
        replies = [c for c in replies if c.is_text and c.leaning(REPLY_WORDS) >= max(1, c.leaning(PROMPT_WORDS))]
    reply = min(replies, key=lambda c: _reply_rank(c, usable), default=None)
    return prompt, reply


def _prompt_rank(column: Column, order: list[Column]) -> tuple:
    # Named like a prompt first, then words (not codes), then not a repeating category, then questions, then
    # the first in the file. Short replies such as "13" to "how many people?" still make a prompt column.
    return (-column.leaning(PROMPT_WORDS), not column.is_free_text, column.is_label_like,
            not column.mostly(column.questions), order.index(column))


def _reply_rank(column: Column, order: list[Column]) -> tuple:
    # Text before structured values (a JSON answer such as slot labels is the last resort), then named like a
    # reply, then free text before one-word answers, then the first in the file.
    leaning = column.leaning(REPLY_WORDS) if column.leaning(REPLY_WORDS) >= column.leaning(PROMPT_WORDS) else 0
    return (not column.is_text, -leaning, not column.is_free_text, order.index(column))
