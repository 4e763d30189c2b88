"""Pairwise LLM judge (OpenAI or Anthropic through LangChain) for the preference win rate.

Position bias is controlled by asking twice with the answers swapped: a win counts only when the judge
prefers the same answer in both orders; disagreement between the orders counts as a tie. Used when the run
has no reward model and an API key is set; the judge is any callable from a prompt string to its reply,
so tests (and other judges) plug in without a network.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from executor.evaluate.metrics import Estimate, bootstrap
from executor.llm import DEFAULT_MODELS, available_provider, chat_model

JUDGE_PROMPT = (
    "You compare two answers to the same request. Judge which one is more helpful, correct and appropriate.\n\n"
    "Request:\n{request}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}\n\n"
    "Reply with exactly one of: A, B, TIE."
)
_VERDICT = re.compile(r"\b(TIE|A|B)\b")


def verdict(reply: str) -> str:
    match = _VERDICT.search(reply.upper())
    return match.group(1) if match else "TIE"


def judged_win_rate(requests: Sequence[str], base: Sequence[str], tuned: Sequence[str],
                    judge: Callable[[str], str]) -> Estimate:
    """Share of examples where the tuned answer wins in both orders (ties and order flips count half)."""
    scores = []
    for request, b, t in zip(requests, base, tuned, strict=True):
        first = verdict(judge(JUDGE_PROMPT.format(request=request, a=b, b=t)))   # tuned is B
        second = verdict(judge(JUDGE_PROMPT.format(request=request, a=t, b=b)))  # tuned is A
        tuned_wins = (first == "B") + (second == "A")
        base_wins = (first == "A") + (second == "B")
        scores.append(1.0 if tuned_wins == 2 else 0.0 if base_wins == 2 else 0.5)
    return bootstrap(scores)


def api_judge() -> Callable[[str], str] | None:
    """A judge backed by OpenAI or Anthropic when a key is set, else None (TUNEWISE_JUDGE_MODEL picks the model).
    Its wait is bounded (executor/llm.py): an unreachable API fails the judge, and the evaluation goes on
    without the win rate."""
    provider = available_provider()
    if provider is None:
        return None
    chat = chat_model(provider, os.environ.get("TUNEWISE_JUDGE_MODEL") or DEFAULT_MODELS[provider])
    return lambda prompt: str(chat.invoke(prompt).content)
