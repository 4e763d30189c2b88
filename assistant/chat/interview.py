"""The interview: from free text to a profile the rules engine can decide on, asking only what matters.

    describe (free text) -> extract -> merge into the profile -> show what was understood (editable)
      -> ask the unknown facts whose answer would change the decision (a few at a time, quick replies)
      -> answers / corrections (`set FIELD=VALUE`) -> recommendation -> "what if ..." re-decisions

The state is plain JSON (`Interview.to_state`) so Chainlit can persist it in the thread's metadata and a
resumed chat continues where it stopped. Nothing here knows about Chainlit.

Lazy imports: cards (which imports the advisor, assistant.recommend) is imported by the functions that show a
what-if and estimates, so the interview's parsing and state load without the advisor.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from assistant.knowledge import Knowledge
from assistant.profile import UseCaseProfile

QUESTIONS_PER_TURN = 2   # asked together, each with its quick-reply buttons
MAX_QUESTIONS = 6        # then the card is shown; its "questions that would change this" list stays open
HIDDEN_FIELDS = ("language",)  # a property of the text, not of the use case: not shown, not changed by "what if"

FIELD_NAMES = {
    "domain": "Domain", "task_type": "Task", "data_kind": "Data", "example_count": "Training examples",
    "document_count": "Documents", "corpus_tokens": "Raw text (tokens)", "knowledge_freshness": "Knowledge changes",
    "knowledge_intensive": "Answers depend on your documents", "needs_citations": "Must cite sources",
    "output_format": "Output format", "custom_tone": "Own tone / brand voice", "domain_vocabulary": "Domain jargon",
    "specialized_reasoning": "Specialized reasoning", "latency_budget_ms": "Latency budget (ms)",
    "gpu_count": "GPUs", "gpu_memory_gb": "GPU memory (GB)", "gpu_name": "GPU", "deployment": "Runs where",
    "budget": "Budget", "budget_usd": "Budget (USD)", "privacy": "Data sensitivity", "vendor": "Vendor",
    "preferred_model": "Preferred model", "requested_technique": "Requested technique",
    "task_count": "Tasks / tenants", "domain_coverage": "Existing models know the domain", "language": "Language",
    "examples_per_class": "Examples per class", "class_count": "Classes",
    "hallucination_concern": "Worried about made-up answers",
    "cost_per_request_matters": "Cost per request matters", "deadline_days": "Deadline (days)",
    "team_skills": "ML skills in the team", "tool_calling": "Calls tools / functions",
    "existing_retrieval": "Has a retrieval system", "teacher_outputs": "A larger model's outputs to learn from",
    "multilingual": "Inputs in several languages", "label_churn": "Labels or categories change often",
    "reward_signal": "A scorer / reward model for outputs", "retrieval_noise": "Retrieved passages can be irrelevant",
    "prompting_fell_short": "Prompting a general model fell short", "training_intent": "Wants to train a model",
    "mentions_documents": "Mentions documents", "knowledge_gap": "General models lack the facts",
    "raw_corpus": "A raw text corpus to train on", "tuning_fell_short": "A fine-tune was tried and fell short",
    "prompting_works": "Prompting already mostly works",
    "continued_pretraining": "Continue pre-training an existing model",
}
_WHAT_IF = re.compile(r"^\s*(?:and\s+|but\s+|so\s+)?(what\s+if|what\s+about|suppose|imagine|assume|if\s+we|"
                      r"if\s+instead|if\s+our)\b[\s,:]*(?P<clause>.*)$", re.I | re.S)
_SET = re.compile(r"^\s*set\s+(?P<body>.+)$", re.I | re.S)
_PAIR = re.compile(r"([a-z_]+)\s*[=:]\s*(\"[^\"]*\"|'[^']*'|[^\s,;]+)", re.I)
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


@dataclass(frozen=True)
class FactLine:
    field: str
    name: str
    value: Any
    shown: str      # the value as a person reads it (the question's option label when there is one)
    source: str     # text | user | llm
    evidence: str | None


@dataclass
class WhatIf:
    """The decision with some facts changed, next to the current one; nothing is kept unless applied."""

    clause: str
    changes: dict[str, tuple[Any, Any]]  # field -> (current value, hypothetical value)
    profile: UseCaseProfile | None = None  # the hypothetical profile (None when nothing changed)


@dataclass
class Interview:
    profile: UseCaseProfile = field(default_factory=UseCaseProfile)
    texts: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    done: bool = False  # the user asked for the recommendation (or there was nothing left worth asking)

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict[str, Any]:
        return {"profile": self.profile.model_dump(mode="json"), "texts": self.texts, "asked": self.asked,
                "done": self.done}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Interview:
        if not state:
            return cls()
        return cls(UseCaseProfile.model_validate(state["profile"]), list(state.get("texts", [])),
                   list(state.get("asked", [])), bool(state.get("done")))

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    # ------------------------------------------------------------------ turns
    def describe(self, text: str, extracted: UseCaseProfile) -> list[str]:
        """Merge what `extracted` (read from `text`) says: the user's own answers win over anything read
        from text; newer text wins over older text. Returns the fields that changed."""
        self.texts.append(text.strip())
        changed = []
        profile = self.profile
        for name in UseCaseProfile.field_names():
            old, new = getattr(profile, name), getattr(extracted, name)
            if not new.known or old.source == "user" or (old.known and old.value == new.value):
                continue
            profile = profile.with_fact(name, new.value, new.source, new.evidence)
            changed.append(name)
        self.profile = profile
        return [c for c in changed if c not in HIDDEN_FIELDS]

    def answer(self, field_name: str, value: Any, evidence: str | None = None) -> None:
        """A quick-reply answer or a correction: the user's word is final."""
        self.profile = self.profile.with_fact(field_name, value, "user", evidence or "your answer")
        if field_name not in self.asked:
            self.asked.append(field_name)

    def next_questions(self, questions: list, limit: int = QUESTIONS_PER_TURN) -> list:
        """The most decision-changing questions not asked yet (the advisor's ranking), or none once the
        user asked for the recommendation or enough was asked."""
        if self.done or len(self.asked) >= MAX_QUESTIONS:
            return []
        return [q for q in questions if q.field not in self.asked][:limit]

    def mark_asked(self, fields: list[str]) -> None:
        self.asked += [f for f in fields if f not in self.asked]

    # ------------------------------------------------------------------ what if
    def what_if(self, clause: str, extracted: UseCaseProfile) -> WhatIf:
        changes: dict[str, tuple[Any, Any]] = {}
        hypothetical = self.profile
        for name in extracted.known_fields():
            if name in HIDDEN_FIELDS:
                continue
            old, new = getattr(self.profile, name).value, getattr(extracted, name).value
            if old != new:
                changes[name] = (old, new)
                hypothetical = hypothetical.with_fact(name, new, "user", f"what if: {clause}")
        return WhatIf(clause, changes, hypothetical if changes else None)

    def apply(self, what_if: WhatIf) -> None:
        for name, (_, new) in what_if.changes.items():
            self.answer(name, new, f"what if: {what_if.clause}")


