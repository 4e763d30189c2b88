"""From a use-case description to an explained Recommendation and a runnable TrainingPlan.

    text -> profile (extract) -> decision (rules) -> base model, hyperparameters, estimates
         -> reasons (fired rules) + citations (their passages + retrieved guidance) -> questions
         -> TrainingPlan (executor/plan.py)

`Advisor` loads the knowledge, the extractor and the retrieval index once and is then cheap to call
(the CLI's --jsonl mode and the chat keep one).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from assistant.confidence import (
    MAX_QUESTIONS_BEFORE_ANSWER,
    NOTHING_KNOWN_CAP,
    decision_features,
    known_decision_facts,
)
from assistant.estimates import estimate, fits, training_memory_gb, within_headroom
from assistant.extract import ProfileExtractor
from assistant.knowledge import Knowledge, ModelInfo, load_knowledge
from assistant.profile import UseCaseProfile
from assistant.rules import AskedQuestion, Decision, RulesEngine
from assistant.semantic import default_extractor
from assistant.sizing import chinchilla_model, large_steps, right_sized
from executor.models.catalog import model_ref
from executor.plan import (
    TECHNIQUES,
    DataSpec,
    EstimateSpec,
    EvaluationSpec,
    HardwareSpec,
    RetrievalSpec,
    SplitSpec,
    TrainingPlan,
    TrainingSpec,
    trains,
)

MAX_TEXT_CHARS = 200_000  # longer descriptions are read up to here; the rest is reported, not lost silently


class Reason(BaseModel):
    rule: str
    text: str
    citations: list[str]


class Citation(BaseModel):
    id: str
    doc: str
    title: str
    section: str
    passage: str
    source: str  # "rule": a fired rule rests on it; "retrieval": found by similarity to the use case
    score: float | None = None


class Alternative(BaseModel):
    approach: str
    technique: str
    score: float
    when_it_wins: str


class Recommendation(BaseModel):
    approach: str
    technique: str
    base_model: str
    base_model_info: dict[str, Any]
    confidence: float
    confidence_label: str
    confidence_basis: dict[str, float] = Field(default_factory=dict)  # the calibrated model's inputs
    reasons: list[Reason]
    citations: list[Citation]
    questions: list[AskedQuestion]
    # The questions the interview asks before it answers: the most decision-changing ones, only when the
    # confidence is below the calibrated threshold, and never one the text already answered.
    ask_first: list[AskedQuestion] = Field(default_factory=list)
    alternatives: list[Alternative]
    hyperparameters: dict[str, Any]
    data_preparation: list[str]
    evaluation_plan: list[str]
    estimates: dict[str, Any]
    profile: dict[str, Any]
    scores: dict[str, dict[str, float]]
    notes: list[str] = Field(default_factory=list)
    plan: TrainingPlan

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------- base model


def bundled_default(knowledge: Knowledge) -> ModelInfo:
    return next(m for m in knowledge.models.values() if m.source == "bundled")


def choose_base_model(
    facts: dict[str, Any], approach: str, technique: str, knowledge: Knowledge
) -> tuple[ModelInfo, str]:
    """The catalog model that suits the decision, with a one-line why."""
    models = knowledge.models
    preferred = models.get(facts.get("preferred_model") or "")
    vendor = facts.get("vendor")
    if technique == "api" or (vendor == "openai_api" and technique == "none"):
        if preferred and preferred.family == "openai" and "api" in preferred.methods:
            return preferred, "the OpenAI model you named"
        model = next(m for m in models.values() if m.family == "openai" and "api" in m.methods)
        return model, "OpenAI's fine-tunable model with the best price/quality on file"
    if vendor == "anthropic_api":
        if preferred and preferred.family == "anthropic":
            return preferred, "the Anthropic model you named"
        return next(m for m in models.values() if m.family == "anthropic"), "Anthropic's model on file"
    if approach == "from_scratch":
        return chinchilla_model(facts.get("corpus_tokens"), knowledge)

    has_gpu, gpu_gb = facts.get("has_gpu"), facts.get("gpu_memory_gb") or 0.0
    gpu_count = facts.get("gpu_count") or 1
    if preferred and preferred.source != "api" and (technique == "none" or technique in preferred.methods):
        if not has_gpu or fits(preferred, technique, gpu_gb, gpu_count, knowledge):
            return preferred, "the model you named"
    if not has_gpu:
        why = "no GPU" if has_gpu is False else "GPU unknown"
        return bundled_default(knowledge), f"{why}: the bundled offline default, which trains on a CPU"
    model, why = right_sized(facts, technique, knowledge)
    if model is None:
        return bundled_default(knowledge), f"{why}: the bundled default, the smallest there is"
    return model, why


# --------------------------------------------------------------------------- hyperparameters


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def training_spec(
    technique: str, approach: str, examples: int | None, has_gpu: bool | None, knowledge: Knowledge
) -> TrainingSpec | None:
    hp = knowledge.hyperparameters
    entry = hp["techniques"].get(technique)
    if entry is None:
        return None
    values = dict(entry.get("base", {}))
    count = examples if examples is not None else 1000
    for tier in entry.get("tiers", []):
        if tier.get("max_examples") is None or count <= tier["max_examples"]:
            values.update({k: v for k, v in tier.items() if k != "max_examples"})
            break
    values.update(hp.get("approaches", {}).get(approach, {}))
    common = hp["common"]
    micro = common["gpu_micro_batch"] if has_gpu else common["cpu_micro_batch"]
    values.setdefault("per_device_batch_size", micro)
    values.setdefault("gradient_accumulation_steps", max(1, common["effective_batch_size"] // micro))
    values.setdefault("max_seq_length", common["max_seq_length"] if has_gpu else common["cpu_max_seq_length"])
    return TrainingSpec(method=technique, **_nest(values))


def fit_micro_batch(
    train: TrainingSpec, model: ModelInfo, gpu_gb: float, gpu_count: int, knowledge: Knowledge
) -> TrainingSpec:
    """Largest micro-batch (then gradient checkpointing) that fits the GPU with the catalog's headroom, as
    `fits` judges the model; accumulation keeps the
    effective batch the same, so the optimization is unchanged by the memory it runs in."""
    effective = train.per_device_batch_size * train.gradient_accumulation_steps
    lora_r = train.lora.r if train.lora else 16
    for checkpointing in (False, True):
        micro = train.per_device_batch_size
        while micro >= 1:
            needed = training_memory_gb(
                model, train.method, micro_batch=micro, seq_len=train.max_seq_length, lora_r=lora_r,
                gradient_checkpointing=checkpointing, gpu_count=gpu_count,
            )
            if within_headroom(needed, gpu_gb, knowledge):
                return train.model_copy(update={
                    "per_device_batch_size": micro,
                    "gradient_accumulation_steps": max(1, effective // micro),
                    "gradient_checkpointing": "on" if checkpointing else "off",
                })
            micro //= 2
    return train  # nothing fits: the estimate shows the shortfall


# --------------------------------------------------------------------------- the advisor


class Advisor:
    """Loads knowledge, extractor and retrieval once; `recommend` is then fast."""

    def __init__(
        self,
        knowledge: Knowledge | None = None,
        extractor: ProfileExtractor | None = None,
        index: Any = "auto",
    ):
        self.knowledge = knowledge or load_knowledge()
        self.extractor = extractor or default_extractor(self.knowledge)
        self.engine = RulesEngine(self.knowledge)
        if index == "auto":
            from assistant.retrieval import KnowledgeIndex  # chromadb: only for advisors that cite passages

            index = KnowledgeIndex(self.knowledge)
        self.index = index

    def profile_from_text(self, text: str) -> tuple[UseCaseProfile, list[str]]:
        notes = []
        text = text or ""
        if len(text) > MAX_TEXT_CHARS:
            notes.append(
                f"The description is {len(text):,} characters; the first {MAX_TEXT_CHARS:,} were read."
            )
            text = text[:MAX_TEXT_CHARS]
        return self.extractor.extract(text), notes

    def recommend(self, text: str = "", profile: UseCaseProfile | None = None) -> Recommendation:
        notes: list[str] = []
        if profile is None:
            profile, notes = self.profile_from_text(text)
        kn = self.knowledge
        decision = self.engine.decide(profile)
        facts = decision.facts
        counterfactuals = self.engine.counterfactuals(profile)
        questions = self.engine.questions(profile, decision, counterfactuals)

        model, model_why = choose_base_model(facts, decision.approach, decision.technique, kn)
        examples = facts.get("example_count")
        train = None
        if trains(decision.technique):
            train = training_spec(decision.technique, decision.approach, examples, facts.get("has_gpu"), kn)
            if facts.get("has_gpu") and model.params_b:
                train = large_steps(train, model, facts.get("gpu_memory_gb"), facts.get("gpu_count") or 1, examples, kn)
                train = fit_micro_batch(train, model, facts.get("gpu_memory_gb"), facts.get("gpu_count") or 1, kn)
        est = self._estimates(model, decision, train, facts)

        reasons = [
            Reason(rule=r.id, text=r.reason, citations=r.cite) for r in self.engine.reasons(decision)
        ]
        citations = self._citations(text, decision, reasons, model)
        basis = decision_features(decision, known_decision_facts(profile), len(questions))
        confidence = self._confidence(profile, basis)
        label = "low" if confidence < 0.4 else "medium" if confidence < 0.7 else "high"
        ask_first = (
            questions[:MAX_QUESTIONS_BEFORE_ANSWER] if confidence < kn.calibration.ask_below else []
        )
        if facts.get("language") == "other":
            notes.append("The description does not read as English; little could be extracted from it, "
                         "so the recommendation rests on defaults. Answer the questions to sharpen it.")
        if not profile.known_fields():
            notes.append("Nothing decision-relevant was found in the description yet; answer the questions.")
        if decision.technique == "qlora" and facts.get("has_gpu") is False:
            notes.append("QLoRA runs on CPU here (bitsandbytes 4-bit) and saves memory, but it is slower "
                         "than LoRA on CPU.")

        plan = self._plan(profile, decision, model, train, est, text)
        hyper = train.model_dump(exclude_none=True) if train else {}
        return Recommendation(
            approach=decision.approach,
            technique=decision.technique,
            base_model=model.id,
            base_model_info={
                "name": model.name, "family": model.family, "params_b": model.params_b,
                "license": model.license, "context_length": model.context_length, "why": model_why,
                "good_for": model.good_for, "cite": model.cite,
            },
            confidence=round(confidence, 3),
            confidence_basis=basis,
            confidence_label=label,
            reasons=reasons,
            citations=citations,
            questions=questions,
            ask_first=ask_first,
            alternatives=self._alternatives(decision, counterfactuals),
            hyperparameters=hyper,
            data_preparation=self._data_steps(facts, decision),
            evaluation_plan=self._evaluation_steps(facts, decision),
            estimates={
                "gpu_memory_gb": est.gpu_memory_gb, "train_hours": est.train_hours,
                "cost_usd": est.cost_usd, "hardware": est.hardware, "training_tokens": est.tokens,
                "assumptions": est.assumptions, "formula": est.formula,
            },
            profile=profile.summary(),
            scores={
                "approach": {k: v for k, v in decision.approach_scores.items()},
                "technique": dict(sorted(decision.technique_scores.items())),
            },
            notes=notes,
            plan=plan,
        )

    # ------------------------------------------------------------------ pieces
    def _alternatives(self, decision: Decision, table) -> list[Alternative]:
        out: list[Alternative] = []
        seen = {decision.key}
        for approach, technique, score in decision.ranked_options():
            if (approach, technique) in seen or len(out) >= 3:
                continue
            seen.add((approach, technique))
            flip = next(
                ((q, o) for q, o, alt in table if alt.key == (approach, technique)), None
            )
            if flip:
                question, option = flip
                when = f"if the answer to “{question.text}” were “{option.label}”"
            else:
                when = "no single changed fact makes it win; it would need several"
            out.append(Alternative(approach=approach, technique=technique, score=score, when_it_wins=when))
        return out

    def _estimates(self, model, decision, train, facts):
        return estimate(
            model,
            decision.technique,
            examples=facts.get("example_count"),
            epochs=train.epochs if train else 3,
            micro_batch=train.per_device_batch_size if train else 1,
            seq_len=train.max_seq_length if train else 1024,
            lora_r=train.lora.r if train and train.lora else 16,
            gradient_checkpointing={"on": True, "off": False}.get(train.gradient_checkpointing)
            if train else None,
            gpu_memory_gb=facts.get("gpu_memory_gb"),
            gpu_count=facts.get("gpu_count"),
            gpu_name=facts.get("gpu_name"),
            knowledge=self.knowledge,
        )

    def _citations(self, text, decision, reasons, model) -> list[Citation]:
        kn = self.knowledge
        out: dict[str, Citation] = {}
        for cid in [c for r in reasons for c in r.citations] + [model.cite]:
            if cid not in out:
                s = kn.sections[cid]
                out[cid] = Citation(id=s.citation_id, doc=s.doc_id, title=s.doc_title, section=s.heading,
                                    passage=s.text, source="rule")
        if self.index is not None:
            query = f"{decision.approach.replace('_', ' ')} {decision.technique}. {text[:2000]}"
            for passage in self.index.search(query, k=3):
                if passage.citation_id not in out:
                    out[passage.citation_id] = Citation(
                        id=passage.citation_id, doc=passage.doc_id, title=passage.title,
                        section=passage.heading, passage=passage.text, source="retrieval",
                        score=round(passage.score, 4),
                    )
        return list(out.values())

    def _confidence(self, profile: UseCaseProfile, basis: dict[str, float]) -> float:
        confidence = self.knowledge.calibration.probability(basis)
        if basis["known_facts"] == 0:
            confidence = min(confidence, NOTHING_KNOWN_CAP)
        if profile.language.value == "other":
            confidence = min(confidence, 0.3)  # little could be read: the rules ran on defaults
        return confidence

    def _data_steps(self, facts, decision) -> list[str]:
        playbook = self.knowledge.playbook
        steps = list(playbook["data_preparation"]["common"])
        kind = facts.get("data_kind")
        if kind:
            steps += playbook["data_preparation"]["by_data_kind"].get(kind, [])
        if decision.technique not in ("none",):
            steps.append(playbook["data_preparation"]["split"])
        return steps

    def _evaluation_steps(self, facts, decision) -> list[str]:
        ev = self.knowledge.playbook["evaluation"]
        steps = list(ev["common"]) + list(ev["by_approach"].get(decision.approach, []))
        task = ev["by_task_type"].get(facts.get("task_type") or "")
        if task:
            steps.append(task["note"])
        if TECHNIQUES[decision.technique].needs_preference_data:
            steps += ev["preference_techniques"]
        return steps

    def _plan(self, profile, decision, model, train, est, text) -> TrainingPlan:
        facts = decision.facts
        ev = self.knowledge.playbook["evaluation"]
        task = ev["by_task_type"].get(facts.get("task_type") or "", {})
        baselines = {
            "prompting": ["zero_shot", "few_shot"],
            "rag": ["zero_shot", "rag"],
            "fine_tuning": ["zero_shot", "few_shot"],
            "rag_fine_tuning": ["zero_shot", "few_shot", "rag"],
            "from_scratch": ["zero_shot"],
        }[decision.approach]
        metrics = ["perplexity", *task.get("metrics", ["task_accuracy"])]
        if TECHNIQUES[decision.technique].needs_preference_data:
            metrics.append("preference")
        has_gpu = facts.get("has_gpu")
        return TrainingPlan(
            approach=decision.approach,
            technique=decision.technique,
            base_model=model_ref(model),
            data=DataSpec(
                kind=facts.get("data_kind"),
                expected_examples=facts.get("example_count"),
                split=SplitSpec(stratify_by="label" if facts.get("data_kind") == "labeled_classes" else None),
            ),
            training=train,
            retrieval=RetrievalSpec() if decision.approach in ("rag", "rag_fine_tuning") else None,
            evaluation=EvaluationSpec(task=task.get("task", "auto"), metrics=list(dict.fromkeys(metrics)),
                                      baselines=baselines),
            hardware=HardwareSpec(
                device="cuda" if has_gpu else "cpu" if has_gpu is False else "auto",
                gpu_count=facts.get("gpu_count") or (1 if has_gpu else 0),
                gpu_memory_gb=facts.get("gpu_memory_gb"),
            ),
            estimates=EstimateSpec(
                gpu_memory_gb=est.gpu_memory_gb, train_hours=est.train_hours, cost_usd=est.cost_usd
            ),
            use_case=" ".join((text or "").split())[:200],
        )
