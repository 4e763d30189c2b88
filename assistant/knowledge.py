"""Load and validate everything under knowledge/: guidance docs, rules, catalogs, lexicon, questions.

Knowledge is data, edited by people who may never read this code, so every loader checks its file and
raises `KnowledgeError` naming the file, the entry (rule id, model id, ...) and the field that is wrong.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from assistant.profile import DERIVED_FIELDS, UseCaseProfile  # the fields rules and questions may name
from executor.knowledge_files import (
    KnowledgeError,
    default_knowledge_dir,
    entries,
    entry_name,
    read_yaml,
    validated,
)
from executor.models.catalog import ModelInfo, load_catalog
from executor.plan import COMPATIBLE_TECHNIQUES
from executor.plan import TECHNIQUES as TECHNIQUE_TABLE

APPROACHES = tuple(COMPATIBLE_TECHNIQUES)
TECHNIQUES = tuple(TECHNIQUE_TABLE)  # the names rules, catalogs and hyperparameters may use


# --------------------------------------------------------------------------- docs


def slugify(heading: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", heading.lower())).strip("-")


@dataclass(frozen=True)
class Section:
    """One citable passage: a `##` section of a guidance doc (or its intro)."""

    citation_id: str  # "<doc id>#<slug>" or "<doc id>" for the intro
    doc_id: str
    doc_title: str
    heading: str
    text: str


@dataclass(frozen=True)
class Doc:
    id: str
    title: str
    path: Path
    sections: tuple[Section, ...]


_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


def parse_doc(path: Path) -> Doc:
    raw = path.read_text(encoding="utf-8")
    match = _FRONT_MATTER.match(raw)
    if not match:
        raise KnowledgeError(f"{path}: missing YAML front matter (--- id/title ---) at line 1")
    meta = yaml.safe_load(match.group(1)) or {}
    for key in ("id", "title"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise KnowledgeError(f"{path}: front matter field {key!r} is missing or empty")
    doc_id, title = meta["id"].strip(), meta["title"].strip()
    body = raw[match.end():]
    sections: list[Section] = []
    # Split on level-2 headings; the text before the first one is the doc's intro.
    parts = re.split(r"^## +(.+?)\s*$", body, flags=re.M)
    intro = re.sub(r"^# .*$", "", parts[0], count=1, flags=re.M).strip()
    if intro:
        sections.append(Section(doc_id, doc_id, title, title, intro))
    seen: set[str] = set()
    for heading, text in zip(parts[1::2], parts[2::2], strict=True):
        slug = slugify(heading)
        if slug in seen:
            raise KnowledgeError(f"{path}: duplicate section heading {heading!r}")
        seen.add(slug)
        sections.append(Section(f"{doc_id}#{slug}", doc_id, title, heading.strip(), text.strip()))
    return Doc(doc_id, title, path, tuple(sections))


# --------------------------------------------------------------------------- rules

_OPERATORS = {"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "known", "contains"}


class RuleEffect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approach: dict[str, float] = Field(default_factory=dict)
    technique: dict[str, float] = Field(default_factory=dict)
    forbid_approach: list[str] = Field(default_factory=list)
    forbid_technique: list[str] = Field(default_factory=list)

    @field_validator("approach", "forbid_approach")
    @classmethod
    def _known_approaches(cls, value):
        bad = [a for a in value if a not in APPROACHES]
        if bad:
            raise ValueError(f"unknown approach(es) {bad}; expected one of {list(APPROACHES)}")
        return value

    @field_validator("technique", "forbid_technique")
    @classmethod
    def _known_techniques(cls, value):
        bad = [t for t in value if t not in TECHNIQUES]
        if bad:
            raise ValueError(f"unknown technique(s) {bad}; expected one of {list(TECHNIQUES)}")
        return value


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    when: dict[str, Any]
    effect: RuleEffect
    reason: str = Field(min_length=10)
    cite: list[str] = Field(min_length=1)
    kind: str = "approach"  # approach | technique | constraint | prior: groups the trace for display


def _check_condition(cond: Any, fields: set[str], where: str) -> None:
    """Validate a `when` clause: {field: value | {op: arg}} with all/any/not combinators."""
    if not isinstance(cond, dict):
        raise KnowledgeError(f"{where}: a condition is a mapping, got {cond!r}")
    for key, arg in cond.items():
        if key in ("all", "any"):
            if not isinstance(arg, list) or not arg:
                raise KnowledgeError(f"{where}.{key}: expects a non-empty list of conditions")
            for i, sub in enumerate(arg):
                _check_condition(sub, fields, f"{where}.{key}[{i}]")
        elif key == "not":
            _check_condition(arg, fields, f"{where}.not")
        elif key not in fields:
            raise KnowledgeError(f"{where}: unknown field {key!r} (known: {', '.join(sorted(fields))})")
        elif isinstance(arg, dict):
            bad = set(arg) - _OPERATORS
            if bad:
                raise KnowledgeError(
                    f"{where}.{key}: unknown operator(s) {sorted(bad)}; use {sorted(_OPERATORS)}"
                )


# --------------------------------------------------------------------------- catalogs


class GpuInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    aliases: list[str] = Field(default_factory=list)
    memory_gb: float
    bf16_tflops: float
    price_per_hour_usd: float


class Cue(BaseModel):
    """A keyword cue: any pattern in a sentence sets `field` to `value` (lexicon.yaml)."""

    model_config = ConfigDict(extra="forbid")

    field: str
    value: Any
    patterns: list[str] = Field(min_length=1)
    negatable: bool = True
    negated_value: Any = None
    # Skip a match inside a question about it ("is fine-tuning necessary?", "should we train from scratch?"):
    # a question is not a fact (lexicon.yaml `question_forms`).
    not_in_question: bool = False
    # Skip a match that the rest of its clause dismisses ("full fine-tuning becomes less feasible",
    # "QLoRA is overkill here"): a method argued against is not the one asked for (lexicon.yaml `dismissal`).
    not_if_dismissed: bool = False


class QuestionOption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any
    label: str
    # A condition on known facts (rules.yaml syntax) under which this answer contradicts what the user
    # already said, so it is neither offered nor counted as a way the decision could change.
    unless: dict[str, Any] | None = None


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    text: str
    options: list[QuestionOption] = Field(min_length=2)


# --------------------------------------------------------------------------- confidence calibration

# The features of assistant/confidence.py's logistic model; calibration.yaml may weigh only these.
FEATURES = ("margin", "known_facts", "open_questions")


@dataclass(frozen=True)
class Calibration:
    """The logistic model of assistant/confidence.py, read from knowledge/calibration.yaml."""

    bias: float
    weights: dict[str, float]
    ask_below: float
    fitted_on: str = ""

    @classmethod
    def load(cls, root: Path) -> Calibration:
        path = root / "calibration.yaml"
        if not path.exists():  # an older knowledge folder: a neutral model that never claims certainty
            return cls(0.0, dict.fromkeys(FEATURES, 0.0), 0.5)
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        weights = raw.get("weights") or {}
        unknown = set(weights) - set(FEATURES)
        if unknown:
            raise KnowledgeError(f"{path}: field 'weights': unknown feature(s) {sorted(unknown)}; "
                                 f"use {list(FEATURES)}")
        return cls(float(raw.get("bias", 0.0)), {f: float(weights.get(f, 0.0)) for f in FEATURES},
                   float(raw.get("ask_below", 0.5)), str(raw.get("fitted_on", "")))

    def probability(self, features: dict[str, float]) -> float:
        z = self.bias + sum(self.weights[f] * features[f] for f in FEATURES)
        return 1.0 / (1.0 + math.exp(-z))


# --------------------------------------------------------------------------- the knowledge base


@dataclass
class Knowledge:
    """All of knowledge/, loaded and cross-checked once per process."""

    root: Path
    docs: dict[str, Doc]
    sections: dict[str, Section]
    rules: list[Rule]
    models: dict[str, ModelInfo]
    gpus: list[GpuInfo]
    hardware: dict[str, Any]
    cues: list[Cue]
    lexicon: dict[str, Any]
    questions: list[Question]
    hyperparameters: dict[str, Any]
    playbook: dict[str, Any]
    sizing: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None
    measurements: list[Measurement] = field(default_factory=list)
    derived_fields: tuple[str, ...] = field(default=())

    @cached_property
    def docs_fingerprint(self) -> str:
        """Changes whenever a guidance doc changes: the retrieval index is rebuilt only then."""
        digest = hashlib.sha256()
        for doc in sorted(self.docs.values(), key=lambda d: d.id):
            digest.update(doc.path.name.encode())
            digest.update(doc.path.read_bytes())
        return digest.hexdigest()[:16]

    def cited(self, citation_id: str) -> Section:
        return self.sections[citation_id]


def load_knowledge(root: str | Path | None = None) -> Knowledge:
    root = Path(root) if root else default_knowledge_dir()
    if not root.is_dir():
        raise KnowledgeError(f"{root}: knowledge folder not found")

    docs: dict[str, Doc] = {}
    for path in sorted((root / "docs").glob("*.md")):
        doc = parse_doc(path)
        if doc.id in docs:
            raise KnowledgeError(f"{path}: doc id {doc.id!r} already used by {docs[doc.id].path.name}")
        docs[doc.id] = doc
    if not docs:
        raise KnowledgeError(f"{root / 'docs'}: no guidance documents (*.md) found")
    sections = {s.citation_id: s for d in docs.values() for s in d.sections}
    # A bare doc id cites the doc's first passage.
    for doc in docs.values():
        sections.setdefault(doc.id, doc.sections[0])

    profile_fields = set(UseCaseProfile.field_names()) | set(DERIVED_FIELDS)

    def check_cites(cites: list[str], where: str) -> None:
        for cid in cites:
            if cid not in sections:
                raise KnowledgeError(f"{where}: field 'cite': unknown citation id {cid!r}")

    rules_path = root / "rules.yaml"
    rules: list[Rule] = []
    seen_ids: set[str] = set()
    for i, raw in enumerate(entries(rules_path, read_yaml(rules_path), "rules")):
        where = f"{rules_path}: rule {entry_name(raw, i)!r}"
        if not isinstance(raw, dict):
            raise KnowledgeError(f"{where}: a rule is a mapping")
        for required in ("id", "when", "effect", "reason", "cite"):
            if required not in raw:
                raise KnowledgeError(f"{where}: field {required!r} is missing")
        rule = validated(Rule, raw, where)
        if rule.id in seen_ids:
            raise KnowledgeError(f"{where}: field 'id': duplicate rule id")
        seen_ids.add(rule.id)
        _check_condition(rule.when, profile_fields, f"{where}: field 'when'")
        check_cites(rule.cite, where)
        rules.append(rule)

    catalog = load_catalog(root)  # models.yaml, read and checked the way the executor reads it
    for info in catalog.models.values():
        check_cites([info.cite], f"{catalog.path}: model {info.id!r}")
    models, sizing = catalog.models, catalog.sizing

    hardware_path = root / "hardware.yaml"
    hardware = read_yaml(hardware_path)
    gpus = [
        validated(GpuInfo, raw, f"{hardware_path}: gpu {entry_name(raw, i)!r}")
        for i, raw in enumerate(entries(hardware_path, hardware, "gpus"))
    ]
    for key in ("cpu", "defaults", "api_pricing"):
        if key not in hardware:
            raise KnowledgeError(f"{hardware_path}: field {key!r} is missing")

    lexicon_path = root / "lexicon.yaml"
    lexicon = read_yaml(lexicon_path)
    cues = []
    for i, raw in enumerate(entries(lexicon_path, lexicon, "cues")):
        where = f"{lexicon_path}: cue #{i + 1} ({raw.get('field') if isinstance(raw, dict) else raw})"
        cue = validated(Cue, raw, where)
        if cue.field not in profile_fields:
            raise KnowledgeError(f"{where}: field 'field': unknown profile field {cue.field!r}")
        for pattern in cue.patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise KnowledgeError(f"{where}: field 'patterns': bad regex {pattern!r}: {exc}") from None
        cues.append(cue)

    questions_path = root / "questions.yaml"
    questions = []
    for i, raw in enumerate(entries(questions_path, read_yaml(questions_path), "questions")):
        where = f"{questions_path}: question {entry_name(raw, i, 'field')!r}"
        question = validated(Question, raw, where)
        if question.field not in profile_fields:
            raise KnowledgeError(f"{where}: field 'field': unknown profile field {question.field!r}")
        for option in question.options:
            if option.unless is not None:
                _check_condition(option.unless, profile_fields, f"{where}: option {option.label!r}: field 'unless'")
        questions.append(question)

    hp_path = root / "hyperparameters.yaml"
    hyperparameters = read_yaml(hp_path)
    for technique in _entries_map(hp_path, hyperparameters, "techniques"):
        if technique not in TECHNIQUES:
            raise KnowledgeError(f"{hp_path}: techniques: unknown technique {technique!r}")

    playbook_path = root / "playbook.yaml"
    playbook = read_yaml(playbook_path)
    for key in ("data_preparation", "evaluation"):
        if not isinstance(playbook, dict) or key not in playbook:
            raise KnowledgeError(f"{playbook_path}: field {key!r} is missing")

    return Knowledge(
        root=root, docs=docs, sections=sections, rules=rules, models=models, gpus=gpus,
        hardware=hardware, cues=cues, lexicon=lexicon, questions=questions,
        hyperparameters=hyperparameters, playbook=playbook, sizing=sizing, calibration=Calibration.load(root),
        derived_fields=tuple(DERIVED_FIELDS), measurements=load_measurements(root / "measurements.yaml"),
    )


class SystemScore(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accuracy: float = Field(ge=0, le=1)
    rows: int = Field(gt=0)
    ci: tuple[float, float] | None = None


class Measurement(BaseModel):
    """One of Tunewise's own measurements (knowledge/measurements.yaml): systems compared on one task."""
    model_config = ConfigDict(extra="forbid")
    id: str
    task_type: str
    task: str
    model: str
    where: str
    systems: dict[str, SystemScore]


