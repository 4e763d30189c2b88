"""Prompts for each compared system: the test prompt as trained, and the cheaper baselines.

    base / tuned   the prompt exactly as in the data (what the tuned model was trained on)
    zero_shot      the base model with an instruction saying what to answer (e.g. the label set)
    few_shot       zero_shot plus k worked examples from the train split as earlier turns
    rag            zero_shot plus the k most similar train examples (or corpus passages), retrieved with
                   Chroma + MiniLM, in the system prompt
    rag_tuned      the tuned model with the same retrieved context (the RAG + LoRA pattern)

Lazy imports: chromadb and the project modules that pull them in are imported inside the functions that use them, so
importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

TASK_INSTRUCTIONS = {
    "classification": "Answer with exactly one label from this list and nothing else: {labels}.",
    "exact_match": "Solve the problem step by step, then give the final answer on the last line as '#### <answer>'.",
    "json": "Answer with valid JSON only.",
    "generation": "",
}


def split_prompt(messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], str]:
    """(prompt turns, reference reply): the last assistant turn is the reference."""
    return messages[:-1], messages[-1]["content"]


def _with_system(prompt: list[dict[str, str]], extra: str) -> list[dict[str, str]]:
    if not extra:
        return list(prompt)
    if prompt and prompt[0]["role"] == "system":
        return [{"role": "system", "content": f"{prompt[0]['content']}\n\n{extra}"}, *prompt[1:]]
    return [{"role": "system", "content": extra}, *prompt]


def instruction(task: str, labels: Sequence[str]) -> str:
    return TASK_INSTRUCTIONS[task].format(labels=", ".join(labels))


def zero_shot(prompt, task: str, labels: Sequence[str]) -> list[dict[str, str]]:
    return _with_system(prompt, instruction(task, labels))


def few_shot(prompt, task: str, labels: Sequence[str], shots: list[list[dict[str, str]]]) -> list[dict[str, str]]:
    """Worked examples as earlier user/assistant turns, before the real question."""
    turns = []
    for example in shots:
        turns += [m for m in example if m["role"] != "system"]
    system = [m for m in prompt if m["role"] == "system"]
    rest = [m for m in prompt if m["role"] != "system"]
    return _with_system([*system, *turns, *rest], instruction(task, labels))


def pick_shots(train: list[list[dict[str, str]]], k: int, seed: int = 0) -> list[list[dict[str, str]]]:
    return random.Random(seed).sample(train, min(k, len(train)))


class Retriever:
    """The train split (or a corpus), MiniLM-embedded, searched exactly by cosine similarity.

    A throwaway in-memory matrix rather than a Chroma collection: an evaluation's corpus is thousands of
    passages, where an exact search costs a matrix product (HNSW is approximate and builds an index on disk
    first), and the baseline then also runs on a GPU host without Chroma's native bindings."""

    def __init__(self, passages: list[str]):
        from executor.embeddings import MiniLMEmbedder

        self.passages = list(passages)
        self.embedder = MiniLMEmbedder.shared()
        self.vectors = self.embedder.embed_array(self.passages)

    def search(self, query: str, k: int) -> list[str]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: list[str], k: int) -> list[list[str]]:
        """The k passages nearest each query, nearest first (ties in corpus order)."""
        np = self.embedder.np
        if not self.passages or not queries:
            return [[] for _ in queries]
        scores = self.embedder.embed_array([q[:2000] for q in queries]) @ self.vectors.T
        k = min(k, len(self.passages))
        # A stable sort of the negated scores: equal scores keep corpus order, so results are reproducible.
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [[self.passages[i] for i in row] for row in order.tolist()]


def rag(prompt, task: str, labels: Sequence[str], retrieved: list[str]) -> list[dict[str, str]]:
    context = "\n\n".join(f"[{i + 1}] {passage}" for i, passage in enumerate(retrieved))
    extra = f"Relevant examples and passages:\n{context}"
    return _with_system(_with_system(prompt, extra), instruction(task, labels))


def as_passage(messages: list[dict[str, str]]) -> str:
    """A train example as a retrievable passage: 'question -> answer'."""
    user = " ".join(m["content"] for m in messages if m["role"] == "user")
    answer = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
    return f"{user} -> {answer}"
