"""The playground: the tuned model and its base answer the same prompt side by side; a person picks.

    run dir (plan as run + trained weights) -> base model and tuned model (the adapter switched off gives the
      base, so one copy of the weights serves both) -> greedy answers -> shown as A and B in a random order
      (the person does not know which is which) -> choice -> executor.evaluate.runner.record_human_preference

Votes on evaluated test examples carry the example's index in eval_examples.jsonl; votes on free prompts
carry index -1 (FREE_PROMPT), since they belong to no test row. Both count towards the human win rate.
"""

from __future__ import annotations

import random
import threading
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

    return record_human_preference(Path(run_dir), pair.index, pair.choice_for(picked), who)


class Playground:
    """Loads a run's base and tuned model once (lazily, thread-safe) and answers prompts with both."""

    def __init__(self, run_dir: str | Path, model_factory=None):
        self.run_dir = Path(run_dir)
        self.model_factory = model_factory  # tokenizer -> base model (tests: a tiny model)
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, Any] | None = None  # tokenizer, base, tuned (tuned may be base+adapter)

    def _load(self):
        with self._lock:
            if self._loaded is not None:
                return self._loaded
            from executor.models.loader import choose_placement, load_causal_lm
            from executor.models.registry import load_tokenizer
            from executor.plan import load_plan

            plan = load_plan(self.run_dir / "plan.yaml")
            name = plan.base_model.path if plan.base_model.source == "local" else plan.base_model.id
            placement = choose_placement(plan.hardware.device, "auto")
            tokenizer = load_tokenizer(name)

            def base_model():
                if self.model_factory is not None:
                    return self.model_factory(tokenizer).to(placement.device).eval()
                return load_causal_lm(name, placement).eval()

            for folder in ("merged", "model"):
                if (self.run_dir / folder / "config.json").exists():
                    from transformers import AutoModelForCausalLM

                    tuned = AutoModelForCausalLM.from_pretrained(self.run_dir / folder, dtype=placement.dtype)
                    self._loaded = (tokenizer, base_model(), tuned.to(placement.device).eval())
                    return self._loaded
            if (self.run_dir / "adapter" / "adapter_config.json").exists():
                from peft import PeftModel

                tuned = PeftModel.from_pretrained(base_model(), self.run_dir / "adapter").eval()
                self._loaded = (tokenizer, None, tuned)  # base answers: the same weights, adapter switched off
                return self._loaded
            raise FileNotFoundError(f"{self.run_dir}: no trained weights (merged/, model/ or adapter/) to play with")

    def answers(self, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[str, str]:
        """(base answer, tuned answer) with the same greedy decoding."""
        from executor.evaluate.generate import generate

        tokenizer, base, tuned = self._load()
        messages = [[{"role": "user", "content": prompt}]]
        with self._lock:
            tuned_out = generate(tuned, tokenizer, messages, max_new_tokens)[0]
            if base is None:
                with tuned.disable_adapter():
                    base_out = generate(tuned, tokenizer, messages, max_new_tokens)[0]
            else:
                base_out = generate(base, tokenizer, messages, max_new_tokens)[0]
        return base_out, tuned_out
