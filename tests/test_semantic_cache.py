"""The exemplars' vectors cached on disk (assistant/semantic.py): read back when nothing changed, never stale."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.semantic import Exemplars, SemanticMatcher
from executor.embeddings import MiniLMEmbedder


class CountingEmbedder:
    """The real MiniLM, counting the texts it is asked to embed."""

    def __init__(self, fingerprint: str | None = "fp"):
        self.inner = MiniLMEmbedder.shared()
        self.fingerprint = fingerprint and f"{self.inner.fingerprint}|{fingerprint}"
        self.embedded: list[str] = []

    def embed_array(self, texts):
        self.embedded.extend(texts)
        return self.inner.embed_array(texts)


@pytest.fixture(scope="module")
def exemplars(knowledge):
    return Exemplars.load(knowledge.root)


def exemplar_texts(exemplars: Exemplars) -> list[str]:
    return [s for _, _, sentences in exemplars.groups for s in sentences] + list(exemplars.background)


def test_second_matcher_reads_the_cache_and_matches_the_same(tmp_path, exemplars):
    first_embedder = CountingEmbedder()
    first = SemanticMatcher(exemplars, first_embedder, cache_dir=tmp_path)
    assert first_embedder.embedded == exemplar_texts(exemplars)
    assert len(list(tmp_path.glob("exemplars-*.npy"))) == 1

    again_embedder = CountingEmbedder()
    again = SemanticMatcher(exemplars, again_embedder, cache_dir=tmp_path)
    assert again_embedder.embedded == []  # nothing embedded: every exemplar vector came from the file
    assert np.array_equal(first.vectors, again.vectors)
    assert np.array_equal(first.background, again.background)
    text = "The replies need to read like our support agents wrote them. It cost a fraction of a penny per message."
    assert again.matches(text) == first.matches(text)
    assert again.matches(text)  # the texts do match something, so the comparison above says something


def test_changed_exemplars_or_model_miss_the_cache(tmp_path, exemplars):
    SemanticMatcher(exemplars, CountingEmbedder(), cache_dir=tmp_path)
    field, value, sentences = exemplars.groups[0]
    edited = Exemplars(exemplars.threshold, exemplars.margin,
                       [(field, value, [*sentences, "a sentence added to the file"]), *exemplars.groups[1:]],
                       exemplars.background)
    embedder = CountingEmbedder()
    SemanticMatcher(edited, embedder, cache_dir=tmp_path)
    assert "a sentence added to the file" in embedder.embedded and len(embedder.embedded) > 1

    other_model = CountingEmbedder(fingerprint="another model")
    SemanticMatcher(exemplars, other_model, cache_dir=tmp_path)
    assert other_model.embedded == exemplar_texts(exemplars)
    assert len(list(tmp_path.glob("exemplars-*.npy"))) == 3


def test_a_damaged_cache_file_is_embedded_again(tmp_path, exemplars):
    reference = SemanticMatcher(exemplars, CountingEmbedder(), cache_dir=tmp_path)
    (path,) = tmp_path.glob("exemplars-*.npy")
    path.write_bytes(path.read_bytes()[:100])  # truncated, as a crash mid-write (without os.replace) would leave
    embedder = CountingEmbedder()
    rebuilt = SemanticMatcher(exemplars, embedder, cache_dir=tmp_path)
    assert embedder.embedded == exemplar_texts(exemplars)
    assert np.array_equal(rebuilt.vectors, reference.vectors)


def test_an_embedder_without_fingerprint_is_never_cached(tmp_path, exemplars):
    embedder = CountingEmbedder(fingerprint=None)
    SemanticMatcher(exemplars, embedder, cache_dir=tmp_path)
    SemanticMatcher(exemplars, embedder, cache_dir=tmp_path)
    assert len(embedder.embedded) == 2 * len(exemplar_texts(exemplars))
    assert list(tmp_path.iterdir()) == []
