"""The optional hosted LLMs (OpenAI, Anthropic through LangChain), built in one place for the assistant's
extraction and phrasing and for the evaluation's judge. Never required: callers fall back when none is set
or when a call fails.

Lazy imports: langchain_openai, langchain_anthropic are imported inside the functions that use them, so importing
this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import os

DEFAULT_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-20250514"}


def available_provider() -> str | None:
    """The provider whose key is set (OpenAI first), or None."""
    if os.environ.get("OPENAI_API_KEY"):
        return "openai"
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "anthropic"
    return None


def chat_model(provider: str, model: str | None = None):
    """The LangChain chat model of a provider, at temperature 0, with a bounded wait: an unreachable API
    (a firewall that drops packets, not one that refuses) must fail within a minute so the caller's offline
    fallback answers, instead of the clients' default of ten minutes per try (TUNEWISE_LLM_TIMEOUT seconds)."""
    timeout = float(os.environ.get("TUNEWISE_LLM_TIMEOUT", "60"))
    if provider == "openai":
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model=model or os.environ.get("TUNEWISE_OPENAI_MODEL", DEFAULT_MODELS["openai"]),
                          temperature=0, timeout=timeout, max_retries=2)
    if provider == "anthropic":
        from langchain_anthropic import ChatAnthropic

        return ChatAnthropic(model=model or os.environ.get("TUNEWISE_ANTHROPIC_MODEL", DEFAULT_MODELS["anthropic"]),
                             temperature=0, timeout=timeout, max_retries=2)
    raise ValueError(f"unknown LLM provider {provider!r}; use openai or anthropic")
