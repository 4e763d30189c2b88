"""Which language backend reads the user's words and phrases the answers; decisions never come from it.

    no API key                      -> "offline": the deterministic regex extractor, templated explanations
    OPENAI_API_KEY (+OPENAI_BASE_URL) -> "openai": LangChain structured output for extraction, a chat model
                                       for phrasing (any OpenAI-compatible server through OPENAI_BASE_URL)
    ANTHROPIC_API_KEY               -> "anthropic": the same through Claude

The rules engine decides in every case; an LLM only fills the profile (the regex extractor still fills what
it leaves unknown) and rewrites the one-paragraph summary above the card. A failing LLM call falls back to
the offline path for that turn, and says so, rather than breaking the conversation.

Lazy imports: the LLM extractor (llm_extract, with LangChain's models) is imported only when a key selects an LLM
backend, so the offline backend never loads it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from assistant.extract import ProfileExtractor, RegexExtractor
from assistant.knowledge import Knowledge
from assistant.semantic import default_extractor
from executor.llm import chat_model

log = logging.getLogger(__name__)

OFFLINE = "offline"
PHRASING_INSTRUCTIONS = (
    "You rewrite a short explanation of a recommendation for a team that wants to tune a language model. "
    "Keep every fact, number and name exactly as given; do not add advice, options or numbers of your own. "
    "Write two or three plain sentences, no lists, no headings."
)


def available_backends(env: dict[str, str] | None = None) -> list[str]:
    """Backends usable in this environment, best first; "offline" is always there."""
    env = os.environ if env is None else env
    names = []
    if env.get("OPENAI_API_KEY"):
        names.append("openai")
    if env.get("ANTHROPIC_API_KEY"):
        names.append("anthropic")
    return [*names, OFFLINE]


def public_url(url: str) -> str:
    """A URL as every chat user may see it: scheme, host and port only (a base URL can carry credentials, in
    its user part or its query, and paths can name tenants)."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number
        return "a custom endpoint"
    if not parts.scheme or not parts.hostname:
        return "a custom endpoint"
    return f"{parts.scheme}://{parts.hostname}{port}"


def backend_label(name: str, env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if name == "openai":
        model = env.get("TUNEWISE_OPENAI_MODEL", "gpt-4o-mini")
        where = f" at {public_url(env['OPENAI_BASE_URL'])}" if env.get("OPENAI_BASE_URL") else ""
        return f"OpenAI {model}{where} (LangChain)"
    if name == "anthropic":
        return f"Anthropic {env.get('TUNEWISE_ANTHROPIC_MODEL', 'claude-sonnet-4-20250514')} (LangChain)"
    return "Offline: rules and templates (no API key)"


@dataclass
class Backend:
    """One backend: its extractor and (for LLM backends) a chat model for phrasing."""

    name: str
    knowledge: Knowledge
    structured_llm: Any = None  # a runnable mapping a prompt to ExtractedProfile (tests inject fakes)
    chat_model: Any = None      # a LangChain chat model for phrasing (tests inject fakes)
    notes: list[str] = field(default_factory=list)  # what went wrong on the last call, shown to the user
    _extractor: ProfileExtractor | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return backend_label(self.name)

    @property
    def uses_llm(self) -> bool:
        return self.name != OFFLINE

    def extractor(self) -> ProfileExtractor:
        if self._extractor is None:
            regex = default_extractor(self.knowledge)  # keywords + meaning, the same reader as the CLI
            if self.uses_llm:
                from assistant.llm_extract import LLMExtractor

                self._extractor = LLMExtractor(regex, structured_llm=self.structured_llm, provider=self.name)
            else:
                self._extractor = regex
        return self._extractor

    def extract(self, text: str):
        """The profile read from `text`; on an LLM failure, the regex reading and a note saying so."""
        self.notes = []
        try:
            return self.extractor().extract(text)
        except Exception as exc:  # noqa: BLE001 - a network or quota error must not end the conversation
            log.warning("LLM extraction failed: %s", exc)
            self.notes.append(f"The {self.name} backend failed ({type(exc).__name__}); read with the offline rules.")
            return RegexExtractor(self.knowledge).extract(text)

    def phrase(self, templated: str) -> str:
        """The templated explanation, rewritten by the LLM when there is one (facts kept)."""
        if not self.uses_llm:
            return templated
        try:
            model = self.chat_model or chat_model(self.name)
            self.chat_model = model
            reply = model.invoke([("system", PHRASING_INSTRUCTIONS), ("human", templated)])
            text = str(getattr(reply, "content", reply)).strip()
            return text or templated
        except Exception as exc:  # noqa: BLE001
            log.warning("LLM phrasing failed: %s", exc)
            self.notes.append(f"The {self.name} backend failed to phrase the summary ({type(exc).__name__}).")
            return templated


def make_backend(name: str | None, knowledge: Knowledge) -> Backend:
    """The named backend, or the best available one; an unavailable name is refused with the options."""
    options = available_backends()
    name = name or options[0]
    if name not in options:
        raise ValueError(f"backend {name!r} is not available here (set its API key); available: {', '.join(options)}")
    return Backend(name, knowledge)