def load_measurements(path: Path) -> list[Measurement]:
    if not path.exists():
        return []
    found = []
    for i, raw in enumerate(entries(path, read_yaml(path), "measurements")):
        try:
            found.append(Measurement.model_validate(raw))
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise KnowledgeError(f"{path}: measurement {entry_name(raw, i)!r}: field {where!r}: {problem['msg']}") \
                from None
    return found


def _entries_map(path: Path, raw: Any, key: str) -> dict:
    if not isinstance(raw, dict) or not isinstance(raw.get(key), dict):
        raise KnowledgeError(f"{path}: expected a top-level {key!r} mapping")
    return raw[key]


# --------------------------------------------------------------------------- chat follow-ups


class FollowupCue(BaseModel):
    """One entry of knowledge/followups.yaml: an id (a command, a question topic) and its patterns."""
    model_config = ConfigDict(extra="forbid")
    id: str
    patterns: list[str] = Field(min_length=1)


class OptionCue(BaseModel):
    """Words that name an option ("few-shot" -> prompting) in a question such as "why not few-shot?"."""
    model_config = ConfigDict(extra="forbid")
    approach: str
    technique: str
    patterns: list[str] = Field(min_length=1)


class GlossaryEntry(BaseModel):
    """A term and the guidance passage that defines it ("what does LoRA mean?")."""
    model_config = ConfigDict(extra="forbid")
    term: str
    cite: str
    patterns: list[str] = Field(min_length=1)


