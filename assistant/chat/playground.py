"""The playground: the tuned model and its base answer the same prompt side by side; a person picks.

    run dir (plan as run + trained weights) -> `tunewise serve` endpoints for the base model and the tuned
      model (in this process) -> greedy answers -> shown as A and B in a random order (the person does not know
      which is which) -> choice -> executor.evaluate.runner.record_human_preference

Votes on evaluated test examples carry the example's index in eval_examples.jsonl; votes on free prompts
carry index -1 (FREE_PROMPT), since they belong to no test row. Both count towards the human win rate.

Lazy imports: openai and the project modules that pull them in are imported where they are used, so the chat serves
its first page before they load.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FREE_PROMPT = -1
MAX_NEW_TOKENS = 128


@dataclass
class Pair:
    """One blind comparison: the prompt, both answers, and which side shows which model."""

    prompt: str
    base: str
    tuned: str
    a_is: str  # "base" | "tuned": the model shown as A
    index: int = FREE_PROMPT

    def answer(self, side: str) -> str:
        return self.tuned if (side == "A") == (self.a_is == "tuned") else self.base

    def choice_for(self, picked: str) -> str:
        """"A" / "B" / "tie" -> "base" / "tuned" / "tie" (what record_human_preference takes)."""
        if picked == "tie":
            return "tie"
        if picked not in ("A", "B"):
            raise ValueError(f"pick A, B or tie (got {picked!r})")
        return self.a_is if picked == "A" else ("base" if self.a_is == "tuned" else "tuned")

    def to_state(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "base": self.base, "tuned": self.tuned, "a_is": self.a_is, "index": self.index}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Pair:
        return cls(**state)

    def markdown(self) -> str:
        def cell(text: str) -> str:
            return " ".join(text.split()).replace("|", "\\|") or "(empty)"

        where = f"test example #{self.index}" if self.index != FREE_PROMPT else "your prompt"
        return "\n".join([f"**Prompt** ({where}): {self.prompt}", "", "| A | B |", "|---|---|",
                          f"| {cell(self.answer('A'))} | {cell(self.answer('B'))} |", "",
                          "Which answer is better? (A and B are the tuned and the base model, in random order.)"])


def blind(prompt: str, base: str, tuned: str, index: int = FREE_PROMPT, rng: random.Random | None = None) -> Pair:
    return Pair(prompt, base, tuned, (rng or random).choice(("base", "tuned")), index)


def pair_from_example(example: dict[str, Any], rng: random.Random | None = None) -> Pair:
    """A blind pair from a row of eval_examples.jsonl (both answers were generated during evaluation)."""
    return blind(example["input"], example["base"], example["tuned"], example["index"], rng)


def record(run_dir: str | Path, pair: Pair, picked: str, who: str = "") -> dict[str, Any]:
    """Record the person's pick; returns the running win rate of tuned over base (with its CI)."""
    from executor.evaluate.runner import record_human_preference

    # A free prompt belongs to no test row: the vote keeps the prompt itself, so it can be read back later.
    prompt = pair.prompt if pair.index == FREE_PROMPT else None
    return record_human_preference(Path(run_dir), pair.index, pair.choice_for(picked), who, prompt=prompt)


class Playground:
    """Asks a run's tuned model and its base the same prompt through OpenAI-compatible endpoints of
    `tunewise serve`, started in this process on first use (executor.serve.server.ensure_server): each model is
    loaded once however many conversations try it, concurrent prompts are batched, and what a person compares
    here is exactly what the team's own clients would get from `tunewise serve RUN_DIR`."""

    def __init__(self, run_dir: str | Path, device: str = "auto"):
        self.run_dir = Path(run_dir)
        self.device = device

    def _base_target(self) -> str:
        from executor.plan import load_plan

        plan = load_plan(self.run_dir / "plan.yaml")
        return plan.base_model.path if plan.base_model.source == "local" and plan.base_model.path \
            else plan.base_model.id

    def _servers(self):
        from executor.serve.server import ensure_server

        for folder in ("merged", "model", "adapter"):
            if (self.run_dir / folder).is_dir():
                break
        else:
            raise FileNotFoundError(f"{self.run_dir}: no trained weights (merged/, model/ or adapter/) to play with")
        return (ensure_server(self._base_target(), device=self.device, api_key=_API_KEY),
                ensure_server(str(self.run_dir), device=self.device, api_key=_API_KEY))

    def answers(self, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[str, str]:
        """(base answer, tuned answer) with the same greedy decoding, each from its server."""
        import openai

        def ask(server) -> str:
            client = openai.OpenAI(base_url=server.base_url, api_key=_API_KEY, max_retries=0, timeout=600)
            reply = client.chat.completions.create(model=server.engine.model_id, temperature=0,
                                                   max_tokens=max_new_tokens,
                                                   messages=[{"role": "user", "content": prompt}])
            return reply.choices[0].message.content or ""

        base, tuned = self._servers()
        return ask(base), ask(tuned)


# The playground's servers listen on 127.0.0.1 only; a per-process key keeps other local users off them.
_API_KEY = secrets.token_urlsafe(24)
