"""Facts read by meaning (assistant/semantic.py): exemplars matched with the bundled MiniLM."""

from __future__ import annotations

import pytest
import yaml

from assistant.knowledge import KnowledgeError
from assistant.semantic import Exemplars, SemanticExtractor, SemanticMatcher, sentences_of


@pytest.fixture(scope="module")
def matcher(knowledge):
    return SemanticMatcher(Exemplars.load(knowledge.root))


def test_role_read_by_meaning_where_keywords_say_nothing(knowledge, extractor, matcher):
    text = "The replies need to read like our support agents wrote them."
    assert not extractor.extract(text).custom_tone.known  # no keyword for it
    profile = SemanticExtractor(extractor, matcher).extract(text)
    assert profile.custom_tone.value is True
    assert "read by meaning" in profile.custom_tone.evidence


def test_background_prose_sets_nothing(matcher):
    assert matcher.matches("Large language models have recently shown remarkable abilities on many benchmarks.") == {}


def test_keyword_facts_win_over_meaning(extractor, matcher):
    text = "Extract the invoice number and the total from each PDF. Sort the documents into a fixed set of classes."
    profile = SemanticExtractor(extractor, matcher).extract(text)
    assert profile.task_type.value == "extraction"  # the keyword cue, not the closer exemplar
    assert "read by meaning" not in (profile.task_type.evidence or "")


def test_sentences_split_on_ellipses_and_skip_fragments():
    assert sentences_of("We route tickets to teams … Ok. It must be fast!") == [
        "We route tickets to teams", "It must be fast!"]


def test_bad_exemplar_file_names_the_entry(tmp_path):
    (tmp_path / "exemplars.yaml").write_text(yaml.safe_dump({"exemplars": [
        {"field": "task_type", "value": "dancing", "sentences": ["x y z w"]}]}))
    with pytest.raises(KnowledgeError, match=r"exemplar #1: field 'value'"):
        Exemplars.load(tmp_path)