# ---------------------------------------------------------------------- parsing user messages


def what_if_clause(message: str) -> str | None:
    """The hypothetical part of "what if we only had a 12 GB GPU?", or None for other messages."""
    match = _WHAT_IF.match(message)
    if not match:
        return None
    return match.group("clause").strip().rstrip("?").strip() or None


def parse_set_command(message: str) -> dict[str, str] | None:
    """`set gpu_memory_gb=24 learning_rate=1e-4` -> {"gpu_memory_gb": "24", ...}; None if not a set command."""
    match = _SET.match(message)
    if not match:
        return None
    pairs = {k.lower(): v.strip("\"'") for k, v in _PAIR.findall(match.group("body"))}
    return pairs or None


def _value_type(field_name: str):
    annotation = UseCaseProfile.model_fields[field_name].annotation
    return typing.get_args(annotation.model_fields["value"].annotation)[0]


def parse_fact_value(field_name: str, raw: str) -> Any:
    """A typed value for a profile field from what a person typed; ValueError says what is accepted."""
    if field_name not in UseCaseProfile.model_fields:
        raise ValueError(f"unknown fact {field_name!r}")
    kind = _value_type(field_name)
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"{field_name}: say yes or no (got {raw!r})")
    if kind in (int, float):
        match = re.fullmatch(r"([\d,]*\.?\d+)\s*([kmb])?", text.lower().replace("_", ""))
        if not match:
            raise ValueError(f"{field_name}: expected a number (got {raw!r})")
        number = float(match.group(1).replace(",", "")) * {"k": 1e3, "m": 1e6, "b": 1e9, None: 1}[match.group(2)]
        return int(number) if kind is int else number
    allowed = typing.get_args(kind)
    if allowed and text not in allowed:
        raise ValueError(f"{field_name}: use one of {', '.join(map(str, allowed))} (got {raw!r})")
    return text


