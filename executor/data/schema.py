"""Schema: recognise which layout a dataset uses and turn each row into the canonical Example.

`detect_format` looks at a sample of parsed rows (field names and value shapes) and names one of FORMATS,
with the columns it uses and a sentence saying why; when nothing fits, or two layouts fit equally, it raises
SchemaError listing the columns and showing the mapping that would settle it. `to_example` then converts one
RawRow at a time and answers a Reject (never an exception) for a row that does not fit.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from executor.data.records import Example, RawRow, Reject, SourceRef

FORMATS = ("alpaca", "sharegpt", "chatml", "prompt_completion", "preference", "openai_preference",
           "classification", "text", "squad")
# Roles a mapping may name; `context` is the passage of a reading-comprehension (squad) row.
ROLES = ("instruction", "input", "output", "prompt", "completion", "chosen", "rejected", "text", "label",
         "system", "messages", "conversations", "context")

CONVERSATION_COLUMNS = ("messages", "conversations", "conversation", "dialog", "dialogue", "chat", "turns")
# (prompt column, completion column) synonyms, in order of preference.
PAIR_COLUMNS = (
    ("prompt", "completion"), ("prompt", "response"), ("prompt", "answer"), ("question", "answer"),
    ("query", "response"), ("query", "answer"), ("instruction", "response"), ("instruction", "completion"),
    ("input", "output"), ("input", "target"), ("source", "target"), ("question", "response"),
)
TEXT_COLUMNS = ("text", "sentence", "utterance", "query", "question", "content", "review", "comment", "message",
                "tweet", "input", "body")
DOCUMENT_COLUMNS = ("text", "content", "document", "body", "page_content", "markdown", "passage")
LABEL_COLUMNS = ("label", "category", "class", "intent", "sentiment", "topic", "emotion", "labels", "tag",
                 "class_label", "fine_label", "coarse_label")
SYSTEM_COLUMNS = ("system", "system_prompt")
# The roles each format takes from a mapping (label and system go with any chat-shaped format).
MAPPING_ROLES = {
    "alpaca": {"instruction", "input", "output", "system", "label"},
    "prompt_completion": {"prompt", "completion", "system", "label"},
    "squad": {"context", "prompt", "completion", "system", "label"},
    "preference": {"prompt", "chosen", "rejected", "system", "label"},
    "chatml": {"messages", "system", "label"},
    "sharegpt": {"conversations", "messages", "system", "label"},
    "classification": {"text", "label", "system"},
    "text": {"text", "label"},
}
MAX_LABEL_CHARS = 64       # a label is a short name, not a sentence
MAX_METADATA_CHARS = 200   # longer strings are content, not something to stratify or filter on
SAMPLE_SIZE = 200

ROLE_NAMES = {"system": "system", "user": "user", "human": "user", "prompter": "user",
              "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
              "chatgpt": "assistant"}


@dataclass
class DetectedFormat:
    name: str                 # one of FORMATS
    fields: dict[str, str]    # role -> column path (dotted for nested), e.g. {"prompt": "question"}
    label_column: str | None = None
    explanation: str = ""     # one sentence: what was found and why


class SchemaError(ValueError):
    """The schema is unknown or ambiguous: the message lists the columns seen and shows a mapping to pass."""


# ---------------------------------------------------------------------------------------------- mapping

def parse_mapping(spec: str) -> dict[str, str]:
    """Parse 'prompt=question,completion=answer,label=category' into {"prompt": "question", ...}."""
    example = '"prompt=question,completion=answer,label=category"'
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        role, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not role or not column:
            raise SchemaError(f"mapping item {part!r} is not role=column; write it like {example}")
        if role not in ROLES:
            raise SchemaError(f"mapping: unknown role {role!r} in {part!r}; roles are {', '.join(ROLES)}")
        if role in mapping:
            raise SchemaError(f"mapping: role {role!r} is given twice ({mapping[role]!r} and {column!r})")
        mapping[role] = column
    if not mapping:
        raise SchemaError(f"mapping {spec!r} is empty; write it like {example}")
    return mapping


# ---------------------------------------------------------------------------------------------- column profile

@dataclass
class _Column:
    """What the sample shows about one column: how often it is present, its value types, its values."""

    path: str
    present: int = 0
    types: Counter = field(default_factory=Counter)
    values: Counter = field(default_factory=Counter)   # scalar values, for label-likeness
    max_chars: int = 0
    role_turns: int = 0   # values that are lists of {role, content}
    from_turns: int = 0   # values that are lists of {from, value}

    def add(self, value: Any) -> None:
        self.present += 1
        self.types[_type_name(value)] += 1
        if isinstance(value, (str, int, float, bool)):
            self.values[str(value)] += 1
            self.max_chars = max(self.max_chars, len(str(value)))
        self.role_turns += _is_turns(value, "role", "content")
        self.from_turns += _is_turns(value, "from", "value")

    def mostly(self, count: int) -> bool:
        return self.present > 0 and count >= 0.8 * self.present

    @property
    def is_text(self) -> bool:
        return self.mostly(self.types["string"])

    @property
    def is_turns(self) -> bool:
        return self.mostly(self.role_turns) or self.mostly(self.from_turns)

    @property
    def is_label_like(self) -> bool:
        """Short scalar values that repeat: a category, not free text or an id."""
        scalar = self.types["string"] + self.types["number"] + self.types["boolean"]
        return (self.mostly(scalar) and 0 < self.max_chars <= MAX_LABEL_CHARS
                and len(self.values) <= max(2, self.present // 2))

    def describe(self) -> str:
        kind = self.types.most_common(1)[0][0] if self.types else "empty"
        return f"{self.path} ({kind})"


def _type_name(value: Any) -> str:
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


def _is_turns(value: Any, role_key: str, content_key: str) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(t, dict) and role_key in t and content_key in t for t in value))


class _Profile:
    """Every column (nested objects as dotted paths) seen in the sample."""

    def __init__(self, sample: list[dict]):
        self.rows = len(sample)
        self.columns: dict[str, _Column] = {}
        for row in sample:
            self._walk(row, "")

    def _walk(self, obj: dict, prefix: str) -> None:
        for key, value in obj.items():
            path = f"{prefix}{key}"
            if value is None:
                continue
            self.columns.setdefault(path, _Column(path)).add(value)
            if isinstance(value, dict) and not _is_turns(value, "role", "content"):
                self._walk(value, path + ".")

    def get(self, path: str) -> _Column | None:
        """The column if it holds a value in at least half the rows (rarer ones are optional extras)."""
        column = self.columns.get(path)
        return column if column and column.present * 2 >= self.rows else None

    def top_level(self) -> list[_Column]:
        return [c for c in self.columns.values() if "." not in c.path and not c.path.startswith("__")]

    def describe(self) -> str:
        leaves = [c for c in self.columns.values() if c.types["object"] < c.present]
        return ", ".join(c.describe() for c in leaves) or "(none)"


# ---------------------------------------------------------------------------------------------- detection

@dataclass
class _Candidate:
    name: str
    fields: dict[str, str]
    why: str


def detect_format(sample: list[dict], mapping: dict[str, str] | None = None) -> DetectedFormat:
    """Name the format of `sample` (parsed rows, say the first 200). A mapping always wins over detection."""
    rows = [r for r in sample[:SAMPLE_SIZE] if isinstance(r, dict)]
    profile = _Profile(rows)
    if mapping and set(mapping) - {"label", "system"}:
        return _from_mapping(mapping, profile)
    if not rows:
        raise SchemaError("no parsed rows to detect the format from: every row of the sample failed to parse")
    fmt = _detect(profile)
    if mapping:  # only label/system given: detect the layout, take those two from the mapping
        fmt.label_column = mapping.get("label", fmt.label_column)
        if "system" in mapping:
            fmt.fields["system"] = mapping["system"]
        fmt.explanation += f" The mapping sets {', '.join(f'{r}={c}' for r, c in mapping.items())}."
    return fmt


def _detect(profile: _Profile) -> DetectedFormat:
    groups = [_detect_preference(profile), _detect_conversations(profile), _detect_pairs(profile)]
    found = [c for group in groups for c in group]
    if len(found) > 1:
        raise _ambiguous(profile, found[0], found[1])
    if not found:
        found = _detect_classification(profile) or _detect_document(profile)
    if not found:
        raise _unknown(profile)
    chosen = found[0]
    fields = dict(chosen.fields)
    system = next((c for c in SYSTEM_COLUMNS if profile.get(c) and profile.get(c).is_text), None)
    if system and chosen.name not in ("text",):
        fields["system"] = system
    label, label_why = (None, "") if chosen.name in ("classification", "text") else _label_column(profile, fields)
    return DetectedFormat(chosen.name, fields, fields.get("label") or label, chosen.why + label_why + ".")


def _detect_preference(profile: _Profile) -> list[_Candidate]:
    found = []
    if all(profile.get(c) for c in ("input.messages", "preferred_output", "non_preferred_output")):
        found.append(_Candidate("openai_preference", {"prompt": "input.messages", "chosen": "preferred_output",
                                                      "rejected": "non_preferred_output"},
                                "Found input.messages with preferred_output and non_preferred_output: "
                                "preference pairs in the OpenAI DPO layout"))
    if profile.get("chosen") and profile.get("rejected"):
        fields = {"chosen": "chosen", "rejected": "rejected"}
        prompt = next((c for c in ("prompt", "question", "instruction", "input") if profile.get(c)), None)
        if prompt:
            fields = {"prompt": prompt, **fields}
        if prompt or profile.get("chosen").is_turns:  # without a prompt column the turns carry the prompt
            source = f"'{prompt}' as the prompt" if prompt else "the prompt taken from the chosen conversation"
            found.append(_Candidate("preference", fields,
                                    f"Found 'chosen' and 'rejected' replies with {source}: preference pairs"))
    return found


def _detect_conversations(profile: _Profile) -> list[_Candidate]:
    found = []
    for name in CONVERSATION_COLUMNS:
        column = profile.get(name)
        if column is None:
            continue
        if column.mostly(column.from_turns):
            found.append(_Candidate("sharegpt", {"conversations": name},
                                    f"Found '{name}' holding lists of {{from, value}} turns: ShareGPT conversations"))
        elif column.mostly(column.role_turns):
            found.append(_Candidate("chatml", {"messages": name},
                                    f"Found '{name}' holding lists of {{role, content}} turns: chat messages"))
    return found


def _detect_pairs(profile: _Profile) -> list[_Candidate]:
    """squad, alpaca and prompt/completion, most specific first: each one refines the next."""
    has = {c.path for c in profile.top_level() if profile.get(c.path)}
    if {"context", "question"} <= has and ({"answer", "answers"} & has):
        answer = "answer" if "answer" in has else "answers"
        return [_Candidate("squad", {"context": "context", "prompt": "question", "completion": answer},
                           f"Found 'context', 'question' and '{answer}': reading-comprehension (SQuAD) questions, "
                           "the context goes into the user turn")]
    if {"instruction", "output"} <= has:
        extra = " and 'input'" if "input" in has else ""
        fields = {"instruction": "instruction", "output": "output", **({"input": "input"} if extra else {})}
        return [_Candidate("alpaca", fields, f"Found 'instruction', 'output'{extra}: Alpaca instructions")]
    pairs = [(p, c) for p, c in PAIR_COLUMNS if p in has and c in has
             and not (p == "input" and "instruction" in has)]
    turns = " (conversational: the values are message lists)"
    return [_Candidate("prompt_completion", {"prompt": p, "completion": c},
                       f"Found '{p}' and '{c}': prompt/completion pairs ({p} -> prompt, {c} -> completion)"
                       + (turns if profile.get(p).is_turns else ""))
            for p, c in pairs]


def _detect_classification(profile: _Profile) -> list[_Candidate]:
    text = next((c for c in TEXT_COLUMNS if profile.get(c) and profile.get(c).is_text), None)
    label = next((c for c in LABEL_COLUMNS if c != text and profile.get(c) and profile.get(c).is_label_like), None)
    if not text or not label:
        return []
    count = len(profile.get(label).values)
    return [_Candidate("classification", {"text": text, "label": label},
                       f"Found text in '{text}' and a label column '{label}' with short repeating values ({count} "
                       f"distinct in {profile.rows} sampled rows): classification, the label is the assistant's reply")]


def _detect_document(profile: _Profile) -> list[_Candidate]:
    text = next((c for c in DOCUMENT_COLUMNS if profile.get(c) and profile.get(c).is_text), None)
    if not text:
        return []
    return [_Candidate("text", {"text": text}, f"Found '{text}' with no prompt/reply or label columns: plain text "
                                               "documents (continued pre-training)")]


def _label_column(profile: _Profile, fields: dict[str, str]) -> tuple[str | None, str]:
    """A short repeating categorical column beside the training fields: what stratified splits use."""
    used = {path.split(".")[0] for path in fields.values()}
    labels = [c for c in LABEL_COLUMNS if c not in used and profile.get(c) and profile.get(c).is_label_like]
    if not labels:
        return None, ""
    label = labels[0]
    others = f" (also label-like, kept in metadata: {', '.join(labels[1:])})" if labels[1:] else ""
    count = len(profile.get(label).values)
    return label, (f"; '{label}' holds short repeating values ({count} distinct in {profile.rows} sampled rows), "
                   f"so it is the label for stratified splits and the label chart{others}")


def _ambiguous(profile: _Profile, a: _Candidate, b: _Candidate) -> SchemaError:
    return SchemaError(
        f"The rows fit two formats equally: {a.name} ({a.why}) and {b.name} ({b.why}). Columns seen: "
        f"{profile.describe()}. Pass a mapping to choose, for example \"{_mapping_text(a.fields)}\" or "
        f"\"{_mapping_text(b.fields)}\".")


def _unknown(profile: _Profile) -> SchemaError:
    return SchemaError(
        f"Could not recognise the format. Columns seen: {profile.describe()}. Supported layouts: alpaca "
        "(instruction, input, output), sharegpt (conversations of {from, value}), chatml (messages of {role, "
        "content}), prompt_completion (prompt+completion, question+answer, query+response, ...), preference "
        "(prompt, chosen, rejected), openai_preference (input.messages, preferred_output, non_preferred_output), "
        "classification (text + label), text, squad (context, question, answer). Pass a mapping of roles to "
        f"columns, for example \"{_suggest_mapping(profile)}\" (roles: {', '.join(ROLES)}).")


def _mapping_text(fields: dict[str, str]) -> str:
    return ",".join(f"{role}={column}" for role, column in fields.items())


def _suggest_mapping(profile: _Profile) -> str:
    """A plausible mapping for the error message: the first text column as prompt, the next column as reply."""
    leaves = [c for c in profile.columns.values() if c.types["object"] < c.present]
    leaves.sort(key=lambda c: -c.present)  # stable: columns present in every row first, in file order
    prompt = next((c for c in leaves if c.is_text), None)
    if prompt is None:
        return "prompt=<column>,completion=<column>"
    reply = next((c for c in leaves if c is not prompt), None)
    return f"prompt={prompt.path},completion={reply.path if reply else '<column>'}"


def _from_mapping(mapping: dict[str, str], profile: _Profile) -> DetectedFormat:
    name = _format_for_roles(mapping, profile)
    unused = sorted(set(mapping) - MAPPING_ROLES[name])
    if unused:
        raise SchemaError(f"mapping roles {unused} have no place in the {name} format, which takes "
                          f"{', '.join(sorted(MAPPING_ROLES[name]))}; drop them or map other roles")
    if profile.rows:
        missing = [f"{role}={column}" for role, column in mapping.items() if column not in profile.columns]
        if missing:
            raise SchemaError(f"mapping names columns that are not in the data: {', '.join(missing)}. "
                              f"Columns seen: {profile.describe()}")
    fields = {role: column for role, column in mapping.items() if role != "label" or name == "classification"}
    described = ", ".join(f"{role} <- {column}" for role, column in mapping.items())
    return DetectedFormat(name, fields, mapping.get("label"), f"Used the given mapping ({described}): {name}.")


def _format_for_roles(mapping: dict[str, str], profile: _Profile) -> str:
    roles = set(mapping)
    if "messages" in roles or "conversations" in roles:
        role = "messages" if "messages" in roles else "conversations"
        column = profile.columns.get(mapping[role])
        if column and column.mostly(column.from_turns):
            return "sharegpt"
        if column and column.mostly(column.role_turns):
            return "chatml"
        return "chatml" if role == "messages" else "sharegpt"
    if {"chosen", "rejected"} <= roles:
        return "preference"
    if {"instruction", "output"} <= roles:
        return "alpaca"
    if {"prompt", "completion"} <= roles:
        return "squad" if "context" in roles else "prompt_completion"
    if "text" in roles:
        return "classification" if "label" in roles else "text"
    raise SchemaError(f"mapping roles {sorted(roles)} do not make a format; give one of: instruction+output"
                      "[+input] (alpaca), prompt+completion[+context], chosen+rejected[+prompt], messages, "
                      "conversations, text[+label] (plus label and system with any of them)")


# ---------------------------------------------------------------------------------------------- conversion

class _RowError(Exception):
    """One row does not fit the format; becomes a schema_error Reject."""


_MISSING = object()


def to_example(row: RawRow, fmt: DetectedFormat) -> Example | Reject:
    """Convert one row to the canonical Example, or say (as a Reject) why it cannot be."""
    if row.error is not None or row.data is None:
        return Reject(row.source, "parse_error", row.error or "the record could not be parsed", data=None)
    if not isinstance(row.data, dict):
        return Reject(row.source, "schema_error", f"expected a record (object), got {_type_name(row.data)}",
                      data=row.data)
    try:
        example = _CONVERTERS[fmt.name](row.data, fmt.fields, row.source)
        if fmt.label_column and example.label is None:
            example.label = _optional_text(row.data, fmt.label_column) or None
    except _RowError as e:
        return Reject(row.source, "schema_error", str(e), data=row.data)
    except (TypeError, ValueError, AttributeError, KeyError) as e:  # a value shape no rule foresaw: still one row
        return Reject(row.source, "schema_error", f"cannot convert the row: {type(e).__name__}: {e}", data=row.data)
    example.metadata = _metadata(row.data, fmt.fields)
    return example


def _value(data: dict, path: str) -> Any:
    """The value at a column path; a key that itself contains dots wins over descending into objects."""
    if path in data:
        return data[path]
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _required(data: dict, path: str) -> Any:
    value = _value(data, path)
    if value is _MISSING or value is None:
        raise _RowError(f"missing field '{path}'")
    return value


def _text(value: Any) -> str:
    """A field value as text: numbers and booleans as written in JSON, lists and objects as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    if not isinstance(value, (list, dict)):
        return str(value)  # Parquet/Arrow values such as dates and decimals
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except TypeError:  # keys of mixed types cannot be sorted
        return json.dumps(value, ensure_ascii=False, default=str)


