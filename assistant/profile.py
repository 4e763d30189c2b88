"""The UseCaseProfile: what we know about a team's use case, and where each fact came from.

Every field is a `Fact`: a value plus its provenance (the sentence it was read from, the user's answer,
an LLM's extraction) or `unknown`. The rules engine reads the values; the interview asks about the
unknown fields that would change the decision; the chat shows the evidence so users can correct it.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")

Source = Literal["unknown", "text", "user", "llm", "default"]

# Facts computed from the profile (and the model catalog) that rules may name like profile fields; the rules
# engine derives them (assistant/rules.derive), the knowledge loader checks rules.yaml against them.
DERIVED_FIELDS = (
    "has_gpu",
    "total_gpu_memory_gb",
    "has_training_data",
    "custom_behaviour",
    "preferred_params_b",
    "preferred_fits",
    "preferred_family",
    "band_fits",
    "narrow_task",
)

DataKind = Literal[
    "none", "unlabeled_docs", "instruction_pairs", "chat_logs", "labeled_classes", "preference_pairs"
]
TaskType = Literal[
    "classification", "extraction", "summarization", "qa", "chat", "generation", "code", "translation",
    "reasoning",
]
Freshness = Literal["static", "periodic", "changing"]
OutputFormat = Literal["free_text", "structured"]
Deployment = Literal["cloud", "on_prem", "on_device"]
Budget = Literal["low", "medium", "high"]
Privacy = Literal["standard", "sensitive"]
Vendor = Literal["openai_api", "anthropic_api", "open_weights", "any"]
Coverage = Literal["covered", "poor", "none"]  # none: no pretrained model reads it at all (a new modality)
TechniqueName = Literal["full", "lora", "qlora", "prompt_tuning", "dpo", "rlhf", "api"]
TeamSkills = Literal["none", "some", "strong"]
# What a pilot on the team's own data measured (executor/pilot/evidence.py): the approach its numbers favour.
PilotVerdict = Literal["prompting", "rag", "fine_tuning", "inconclusive"]


class Fact(BaseModel, Generic[T]):
    value: T | None = None
    source: Source = "unknown"
    evidence: str | None = None

    model_config = ConfigDict(frozen=True)

    @property
    def known(self) -> bool:
        return self.source != "unknown"


class UseCaseProfile(BaseModel):
    """One field per decision-relevant fact. Field docs are shown to users in the interview."""

    model_config = ConfigDict(validate_assignment=True)

    domain: Fact[str] = Fact()
    task_type: Fact[TaskType] = Fact()
    data_kind: Fact[DataKind] = Fact()
    example_count: Fact[int] = Fact()
    document_count: Fact[int] = Fact()
    corpus_tokens: Fact[int] = Fact()
    knowledge_freshness: Fact[Freshness] = Fact()
    knowledge_intensive: Fact[bool] = Fact()
    needs_citations: Fact[bool] = Fact()
    output_format: Fact[OutputFormat] = Fact()
    custom_tone: Fact[bool] = Fact()
    domain_vocabulary: Fact[bool] = Fact()
    specialized_reasoning: Fact[bool] = Fact()
    latency_budget_ms: Fact[int] = Fact()
    gpu_count: Fact[int] = Fact()
    gpu_memory_gb: Fact[float] = Fact()
    gpu_name: Fact[str] = Fact()
    deployment: Fact[Deployment] = Fact()
    budget: Fact[Budget] = Fact()
    budget_usd: Fact[float] = Fact()
    privacy: Fact[Privacy] = Fact()
    vendor: Fact[Vendor] = Fact()
    preferred_model: Fact[str] = Fact()
    requested_technique: Fact[TechniqueName] = Fact()
    task_count: Fact[int] = Fact()
    domain_coverage: Fact[Coverage] = Fact()
    language: Fact[str] = Fact()
    # Added for real descriptions (issue #14): facts experts weigh that keywords alone missed.
    examples_per_class: Fact[int] = Fact()
    class_count: Fact[int] = Fact()
    hallucination_concern: Fact[bool] = Fact()
    cost_per_request_matters: Fact[bool] = Fact()
    deadline_days: Fact[int] = Fact()
    team_skills: Fact[TeamSkills] = Fact()
    tool_calling: Fact[bool] = Fact()
    existing_retrieval: Fact[bool] = Fact()
    teacher_outputs: Fact[bool] = Fact()
    multilingual: Fact[bool] = Fact()
    label_churn: Fact[bool] = Fact()
    reward_signal: Fact[bool] = Fact()
    retrieval_noise: Fact[bool] = Fact()
    prompting_fell_short: Fact[bool] = Fact()
    training_intent: Fact[bool] = Fact()
    mentions_documents: Fact[bool] = Fact()
    knowledge_gap: Fact[bool] = Fact()
    raw_corpus: Fact[bool] = Fact()
    tuning_fell_short: Fact[bool] = Fact()
    prompting_works: Fact[bool] = Fact()
    continued_pretraining: Fact[bool] = Fact()
    pilot_verdict: Fact[PilotVerdict] = Fact()

    @classmethod
    def field_names(cls) -> list[str]:
        return list(cls.model_fields)

    def values(self) -> dict[str, Any]:
        """Flat {field: value or None}: what the rules engine sees."""
        return {name: getattr(self, name).value for name in self.field_names()}

    def known_fields(self) -> list[str]:
        return [name for name in self.field_names() if getattr(self, name).known]

    def with_fact(self, field: str, value: Any, source: Source = "user", evidence: str | None = None):
        """A copy with one field set (used for answers, "what if" and counterfactual questions)."""
        if field not in type(self).model_fields:
            raise KeyError(f"unknown profile field {field!r}")
        fact_type = type(self).model_fields[field].annotation
        new = self.model_copy()
        setattr(new, field, fact_type(value=value, source=source, evidence=evidence))
        return new

    def merged(self, other: UseCaseProfile) -> UseCaseProfile:
        """Fill this profile's unknown fields from `other` (known facts here win)."""
        new = self.model_copy()
        for name in self.field_names():
            if not getattr(new, name).known and getattr(other, name).known:
                setattr(new, name, getattr(other, name))
        return new

    def summary(self) -> dict[str, dict[str, Any]]:
        """Known facts with their evidence, for display."""
        return {
            name: {"value": fact.value, "source": fact.source, "evidence": fact.evidence}
            for name in self.field_names()
            if (fact := getattr(self, name)).known
        }
