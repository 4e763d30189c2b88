"""Optional LLM profile extractor (LangChain structured output with OpenAI or Anthropic).

Same interface as the regex extractor. The LLM reads nuance that keywords miss ("we can't ship data to
a third party" -> sensitive); the regex extractor still fills whatever the LLM leaves unknown, and
numbers it parses are kept when the LLM returns none. Used only when asked for and a key is set:
Tunewise never needs a network service.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, Field, create_model

from assistant.extract import RegexExtractor
from assistant.profile import UseCaseProfile
from executor.llm import available_provider, chat_model  # one construction for the assistant and the judge

INSTRUCTIONS = (
    "You read a team's description of how they want to use a language model and fill in what it says. "
    "Set a field only when the text states or clearly implies it; otherwise leave it null. For every "
    "field you set, copy the shortest sentence or phrase that supports it into <field>_quote."
)


def _extraction_schema() -> type[BaseModel]:
    """A flat model: each profile field as an optional value plus a supporting quote."""
    fields: dict[str, Any] = {}
    for name, info in UseCaseProfile.model_fields.items():
        value_type = typing.get_args(info.annotation.model_fields["value"].annotation)[0]
        description = (info.description or name).replace("_", " ")
        fields[name] = (value_type | None, Field(None, description=description))
        fields[f"{name}_quote"] = (str | None, Field(None, description=f"text supporting {name}"))
    return create_model("ExtractedProfile", __doc__=INSTRUCTIONS, **fields)


ExtractedProfile = _extraction_schema()


def structured_chat_model(provider: str, model: str | None = None):
    """A LangChain runnable that maps a prompt to an ExtractedProfile."""
    return chat_model(provider, model).with_structured_output(ExtractedProfile)


class LLMExtractor:
    def __init__(self, regex: RegexExtractor, structured_llm=None, provider: str | None = None):
        self.regex = regex
        if structured_llm is None:
            provider = provider or available_provider()
            if provider is None:
                raise RuntimeError(
                    "the LLM extractor needs OPENAI_API_KEY or ANTHROPIC_API_KEY; "
                    "without one, use the default deterministic extractor"
                )
            structured_llm = structured_chat_model(provider)
        self.structured_llm = structured_llm

    def extract(self, text: str) -> UseCaseProfile:
        from_rules = self.regex.extract(text)
        if not text.strip():
            return from_rules
        result = self.structured_llm.invoke(
            [("system", INSTRUCTIONS), ("human", text[:50_000])]
        )
        data = result.model_dump() if isinstance(result, BaseModel) else dict(result)
        profile = UseCaseProfile()
        for name in UseCaseProfile.field_names():
            value = data.get(name)
            if value is None:
                continue
            try:
                profile = profile.with_fact(name, value, "llm", data.get(f"{name}_quote"))
            except ValueError:
                continue  # an out-of-vocabulary value from the model: leave the field to the rules
        return profile.merged(from_rules)