def _required_text(data: dict, path: str) -> str:
    return _text(_required(data, path))


def _optional_text(data: dict, path: str | None) -> str:
    value = _value(data, path) if path else None
    return "" if value is _MISSING or value is None else _text(value)


def _turns(value: Any, path: str, keys: tuple[str, str] = ("role", "content")) -> list[dict[str, str]]:
    """A list of chat turns ({role, content} or ShareGPT {from, value}) -> canonical messages."""
    shape = f"field '{path}' must be a list of {{{keys[0]}, {keys[1]}}}"
    if not isinstance(value, list):
        raise _RowError(f"{shape}, got {_type_name(value)}")
    if not value:
        raise _RowError(f"field '{path}' is an empty list")
    messages = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise _RowError(f"{shape}; turn {i} is a {_type_name(turn)}")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        mapped = ROLE_NAMES.get(str(role).lower()) if role is not None else None
        if mapped is None:
            raise _RowError(f"{shape}; turn {i} has role {role!r} (expected system, user or assistant)")
        messages.append({"role": mapped, "content": _content(content, path, i)})
    return messages


def _content(content: Any, path: str, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)  # OpenAI content parts, text only
    raise _RowError(f"field '{path}' turn {index} has no text content (got {_type_name(content)})")


def _with_system(messages: list[dict[str, str]], data: dict, fields: dict[str, str]) -> list[dict[str, str]]:
    system = _optional_text(data, fields.get("system"))
    if system and not (messages and messages[0]["role"] == "system"):
        return [{"role": "system", "content": system}, *messages]
    return messages


