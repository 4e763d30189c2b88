"""Schema: recognise which layout a dataset uses and turn each row into the canonical Example.

`detect_format` looks at a sample of parsed rows (field names and value shapes) and names one of FORMATS,
with the columns it uses and a sentence saying why; when nothing fits, or two layouts fit equally, it raises
SchemaError listing the columns and showing the mapping that would settle it. `to_example` then converts one
RawRow at a time and answers a Reject (never an exception) for a row that does not fit.

Every dataset type TRL documents is recognised, standard (text) and conversational (message lists): language
modeling (text, messages), prompt-completion, preference with an explicit or an implicit prompt, unpaired
preference (KTO) and stepwise supervision; prompt-only data is named in the error (nothing to train on).
Conversations written out as text (HH-RLHF's "Human:/Assistant:", "User:/Assistant:", Zephyr's <|user|>,
ChatML) are read back into turns (transcripts.py); layouts.py holds the conversions that need more than
renaming columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from executor.data.columns import (
    Column,
    Profile,
    is_turns,
    pick_prompt_and_reply,
    type_name,
)
from executor.data.layouts import (
    RowError,
    Undesirable,
    correct_solution,
    desirable_completion,
    split_conversations,
    split_texts,
)
from executor.data.records import Example, RawRow, Reject, SourceRef
from executor.data.transcripts import STYLES, parse_transcript

FORMATS = ("alpaca", "sharegpt", "chatml", "prompt_completion", "preference", "openai_preference",
           "classification", "text", "squad", "transcript", "unpaired_preference", "stepwise_supervision")
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
    "transcript": {"messages", "conversations", "system", "label"},
    "unpaired_preference": {"prompt", "completion", "label", "system"},
}
# Roles whose text may be a whole conversation written out (a transcript), per format that reads them as turns.
TRANSCRIPT_ROLES = {
    "prompt_completion": ("prompt", "completion"), "preference": ("prompt", "chosen", "rejected"),
    "unpaired_preference": ("prompt", "completion"), "stepwise_supervision": ("prompt",), "transcript": ("text",),
}
MAX_METADATA_CHARS = 200   # longer strings are content, not something to stratify or filter on
SAMPLE_SIZE = 200

ROLE_NAMES = {"system": "system", "user": "user", "human": "user", "prompter": "user",
              "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
              "chatgpt": "assistant"}
IMPLICIT_PROMPT = ("preference pairs with an implicit prompt: the turns both conversations share are the prompt, "
                   "the first assistant turn where they differ is the chosen and the rejected reply")


@dataclass
class DetectedFormat:
    name: str                 # one of FORMATS
    fields: dict[str, str]    # role -> column path (dotted for nested), e.g. {"prompt": "question"}
    label_column: str | None = None
    explanation: str = ""     # one sentence: what was found and why
    transcripts: dict[str, str] = field(default_factory=dict)  # column -> transcript style, read back into turns


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


# ---------------------------------------------------------------------------------------------- detection

@dataclass
class _Candidate:
    name: str
    fields: dict[str, str]
    why: str


def detect_format(sample: list[dict], mapping: dict[str, str] | None = None) -> DetectedFormat:
    """Name the format of `sample` (parsed rows, say the first 200). A mapping always wins over detection."""
    rows = [r for r in sample[:SAMPLE_SIZE] if isinstance(r, dict)]
    profile = Profile(rows)
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


def _detect(profile: Profile) -> DetectedFormat:
    groups = [_detect_preference(profile), _detect_conversations(profile), _detect_pairs(profile)]
    found = _without_copies(profile, [c for group in groups for c in group])
    if len(found) > 1:
        raise _ambiguous(profile, found[0], found[1])
    if not found:
        # A transcript column with a label beside it fits both a conversation and a classification of it.
        found = _detect_transcript(profile) + _detect_classification(profile)
        if len(found) > 1:
            raise _ambiguous(profile, found[0], found[1])
        found = found or _detect_named_pair(profile) or _detect_document(profile)
    if not found:
        raise _unknown(profile)
    chosen = found[0]
    fields = dict(chosen.fields)
    system = next((c for c in SYSTEM_COLUMNS if profile.get(c) and profile.get(c).is_text), None)
    if system and chosen.name not in ("text",):
        fields["system"] = system
    label, label_why = (None, "") if chosen.name in ("classification", "text") else _label_column(profile, fields)
    transcripts, transcript_why = _transcripts(profile, chosen.name, fields, chosen.why)
    return DetectedFormat(chosen.name, fields, fields.get("label") or label,
                          chosen.why + transcript_why + label_why + ".", transcripts)


def _detect_preference(profile: Profile) -> list[_Candidate]:
    found = []
    if all(profile.get(c) for c in ("input.messages", "preferred_output", "non_preferred_output")):
        found.append(_Candidate("openai_preference", {"prompt": "input.messages", "chosen": "preferred_output",
                                                      "rejected": "non_preferred_output"},
                                "Found input.messages with preferred_output and non_preferred_output: "
                                "preference pairs in the OpenAI DPO layout"))
    chosen = profile.get("chosen")
    if chosen and profile.get("rejected"):
        prompt = next((c for c in ("prompt", "question", "instruction", "input") if profile.get(c)), None)
        fields = {"chosen": "chosen", "rejected": "rejected"}
        if prompt:
            fields = {"prompt": prompt, **fields}
        found.append(_Candidate("preference", fields, _preference_why(chosen, prompt)))
    return found


def _preference_why(chosen: Column, prompt: str | None) -> str:
    """Explicit prompt, or implicit in whole conversations (lists or transcripts), or in two plain texts. Rows
    are told apart one by one the same way (`_to_preference`); this names what most of the sample is."""
    unused = f" ('{prompt}' repeats the start of the conversations and is not used)" if prompt else ""
    if chosen.is_turns and chosen.mostly(chosen.with_user):
        return f"Found 'chosen' and 'rejected' conversations that include the user's turns: {IMPLICIT_PROMPT}{unused}"
    if chosen.transcript_style and chosen.mostly(chosen.with_user):
        return (f"Found 'chosen' and 'rejected' holding {STYLES[chosen.transcript_style]}, read back into chat "
                f"turns: {IMPLICIT_PROMPT}{unused}")
    if prompt:
        return f"Found 'chosen' and 'rejected' replies with '{prompt}' as the prompt: preference pairs"
    if chosen.is_turns:
        return ("Found 'chosen' and 'rejected' replies with the prompt taken from the chosen conversation: "
                "preference pairs")
    return ("Found 'chosen' and 'rejected' texts and no prompt column: preference pairs with an implicit prompt "
            "(their common beginning, cut at a word boundary, is the prompt; the rest of each is the reply)")


def _detect_conversations(profile: Profile) -> list[_Candidate]:
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


def _without_copies(profile: Profile, found: list[_Candidate]) -> list[_Candidate]:
    """Preference data often carries the chosen reply again, as 'messages' (UltraFeedback binarized) or as a
    'response' beside the prompt (Dahoas' HH-RLHF copies): that copy is not a second layout."""
    preference = next((c for c in found if c.name in ("preference", "openai_preference")), None)
    if preference is None:
        return found
    kept = []
    for candidate in found:
        copy = next((column for role, column in candidate.fields.items() if candidate is not preference
                     and role != "prompt" and profile.repeats(column, preference.fields["chosen"])), None)
        if copy:
            preference.why += f" ('{copy}' repeats '{preference.fields['chosen']}' and is not used)"
        else:
            kept.append(candidate)
    return kept


def _detect_pairs(profile: Profile) -> list[_Candidate]:
    """squad, alpaca, stepwise, unpaired and prompt/completion, most specific first: each one refines the next."""
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
    judged = _detect_stepwise(profile, has) or _detect_unpaired(profile, has)
    if judged:
        return judged
    pairs = [(p, c) for p, c in PAIR_COLUMNS if p in has and c in has
             and not (p == "input" and "instruction" in has)]
    turns = " (conversational: the values are message lists)"
    return [_Candidate("prompt_completion", {"prompt": p, "completion": c},
                       f"Found '{p}' and '{c}': prompt/completion pairs ({p} -> prompt, {c} -> completion)"
                       + (turns if profile.get(p).is_turns else ""))
            for p, c in pairs]


def _detect_stepwise(profile: Profile, has: set[str]) -> list[_Candidate]:
    if not {"prompt", "completions", "labels"} <= has:
        return []
    steps, labels = profile.get("completions"), profile.get("labels")
    if not (steps.mostly(steps.text_lists) and labels.mostly(labels.boolean_lists)):
        return []
    return [_Candidate("stepwise_supervision", {"prompt": "prompt", "completions": "completions",
                                                "step_labels": "labels"},
                       "Found 'prompt', 'completions' (a list of steps) and 'labels' (true/false per step): stepwise "
                       "supervision (TRL's process-reward layout). Tunewise has no process-reward trainer, so a "
                       "solution whose every step is labeled true becomes one supervised example (its steps one per "
                       "line) and a solution with a false step is rejected as 'undesirable'")]


def _detect_unpaired(profile: Profile, has: set[str]) -> list[_Candidate]:
    if not {"prompt", "completion", "label"} <= has or not profile.get("label").mostly(profile.get("label").booleans):
        return []
    return [_Candidate("unpaired_preference", {"prompt": "prompt", "completion": "completion", "desirable": "label"},
                       "Found 'prompt', 'completion' and a true/false 'label': unpaired preference (TRL's KTO "
                       "layout). Tunewise has no KTO trainer, so the desirable completions (label true) become "
                       "prompt/completion examples for supervised fine-tuning and the undesirable ones are rejected "
                       "as 'undesirable'; for DPO, give pairs as prompt, chosen, rejected")]


def _detect_transcript(profile: Profile) -> list[_Candidate]:
    """A text column of whole conversations written out (Guanaco's "### Human: ... ### Assistant: ...")."""
    found = [c for c in profile.top_level() if profile.get(c.path) and c.transcript_style and c.mostly(c.with_user)]
    if not found:
        return []
    column = found[0]
    return [_Candidate("transcript", {"text": column.path},
                       f"Found '{column.path}' holding {STYLES[column.transcript_style]}: conversations, read back "
                       "into chat turns (every assistant turn is trained on)")]


def _detect_classification(profile: Profile) -> list[_Candidate]:
    text = next((c for c in TEXT_COLUMNS if profile.get(c) and profile.get(c).is_text), None)
    label = next((c for c in LABEL_COLUMNS if c != text and profile.get(c) and profile.get(c).is_label_like), None)
    if not text or not label:
        return []
    count = len(profile.get(label).values)
    return [_Candidate("classification", {"text": text, "label": label},
                       f"Found text in '{text}' and a label column '{label}' with short repeating values ({count} "
                       f"distinct in {profile.rows} sampled rows): classification, the label is the assistant's reply")]


def _detect_named_pair(profile: Profile) -> list[_Candidate]:
    """No known layout, but one column is named and shaped like a prompt and another like a reply (Spider:
    'question' and 'query' beside db_id, token lists and the parsed SQL)."""
    prompt, reply = pick_prompt_and_reply(profile, by_name_only=True)
    if prompt is None or reply is None:
        return []
    aside = [c.path for c in profile.top_level() if c.path not in (prompt.path, reply.path)]
    rest = f"; left aside: {', '.join(aside)}" if aside else ""
    return [_Candidate("prompt_completion", {"prompt": prompt.path, "completion": reply.path},
                       f"Found free text in '{prompt.path}', named like a prompt, and '{reply.path}', named like a "
                       f"reply{rest}: prompt/completion pairs ({prompt.path} -> prompt, {reply.path} -> completion; "
                       "pass a mapping if that is wrong)")]


def _detect_document(profile: Profile) -> list[_Candidate]:
    text = next((c for c in DOCUMENT_COLUMNS if profile.get(c) and profile.get(c).is_text), None)
    if not text:
        return []
    return [_Candidate("text", {"text": text}, f"Found '{text}' with no prompt/reply or label columns: plain text "
                                               "documents (continued pre-training)")]


def _transcripts(profile: Profile, name: str, fields: dict[str, str], why: str) -> tuple[dict[str, str], str]:
    """The columns of `fields` that hold transcripts (read back into turns), and what to add to `why` about
    them (nothing when it already names their style)."""
    found = {}
    for role in TRANSCRIPT_ROLES.get(name, ()):
        column = profile.get(fields[role]) if role in fields else None
        if column is not None and column.transcript_style:
            found[fields[role]] = column.transcript_style
    unsaid = [c for c, style in found.items() if STYLES[style] not in why]
    if not unsaid:
        return found, ""
    styles = " and ".join(sorted({STYLES[found[c]] for c in unsaid}))
    verb = "hold" if len(unsaid) > 1 else "holds"
    return found, f"; {', '.join(repr(c) for c in unsaid)} {verb} {styles}, read back into chat turns"


def _label_column(profile: Profile, fields: dict[str, str]) -> tuple[str | None, str]:
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


def _ambiguous(profile: Profile, a: _Candidate, b: _Candidate) -> SchemaError:
    return SchemaError(
        f"The rows fit two formats equally: {a.name} ({a.why}) and {b.name} ({b.why}). Columns seen: "
        f"{profile.describe()}. Pass a mapping to choose, for example \"{_mapping_text(a)}\" or "
        f"\"{_mapping_text(b)}\".")


def _unknown(profile: Profile) -> SchemaError:
    suggestion = _suggest_mapping(profile)
    if profile.get("prompt") and "completion=<column>" in suggestion:
        return SchemaError(
            f"Found only a 'prompt' column: TRL's prompt-only layout, made for online methods (GRPO, RLOO, online "
            "DPO) that generate their own completions and score them. Tunewise trains on given replies: supervised "
            "fine-tuning needs a completion per prompt, DPO a chosen and a rejected reply. Add them to the data. "
            f"Columns seen: {profile.describe()}.")
    return SchemaError(
        f"Could not recognise the format. Columns seen: {profile.describe()}. Supported layouts: alpaca "
        "(instruction, input, output), sharegpt (conversations of {from, value}), chatml (messages of {role, "
        "content}), prompt_completion (prompt+completion, question+answer, query+response, ...), preference "
        "(prompt, chosen, rejected; or chosen and rejected alone, sharing the prompt), openai_preference "
        "(input.messages, preferred_output, non_preferred_output), unpaired_preference (prompt, completion, label "
        "true/false), stepwise_supervision (prompt, completions, labels), transcript (Human:/Assistant:, User:/"
        "Assistant:, <|user|> or ChatML text), classification (text + label), text, squad (context, question, "
        f"answer). Pass a mapping of roles to columns, for example \"{suggestion}\" (roles: {', '.join(ROLES)}).")


def _mapping_text(candidate: _Candidate) -> str:
    if candidate.name == "transcript":  # a mapping names a transcript column as the conversation
        return f"messages={candidate.fields['text']}"
    return ",".join(f"{role}={column}" for role, column in candidate.fields.items())


def _suggest_mapping(profile: Profile) -> str:
    """A plausible mapping for the error message: the most prompt-like free text, then the most reply-like
    column (see columns.pick_prompt_and_reply); never an id, a short category or a token list as the prompt."""
    prompt, reply = pick_prompt_and_reply(profile)
    if prompt is None:
        return "prompt=<column>,completion=<column>"
    return f"prompt={prompt.path},completion={reply.path if reply else '<column>'}"


def _from_mapping(mapping: dict[str, str], profile: Profile) -> DetectedFormat:
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
    label, note = mapping.get("label"), ""
    if name == "transcript":  # messages=<column of transcript text>
        fields = {"text" if role in ("messages", "conversations") else role: column for role, column in fields.items()}
    if name == "unpaired_preference":  # the label says desirable or not: no category to stratify on
        fields, label = {**fields, "desirable": mapping["label"]}, None
        note = " (the true/false label judges each completion: only the desirable ones are trained on)"
    described = ", ".join(f"{role} <- {column}" for role, column in mapping.items())
    transcripts, transcript_why = _transcripts(profile, name, fields, "")
    return DetectedFormat(name, fields, label,
                          f"Used the given mapping ({described}): {name}{note}{transcript_why}.", transcripts)


def _format_for_roles(mapping: dict[str, str], profile: Profile) -> str:
    roles = set(mapping)
    if "messages" in roles or "conversations" in roles:
        role = "messages" if "messages" in roles else "conversations"
        column = profile.columns.get(mapping[role])
        if column and column.transcript_style:
            return "transcript"
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
        label = profile.columns.get(mapping.get("label", ""))
        if "context" not in roles and label and label.mostly(label.booleans):
            return "unpaired_preference"  # a true/false label judges the completion, as in detection
        return "squad" if "context" in roles else "prompt_completion"
    if "text" in roles:
        return "classification" if "label" in roles else "text"
    raise SchemaError(f"mapping roles {sorted(roles)} do not make a format; give one of: instruction+output"
                      "[+input] (alpaca), prompt+completion[+context], chosen+rejected[+prompt], messages, "
                      "conversations, text[+label] (plus label and system with any of them)")


# ---------------------------------------------------------------------------------------------- conversion

_RowError = RowError  # one row does not fit the format; becomes a schema_error Reject
MISSING = object()  # an absent column, distinct from a null value


def to_example(row: RawRow, fmt: DetectedFormat) -> Example | Reject:
    """Convert one row to the canonical Example, or say (as a Reject) why it cannot be."""
    if row.error is not None or row.data is None:
        return Reject(row.source, "parse_error", row.error or "the record could not be parsed", data=None)
    if not isinstance(row.data, dict):
        return Reject(row.source, "schema_error", f"expected a record (object), got {type_name(row.data)}",
                      data=row.data)
    try:
        example = _CONVERTERS[fmt.name](row.data, fmt, row.source)
        if fmt.label_column and example.label is None:
            example.label = _optional_text(row.data, fmt.label_column) or None
    except Undesirable as e:  # judged bad by the data itself: kept out of training, counted apart
        return Reject(row.source, "undesirable", str(e), data=row.data)
    except _RowError as e:
        return Reject(row.source, "schema_error", str(e), data=row.data)
    except (TypeError, ValueError, AttributeError, KeyError) as e:  # a value shape no rule foresaw: still one row
        return Reject(row.source, "schema_error", f"cannot convert the row: {type(e).__name__}: {e}", data=row.data)
    example.metadata = _metadata(row.data, fmt.fields)
    return example


def column_value(data: Any, path: str) -> Any:
    """The value at a column path, dotted for nested objects (a key that itself contains dots wins over
    descending into objects); MISSING when absent. Used for field paths here and group columns (groups.py)."""
    if not isinstance(data, dict):
        return MISSING
    if path in data:
        return data[path]
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _required(data: dict, path: str) -> Any:
    value = column_value(data, path)
    if value is MISSING or value is None:
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
    value = column_value(data, path) if path else None
    return "" if value is MISSING or value is None else _text(value)


def _turns(value: Any, path: str, keys: tuple[str, str] = ("role", "content")) -> list[dict[str, str]]:
    """A list of chat turns ({role, content} or ShareGPT {from, value}) -> canonical messages."""
    shape = f"field '{path}' must be a list of {{{keys[0]}, {keys[1]}}}"
    if not isinstance(value, list):
        raise _RowError(f"{shape}, got {type_name(value)}")
    if not value:
        raise _RowError(f"field '{path}' is an empty list")
    messages = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise _RowError(f"{shape}; turn {i} is a {type_name(turn)}")
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
    raise _RowError(f"field '{path}' turn {index} has no text content (got {type_name(content)})")


def _chat_value(data: dict, path: str, fmt: DetectedFormat) -> str | list[dict[str, str]]:
    """A field that may hold turns: a message list or a transcript column -> messages; anything else -> text."""
    value = _required(data, path)
    if is_turns(value, "role", "content") or is_turns(value, "from", "value"):
        return _turns(value, path)
    if path in fmt.transcripts and isinstance(value, str):
        transcript = parse_transcript(value)
        if transcript is None:
            raise _RowError(_not_a_transcript(path, fmt))
        return _turns(transcript.turns, path)
    return _text(value)


def _not_a_transcript(path: str, fmt: DetectedFormat) -> str:
    return f"field '{path}' is not a transcript: the other rows hold {STYLES[fmt.transcripts[path]]}"


def _with_system(messages: list[dict[str, str]], data: dict, fields: dict[str, str]) -> list[dict[str, str]]:
    system = _optional_text(data, fields.get("system"))
    if system and not (messages and messages[0]["role"] == "system"):
        return [{"role": "system", "content": system}, *messages]
    return messages


def _ends_with_assistant(messages: list[dict[str, str]], path: str) -> list[dict[str, str]]:
    if messages[-1]["role"] != "assistant":
        raise _RowError(f"field '{path}': the last turn must be the assistant's, found '{messages[-1]['role']}'")
    return messages


def _to_chat(data: dict, fmt: DetectedFormat, source: SourceRef) -> Example:
    fields = fmt.fields
    role, path = next(iter((r, c) for r, c in fields.items() if r in ("messages", "conversations")))
    keys = ("from", "value") if role == "conversations" else ("role", "content")
    messages = _ends_with_assistant(_turns(_required(data, path), path, keys), path)
    return Example(source, messages=_with_system(messages, data, fields))


def _to_transcript(data: dict, fmt: DetectedFormat, source: SourceRef) -> Example:
    path = fmt.fields["text"]
    messages = _chat_value(data, path, fmt)
    if isinstance(messages, str):
        raise _RowError(_not_a_transcript(path, fmt))
    return Example(source, messages=_with_system(_ends_with_assistant(messages, path), data, fmt.fields))


def _to_alpaca(data: dict, fmt: DetectedFormat, source: SourceRef) -> Example:
    fields = fmt.fields
    user = _required_text(data, fields["instruction"])
    extra = _optional_text(data, fields.get("input"))
    if extra.strip():
        user = f"{user}\n\n{extra}"
    messages = [{"role": "user", "content": user},
                {"role": "assistant", "content": _required_text(data, fields["output"])}]
    return Example(source, messages=_with_system(messages, data, fields))


def _to_prompt_completion(data: dict, fmt: DetectedFormat, source: SourceRef) -> Example:
    """Plain strings, TRL's conversational form where prompt and completion are message lists, or transcripts."""
    fields = fmt.fields
    messages = _prompt_messages(data, fields["prompt"], fmt)
    completion = _chat_value(data, fields["completion"], fmt)
    messages += completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
    return Example(source, messages=_with_system(_ends_with_assistant(messages, fields["completion"]), data, fields))


def _prompt_messages(data: dict, path: str, fmt: DetectedFormat) -> list[dict[str, str]]:
    prompt = _chat_value(data, path, fmt)
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def _to_unpaired(data: dict, fmt: DetectedFormat, source: SourceRef) -> Example:
    desirable_completion(_required(data, fmt.fields["desirable"]), fmt.fields["desirable"])
    return _to_prompt_completion(data, fmt, source)


def _to_stepwise(data: dict, fmt: DetectedFormat, source: SourceRef) -> Example:
    fields = fmt.fields
    solution = correct_solution(_required(data, fields["completions"]), _required(data, fields["step_labels"]),
                                (fields["completions"], fields["step_labels"]))
    messages = [*_prompt_messages(data, fields["prompt"], fmt), {"role": "assistant", "content": solution}]
    return Example(source, messages=_with_system(messages, data, fields))


def _to_squad(data: dict, fmt: DetectedFormat, source: SourceRef) -> Example:
    fields = fmt.fields
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


def _to_preference(data: dict, fmt: DetectedFormat, source: SourceRef) -> Example:
    """Prompt turns + chosen/rejected replies, from whichever of TRL's preference layouts the row is in:

    - the chosen conversation includes the user's turns (message lists or transcripts such as HH-RLHF): the
      prompt is implicit, what both conversations share; a prompt column beside them that is plain text, or
      the conversations' own start, only repeats it (TRL's maybe_extract_prompt ignores a plain one the same way)
    - a prompt column: explicit prompt; replies are strings or assistant turns
    - two plain texts and no prompt column: the prompt is their common beginning
    """
    fields = fmt.fields
    names = (fields["chosen"], fields["rejected"])
    chosen, rejected = (_chat_value(data, path, fmt) for path in names)
    given = "prompt" in fields and column_value(data, fields["prompt"]) not in (MISSING, None)
    prompt = _prompt_turns(data, fields["prompt"], fmt) if given else None
    if (_has_user_turn(chosen) or _has_user_turn(rejected)) and _prompt_is_implicit(prompt, chosen, data, fmt):
        if not (isinstance(chosen, list) and isinstance(rejected, list)):
            raise _RowError(f"fields '{names[0]}' and '{names[1]}' must both be conversations when one is")
        messages, chosen, rejected = split_conversations(chosen, rejected, names)
    elif prompt is not None:
        chosen_prefix, chosen = _reply(chosen, names[0])
        rejected_prefix, rejected = _reply(rejected, names[1])
        if chosen_prefix != rejected_prefix:
            raise _RowError(f"fields '{names[0]}' and '{names[1]}' continue different conversations")
        messages = prompt + chosen_prefix
    elif "prompt" not in fields and isinstance(chosen, str) and isinstance(rejected, str):
        text, chosen, rejected = split_texts(chosen, rejected, names)
        messages = [{"role": "user", "content": text}]
    else:
        messages = []
    if not messages:
        raise _RowError(f"missing field '{fields.get('prompt', 'prompt')}'")
    if messages[-1]["role"] != "user":
        raise _RowError(f"the prompt must end with the user's turn, found '{messages[-1]['role']}'")
    return Example(source, messages=_with_system(messages, data, fields), chosen=chosen, rejected=rejected)


def _prompt_is_implicit(prompt: list[dict[str, str]] | None, chosen: Any, data: dict, fmt: DetectedFormat) -> bool:
    """Whether the conversations carry the prompt although a prompt column may be there: it is absent, plain
    text (TRL: a plain prompt beside conversations repeats them), or their own start. Any other conversation in
    the prompt column is an explicit prompt that the replies continue (TRL's rule for two conversations)."""
    if prompt is None:
        return True
    path = fmt.fields["prompt"]
    plain = isinstance(column_value(data, path), str) and path not in fmt.transcripts
    return plain or (isinstance(chosen, list) and chosen[:len(prompt)] == prompt)


def _has_user_turn(value: str | list[dict[str, str]]) -> bool:
    return isinstance(value, list) and any(turn["role"] == "user" for turn in value)


def _prompt_turns(data: dict, path: str, fmt: DetectedFormat) -> list[dict[str, str]]:
    value = _required(data, path)
    if isinstance(value, list):
        return _turns(value, path)
    return _prompt_messages(data, path, fmt)


def _reply(value: str | list[dict[str, str]], path: str) -> tuple[list[dict[str, str]], str]:
    """(turns before the reply, reply text)."""
    if not isinstance(value, list):
        return [], value
    turns = _ends_with_assistant(value, path)
    return turns[:-1], turns[-1]["content"]


def _to_classification(data: dict, fmt: DetectedFormat, source: SourceRef) -> Example:
    fields = fmt.fields
    text = _required_text(data, fields["text"])
    label = _required_text(data, fields["label"])
    if not label.strip():
        raise _RowError(f"field '{fields['label']}' is empty (a classification row needs a label)")
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": label}]
    return Example(source, messages=_with_system(messages, data, fields), label=label)


def _to_document(data: dict, fmt: DetectedFormat, source: SourceRef) -> Example:
    return Example(source, text=_required_text(data, fmt.fields["text"]))


def _metadata(data: dict, fields: dict[str, str]) -> dict[str, Any]:
    """The row's other short scalar columns (intent, id, path, __split__): what splits and filters look up."""
    used = {path if path in data else path.split(".")[0] for path in fields.values()}
    return {key: value for key, value in data.items()
            if key not in used and isinstance(value, (str, int, float, bool))
            and not (isinstance(value, str) and len(value) > MAX_METADATA_CHARS)}


_CONVERTERS = {
    "alpaca": _to_alpaca, "sharegpt": _to_chat, "chatml": _to_chat, "prompt_completion": _to_prompt_completion,
    "preference": _to_preference, "openai_preference": _to_preference, "classification": _to_classification,
    "text": _to_document, "squad": _to_squad, "transcript": _to_transcript, "unpaired_preference": _to_unpaired,
    "stepwise_supervision": _to_stepwise,
}