def set_facts(interview: Interview, pairs: dict[str, str]) -> tuple[list[str], list[str]]:
    """Apply the profile fields among `pairs`; returns (fields set, problems). Other keys are left alone."""
    done, problems = [], []
    for key, raw in pairs.items():
        if key not in UseCaseProfile.model_fields:
            continue
        try:
            interview.answer(key, parse_fact_value(key, raw), f"set {key}={raw}")
            done.append(key)
        except (ValueError, ValidationError) as exc:
            problems.append(str(exc).splitlines()[0])
    return done, problems


# ---------------------------------------------------------------------- showing facts


def option_label(knowledge: Knowledge, field_name: str, value: Any) -> str | None:
    question = next((q for q in knowledge.questions if q.field == field_name), None)
    if question is None:
        return None
    return next((o.label for o in question.options if o.value == value), None)


def show_value(knowledge: Knowledge, field_name: str, value: Any) -> str:
    """A fact's value as a person reads it: numbers as numbers (an option label such as "100 – 10,000" would
    hide the count that was stated), yes/no and categories by their option labels."""
    if isinstance(value, bool):
        return option_label(knowledge, field_name, value) or ("yes" if value else "no")
    if isinstance(value, int | float):
        return f"{int(value) if float(value).is_integer() else value:,}"
    return option_label(knowledge, field_name, value) or str(value).replace("_", " ")


def understood(profile: UseCaseProfile, knowledge: Knowledge) -> list[FactLine]:
    lines = []
    for name, fact in profile.summary().items():
        if name in HIDDEN_FIELDS:
            continue
        lines.append(FactLine(name, FIELD_NAMES.get(name, name), fact["value"],
                              show_value(knowledge, name, fact["value"]), fact["source"], fact["evidence"]))
    return lines


def understood_markdown(profile: UseCaseProfile, knowledge: Knowledge, changed: list[str] | None = None) -> str:
    lines = understood(profile, knowledge)
    if not lines:
        return ("I could not find anything decision-relevant in that yet. Tell me what the model should do, what "
                "data you have (and how much), and what hardware you can train on.")
    rows = ["**What I understood** (wrong? type `set FIELD=VALUE`, e.g. `set gpu_memory_gb=24`)", "",
            "| fact | value | from |", "|---|---|---|"]
    if changed and any(line.field in changed for line in lines):
        rows.insert(1, "*(new)*: read from your last message; the other facts were known before it.")
    for line in lines:
        mark = " (new)" if changed and line.field in changed else ""
        source = {"user": "your answer", "llm": "LLM reading"}.get(line.source, "")
        evidence = " ".join((line.evidence or "").split())
        where = source if line.source == "user" else f"“{evidence[:90]}{'…' if len(evidence) > 90 else ''}”"
        rows.append(f"| {line.name} `{line.field}`{mark} | {line.shown} | {where.replace('|', '/')} |")
    return "\n".join(rows)


def what_if_markdown(what_if: WhatIf, knowledge: Knowledge, before, after) -> str:
    """`before` / `after` are Recommendations for the current and the hypothetical profile."""
    if not what_if.changes:
        return (f"I could not tell which fact “{what_if.clause}” changes. Try e.g. “what if we only had a 12 GB GPU?”, "
                "“what if the data is sensitive?” or “what if we had 50,000 examples?”.")
    from assistant.chat.cards import option_name

    changed = "; ".join(
        f"{FIELD_NAMES.get(f, f)}: {'unknown' if old is None else show_value(knowledge, f, old)} → "
        f"{show_value(knowledge, f, new)}" for f, (old, new) in what_if.changes.items())
    same = (before.approach, before.technique, before.base_model) == (after.approach, after.technique, after.base_model)
    head = f"**What if** {changed}"
    if same:
        body = (f"The recommendation stays **{option_name(after.approach, after.technique)}** on "
                f"{after.base_model_info['name']}.")
    else:
        body = (f"The recommendation changes from **{option_name(before.approach, before.technique)}** on "
                f"{before.base_model_info['name']} to **{option_name(after.approach, after.technique)}** on "
                f"{after.base_model_info['name']} ({after.base_model_info['why']}).")
    new_reasons = [r for r in after.reasons if r.rule not in {b.rule for b in before.reasons}]
    lines = [head, "", body]
    if new_reasons:
        lines += ["", "What makes the difference:"] + [f"- {r.text} [{', '.join(r.citations)}]" for r in new_reasons]
    est_b, est_a = before.estimates, after.estimates
    if est_a.get("gpu_memory_gb") != est_b.get("gpu_memory_gb") or est_a.get("train_hours") != est_b.get("train_hours"):
        from assistant.chat.cards import hours, memory

        lines += ["", f"Estimates: memory {memory(est_b)} → {memory(est_a)}, training time "
                      f"{hours(est_b['train_hours'])} → {hours(est_a['train_hours'])}."]
    return "\n".join(lines)