def _ends_with_assistant(messages: list[dict[str, str]], path: str) -> list[dict[str, str]]:
    if messages[-1]["role"] != "assistant":
        raise _RowError(f"field '{path}': the last turn must be the assistant's, found '{messages[-1]['role']}'")
    return messages


def _to_chat(data: dict, fields: dict[str, str], source: SourceRef) -> Example:
    role, path = next(iter((r, c) for r, c in fields.items() if r in ("messages", "conversations")))
    keys = ("from", "value") if role == "conversations" else ("role", "content")
    messages = _ends_with_assistant(_turns(_required(data, path), path, keys), path)
    return Example(source, messages=_with_system(messages, data, fields))


def _to_alpaca(data: dict, fields: dict[str, str], source: SourceRef) -> Example:
    user = _required_text(data, fields["instruction"])
    extra = _optional_text(data, fields.get("input"))
    if extra.strip():
        user = f"{user}\n\n{extra}"
    messages = [{"role": "user", "content": user},
                {"role": "assistant", "content": _required_text(data, fields["output"])}]
    return Example(source, messages=_with_system(messages, data, fields))


def _to_prompt_completion(data: dict, fields: dict[str, str], source: SourceRef) -> Example:
    """Plain strings, or TRL's conversational form where prompt and completion are message lists."""
    prompt = _required(data, fields["prompt"])
    completion = _required(data, fields["completion"])
    messages = (_turns(prompt, fields["prompt"]) if _is_turns(prompt, "role", "content")
                else [{"role": "user", "content": _text(prompt)}])
    if _is_turns(completion, "role", "content"):
        messages += _turns(completion, fields["completion"])
    else:
        messages.append({"role": "assistant", "content": _text(completion)})
    return Example(source, messages=_with_system(_ends_with_assistant(messages, fields["completion"]),
                                                      data, fields))


