"""The optional LLM extractor maps structured output onto the profile (no network: the LLM is a stand-in)."""

from __future__ import annotations

import pytest
from langchain_core.runnables import RunnableLambda

from assistant.llm_extract import ExtractedProfile, LLMExtractor, available_provider


def test_llm_facts_win_and_rules_fill_the_gaps(extractor):
    seen = {}

    def fake_llm(messages):
        seen["messages"] = messages
        # A plain dict, as a JSON-mode model returns it, with one out-of-vocabulary value.
        return {"privacy": "sensitive", "privacy_quote": "we can't ship data to a third party",
                "task_type": "qa", "task_type_quote": "answer staff questions", "deployment": "beach"}

    llm = LLMExtractor(extractor, structured_llm=RunnableLambda(fake_llm))
    profile = llm.extract("We can't ship data to a third party. We have 4,000 Q&A pairs to answer staff questions.")
    assert profile.privacy.value == "sensitive" and profile.privacy.source == "llm"
    assert profile.privacy.evidence == "we can't ship data to a third party"
    assert profile.example_count.value == 4000 and profile.example_count.source == "text"
    assert not profile.deployment.known
    assert "4,000 Q&A pairs" in seen["messages"][1][1]


def test_without_a_key_the_llm_extractor_refuses_clearly(extractor, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert available_provider() is None
    with pytest.raises(RuntimeError, match="needs OPENAI_API_KEY or ANTHROPIC_API_KEY"):
        LLMExtractor(extractor)


def test_schema_mirrors_the_profile():
    from assistant.profile import UseCaseProfile

    fields = set(ExtractedProfile.model_fields)
    for name in UseCaseProfile.field_names():
        assert {name, f"{name}_quote"} <= fields


def test_llm_clients_wait_a_bounded_time(monkeypatch):
    """An unreachable API must fail within TUNEWISE_LLM_TIMEOUT so the offline fallback answers; the
    clients' own default is ten minutes per try."""
    from executor.evaluate.judge import api_judge
    from executor.llm import chat_model

    monkeypatch.setenv("TUNEWISE_LLM_TIMEOUT", "5")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    openai_model, anthropic_model = chat_model("openai"), chat_model("anthropic")
    assert (openai_model.request_timeout, openai_model.max_retries) == (5.0, 2)
    assert (anthropic_model.default_request_timeout, anthropic_model.max_retries) == (5.0, 2)
    with pytest.raises(ValueError, match="unknown LLM provider 'gemini'"):
        chat_model("gemini")
    assert api_judge() is not None