class FactCue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str
    value: Any
    patterns: list[str] = Field(min_length=1)


class Followups(BaseModel):
    """What a chat message after the description is (knowledge/followups.yaml, read by assistant/chat/followups.py)."""
    model_config = ConfigDict(extra="forbid")
    command_prefix: str
    commands: list[FollowupCue]
    what_if: list[str]
    question_openers: list[str] = Field(default_factory=list)
    correction: list[str]
    question_topics: list[FollowupCue]
    options: list[OptionCue]
    glossary: list[GlossaryEntry]
    extra_facts: list[FactCue] = Field(default_factory=list)


def load_followups(root: str | Path | None = None, sections: dict[str, Section] | None = None) -> Followups:
    """Read and check knowledge/followups.yaml: every pattern compiles, every option is a known approach and
    technique, every glossary citation exists (when `sections` is given), every fact names a profile field."""
    root = Path(root) if root else default_knowledge_dir()
    path = root / "followups.yaml"
    found = validated(Followups, read_yaml(path), str(path))

    def check(pattern: str, where: str) -> None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise KnowledgeError(f"{path}: {where}: pattern {pattern!r} does not compile: {exc}") from None

    check(found.command_prefix, "command_prefix")
    for kind, cues in (("commands", found.commands), ("question_topics", found.question_topics)):
        for cue in cues:
            for p in cue.patterns:
                check(p, f"{kind} {cue.id!r}")
    for kind, patterns in (("what_if", found.what_if), ("question_openers", found.question_openers),
                           ("correction", found.correction)):
        for p in patterns:
            check(p, kind)
    for option in found.options:
        if option.approach not in APPROACHES or option.technique not in TECHNIQUES:
            raise KnowledgeError(f"{path}: options: unknown option {option.approach}/{option.technique}")
        for p in option.patterns:
            check(p, f"options {option.approach}/{option.technique}")
    for entry in found.glossary:
        if sections is not None and entry.cite not in sections:
            raise KnowledgeError(f"{path}: glossary {entry.term!r}: field 'cite': unknown citation id {entry.cite!r}")
        for p in entry.patterns:
            check(p, f"glossary {entry.term!r}")
    for cue in found.extra_facts:
        if cue.field not in UseCaseProfile.model_fields:
            raise KnowledgeError(f"{path}: extra_facts: unknown profile field {cue.field!r}")
        for p in cue.patterns:
            check(p, f"extra_facts {cue.field!r}")
    return found