def _to_squad(data: dict, fields: dict[str, str], source: SourceRef) -> Example:
    context = _required_text(data, fields["context"])
    question = _required_text(data, fields["prompt"])
    answer = _squad_answer(_required(data, fields["completion"]), fields["completion"])
    # The document goes into a system turn, the question into the user turn: many questions share one
    # document, and de-duplication (which ignores system turns) must compare the questions, not the paper.
    messages = [{"role": "system", "content": f"Answer the question from this document.\n\n{context}"},
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer}]
    return Example(source, messages=_with_system(messages, data, fields))


def _squad_answer(value: Any, path: str) -> str:
    """The first answer: a string, Hugging Face's {"text": [...]} or SQuAD's [{"text": ...}]."""
    if isinstance(value, dict):
        value = value.get("text")
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("text")
    if value is None:
        raise _RowError(f"missing field '{path}' (the question has no answer)")
    return _text(value)


def _to_preference(data: dict, fields: dict[str, str], source: SourceRef) -> Example:
    """Prompt turns + chosen/rejected replies. Replies may be strings or message lists; when there is no
    prompt column, the turns before the last reply of a conversation are the prompt (Anthropic HH, TRL)."""
    prompt = _prompt_turns(data, fields.get("prompt"))
    chosen_prefix, chosen = _reply(_required(data, fields["chosen"]), fields["chosen"])
    rejected_prefix, rejected = _reply(_required(data, fields["rejected"]), fields["rejected"])
    if chosen_prefix != rejected_prefix:
        raise _RowError(f"fields '{fields['chosen']}' and '{fields['rejected']}' continue different conversations")
    messages = prompt + chosen_prefix
    if not messages:
        raise _RowError("missing field 'prompt'")
    if messages[-1]["role"] != "user":
        raise _RowError(f"the prompt must end with the user's turn, found '{messages[-1]['role']}'")
    return Example(source, messages=_with_system(messages, data, fields), chosen=chosen, rejected=rejected)


