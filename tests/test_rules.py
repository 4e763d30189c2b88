"""The rules engine: conditions, constraints, reasons, questions, alternatives."""

from __future__ import annotations

from assistant.profile import UseCaseProfile
from assistant.rules import RulesEngine, matches


def test_conditions():
    facts = {"a": 3, "b": None, "c": "x", "d": ["lora", "qlora"]}
    assert matches({"a": 3}, facts)
    assert matches({"a": {"gte": 3, "lt": 4}}, facts)
    assert not matches({"b": {"lt": 4}}, facts)  # unknown never satisfies a comparison
    assert matches({"b": {"known": False}}, facts)
    assert matches({"c": {"in": ["x", "y"]}}, facts)
    assert matches({"d": {"contains": "qlora"}}, facts)
    assert matches({"any": [{"a": 1}, {"c": "x"}]}, facts)
    assert matches({"not": {"a": 1}}, facts)
    assert not matches({"all": [{"a": 3}, {"c": "y"}]}, facts)
    assert matches({}, facts)


def test_empty_profile_prompts_and_asks_about_data_first(knowledge):
    engine = RulesEngine(knowledge)
    profile = UseCaseProfile()
    decision = engine.decide(profile)
    assert decision.key == ("prompting", "none")
    questions = engine.questions(profile, decision)
    assert questions, "an empty profile must lead to questions"
    # Most decision-relevant first: impact never increases down the list.
    impacts = [q.impact for q in questions]
    assert impacts == sorted(impacts, reverse=True)
    # Answering the top question with a changing option really changes the decision.
    top = questions[0]
    label, outcome = next(iter(top.would_change_to.items()))
    value = next(o["value"] for o in top.options if o["label"] == label)
    changed = engine.decide(profile.with_fact(top.field, value))
    assert f"{changed.approach}/{changed.technique}" == outcome != "prompting/none"


def test_known_fields_are_not_asked(knowledge):
    engine = RulesEngine(knowledge)
    profile = UseCaseProfile().with_fact("data_kind", "instruction_pairs").with_fact("example_count", 5000)
    decision = engine.decide(profile)
    assert {q.field for q in engine.questions(profile, decision)}.isdisjoint({"data_kind", "example_count"})


def test_anthropic_constraint_beats_every_tuning_signal(knowledge):
    engine = RulesEngine(knowledge)
    profile = UseCaseProfile()
    for field, value in [("domain_vocabulary", True), ("custom_tone", True), ("output_format", "structured"),
                         ("data_kind", "instruction_pairs"), ("example_count", 50000)]:
        profile = profile.with_fact(field, value)
    assert engine.decide(profile).approach == "fine_tuning"
    decision = engine.decide(profile.with_fact("vendor", "anthropic_api"))
    assert decision.approach in ("prompting", "rag")
    assert "anthropic-api-only" in [r.id for r in engine.reasons(decision)]


def test_dpo_refused_without_preference_pairs(knowledge):
    engine = RulesEngine(knowledge)
    profile = UseCaseProfile().with_fact("requested_technique", "dpo").with_fact("example_count", 2000)
    assert engine.decide(profile).technique == "dpo"
    decision = engine.decide(profile.with_fact("data_kind", "instruction_pairs"))
    assert decision.technique != "dpo"
    assert "preference-methods-need-pairs" in [r.id for r in engine.reasons(decision)]


def test_reasons_explain_the_choice(knowledge):
    engine = RulesEngine(knowledge)
    profile = UseCaseProfile().with_fact("knowledge_freshness", "changing").with_fact("needs_citations", True)
    decision = engine.decide(profile)
    assert decision.key == ("rag", "none")
    ids = [r.id for r in engine.reasons(decision)]
    assert ids[:2] == ["changing-knowledge", "citations-and-grounding"]
    assert "lora-is-the-default" not in ids  # a technique prior says nothing about a no-training approach


def test_what_if_smaller_gpu(advisor):
    """The chat's "what if we only had a 12 GB GPU?" is a profile edit and a new decision."""
    text = "We want to fine-tune Llama 3.1 8B on 5,000 training examples. We have one A100 80GB."
    profile, _ = advisor.profile_from_text(text)
    before = advisor.recommend(profile=profile)
    after = advisor.recommend(profile=profile.with_fact("gpu_memory_gb", 12.0).with_fact("gpu_name", None))
    assert (before.technique, after.technique) == ("lora", "qlora")
