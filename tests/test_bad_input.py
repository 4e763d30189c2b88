"""Bad input never crashes the advisor: it answers with questions and an honest confidence."""

from __future__ import annotations


def test_empty_text_gives_questions(advisor):
    rec = advisor.recommend("")
    assert rec.approach == "prompting"
    assert rec.questions and rec.questions[0].impact > 0
    assert rec.confidence_label == "low"
    assert any("Nothing decision-relevant" in n for n in rec.notes)


def test_one_megabyte_of_text(advisor):
    text = "We have 4,000 Q&A pairs about our insurance products and we need our brand voice. " * 12500
    assert len(text) > 1_000_000
    rec = advisor.recommend(text)
    assert rec.approach == "fine_tuning"
    assert rec.profile["example_count"]["value"] == 4000
    assert any("characters; the first 200,000 were read" in n for n in rec.notes)


def test_non_english_text_is_low_confidence_with_questions(advisor):
    rec = advisor.recommend("Wir möchten einen Chatbot für unsere Kunden bauen, der Fragen zu Verträgen beantwortet.")
    assert rec.confidence_label == "low" and rec.confidence <= 0.3
    assert rec.questions
    assert any("does not read as English" in n for n in rec.notes)


def test_nonsense_is_low_confidence_with_questions(advisor):
    rec = advisor.recommend("qwpoei zmxncb alskdj !!! 42 ??? lorem")
    assert rec.confidence_label == "low"
    assert len(rec.questions) >= 3
    assert len(rec.reasons) >= 2 and rec.citations


def test_clear_case_is_confident(advisor):
    rec = advisor.recommend("We have 5,000 preference pairs, want DPO, have an H100 and data that rarely changes. "
                            "We host open-weights models ourselves.")
    assert rec.technique == "dpo" and rec.confidence_label == "high"