def _prompt_turns(data: dict, path: str | None) -> list[dict[str, str]]:
    if path is None:
        return []
    value = _required(data, path)
    if isinstance(value, list):
        return _turns(value, path)
    return [{"role": "user", "content": _text(value)}]


def _reply(value: Any, path: str) -> tuple[list[dict[str, str]], str]:
    """(turns before the reply, reply text)."""
    if not isinstance(value, list):
        return [], _text(value)
    turns = _ends_with_assistant(_turns(value, path), path)
    return turns[:-1], turns[-1]["content"]


def _to_classification(data: dict, fields: dict[str, str], source: SourceRef) -> Example:
    text = _required_text(data, fields["text"])
    label = _required_text(data, fields["label"])
    if not label.strip():
        raise _RowError(f"field '{fields['label']}' is empty (a classification row needs a label)")
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": label}]
    return Example(source, messages=_with_system(messages, data, fields), label=label)


def _to_document(data: dict, fields: dict[str, str], source: SourceRef) -> Example:
    return Example(source, text=_required_text(data, fields["text"]))


def _metadata(data: dict, fields: dict[str, str]) -> dict[str, Any]:
    """The row's other short scalar columns (intent, id, path, __split__): what splits and filters look up."""
    used = {path if path in data else path.split(".")[0] for path in fields.values()}
    return {key: value for key, value in data.items()
            if key not in used and isinstance(value, (str, int, float, bool))
            and not (isinstance(value, str) and len(value) > MAX_METADATA_CHARS)}


_CONVERTERS = {
    "alpaca": _to_alpaca, "sharegpt": _to_chat, "chatml": _to_chat, "prompt_completion": _to_prompt_completion,
    "preference": _to_preference, "openai_preference": _to_preference, "classification": _to_classification,
    "text": _to_document, "squad": _to_squad,
}
