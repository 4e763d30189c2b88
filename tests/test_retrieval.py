"""Retrieval against the real Chroma store and the real packaged MiniLM embeddings (no mocks)."""

from __future__ import annotations

import shutil

import pytest

from assistant.knowledge import load_knowledge
from assistant.retrieval import KnowledgeIndex, MiniLMEmbedder, chunk_words, minilm_dir


@pytest.fixture(scope="module")
def index(knowledge, tmp_path_factory):
    return KnowledgeIndex(knowledge, tmp_path_factory.mktemp("chroma"))


@pytest.mark.parametrize(
    ("query", "expected_doc"),
    [
        ("4-bit quantized base model with adapters for a small GPU", "qlora"),
        ("learn directly from chosen and rejected answer pairs", "dpo"),
        ("reward model and PPO policy optimization", "rlhf"),
        ("how to split data into train validation and test sets", "data-requirements"),
        ("mixture of experts with two active experts per token", "base-models"),
        ("soft prompt vectors for many tenants on one frozen model", "prompt-tuning"),
    ],
)
def test_search_finds_the_right_guidance(index, query, expected_doc):
    top = index.search(query, k=3)
    assert top[0].doc_id == expected_doc, [p.citation_id for p in top]
    assert top[0].score > 0.2
    assert [p.relevance for p in top] == sorted([p.relevance for p in top], reverse=True)


def test_search_within_docs(index):
    hits = index.search("memory", k=5, doc_ids=["hardware-and-memory"])
    assert hits and {p.doc_id for p in hits} == {"hardware-and-memory"}


def test_index_is_persistent_and_rebuilt_only_when_docs_change(knowledge, tmp_path):
    first = KnowledgeIndex(knowledge, tmp_path / "db")
    assert first.rebuilt
    chunks = sum(len(chunk_words(s.text)) for d in knowledge.docs.values() for s in d.sections)
    assert first.count() == chunks
    again = KnowledgeIndex(knowledge, tmp_path / "db")
    assert not again.rebuilt and again.count() == chunks

    changed_root = tmp_path / "knowledge"
    shutil.copytree(knowledge.root, changed_root)
    doc = changed_root / "docs" / "lora.md"
    doc.write_text(doc.read_text() + "\n## Zebra adapters\nStriped adapters are a made-up technique for testing.\n")
    changed = KnowledgeIndex(load_knowledge(changed_root), tmp_path / "db")
    assert changed.rebuilt
    assert changed.search("striped zebra adapters", k=1)[0].citation_id == "lora#zebra-adapters"


def test_embeddings_are_normalized_and_semantic():
    embedder = MiniLMEmbedder.shared()
    a, b, c = embedder.embed(["a GPU with little memory", "a graphics card with small VRAM", "a recipe for soup"])
    dot = lambda x, y: sum(i * j for i, j in zip(x, y, strict=True))  # noqa: E731
    assert abs(dot(a, a) - 1.0) < 1e-5 and len(a) == 384
    assert dot(a, b) > dot(a, c) + 0.2


@pytest.mark.slow
def test_embeddings_match_sentence_transformers():
    """Our transformers-only pooling is the model's own pipeline (sentence-transformers is ~9 s slower to import)."""
    from sentence_transformers import SentenceTransformer

    texts = ["LoRA adapters on a frozen base", "Retrieval adds 50-200 ms of latency"]
    reference = SentenceTransformer(str(minilm_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    ours = MiniLMEmbedder.shared().embed(texts)
    for ref, mine in zip(reference, ours, strict=True):
        assert max(abs(float(r) - m) for r, m in zip(ref, mine, strict=True)) < 1e-4
