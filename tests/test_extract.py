"""The deterministic extractor: numbers, cues, negation, provenance, language, size limits."""

from __future__ import annotations

import time

import pytest


def facts(extractor, text):
    return {k: v for k, v in extractor.extract(text).values().items() if v is not None}


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("We have 4,000 pairs of questions and answers.", 4000),
        ("About 10k examples.", 10000),
        ("Roughly 1.2M conversations from our call center.", 1200000),
        ("We have 2,500 annotated claim summaries.", 2500),
        ("We collected a few hundred examples so far.", 300),
        ("We have 750 labeled support tickets.", 750),
    ],
)
def test_example_counts(extractor, text, count):
    assert extractor.extract(text).example_count.value == count


def test_traffic_is_not_a_dataset(extractor):
    # "5,000 emails a day" describes load, not data on hand.
    assert extractor.extract("We receive 5,000 emails a day.").example_count.value is None


@pytest.mark.parametrize(
    ("text", "memory", "count", "name"),
    [
        ("We have a 24 GB GPU.", 24.0, 1, None),
        ("Training happens on two RTX 4090s.", 24.0, 2, "rtx-4090-24gb"),
        ("We rent 8x H100 for this.", 80.0, 8, "h100-80gb"),
        ("We have 8 H100 GPUs.", 80.0, 8, "h100-80gb"),
        ("Our server has one A100 80GB.", 80.0, 1, "a100-80gb"),
        ("We have no GPU at all.", 0.0, 0, None),
        ("CPU-only machines here.", 0.0, 0, None),
    ],
)
def test_hardware(extractor, text, memory, count, name):
    p = extractor.extract(text)
    assert p.gpu_memory_gb.value == memory
    assert p.gpu_count.value == count
    assert p.gpu_name.value == name


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("Responses must come back in under 200 ms.", "latency_budget_ms", 200),
        ("Answers within 2 seconds are fine.", "latency_budget_ms", 2000),
        ("We have a $5k budget for training.", "budget_usd", 5000.0),
        ("We have a $5k budget for training.", "budget", "medium"),
        ("Our budget is tight.", "budget", "low"),
        ("We have 10B tokens of raw text.", "corpus_tokens", 10_000_000_000),
        ("We must use the OpenAI API for everything.", "vendor", "openai_api"),
        ("We are standardized on Claude.", "vendor", "anthropic_api"),
        ("We want open-weights models we host ourselves.", "vendor", "open_weights"),
        ("Prices change every hour.", "knowledge_freshness", "changing"),
        ("The policies are updated quarterly.", "knowledge_freshness", "periodic"),
        ("Our product specs rarely change.", "knowledge_freshness", "static"),
        ("Every answer must cite its sources.", "needs_citations", True),
        ("We don't need citations.", "needs_citations", False),
        ("Output must be valid JSON.", "output_format", "structured"),
        ("It must write in our brand voice.", "custom_tone", True),
        ("Doctors use lots of medical jargon.", "domain_vocabulary", True),
        ("The model runs on-device in our mobile app.", "deployment", "on_device"),
        ("Everything is self-hosted on-prem.", "deployment", "on_prem"),
        ("Patient data is covered by HIPAA.", "privacy", "sensitive"),
        ("We have 3,000 preference pairs.", "data_kind", "preference_pairs"),
        ("We have 2,000 chat transcripts.", "data_kind", "chat_logs"),
        ("We have 5,000 Q&A pairs.", "data_kind", "instruction_pairs"),
        ("We have texts labeled with 12 categories.", "data_kind", "labeled_classes"),
        ("We don't have any data.", "data_kind", "none"),
        ("We'd like to try QLoRA.", "requested_technique", "qlora"),
        ("Plain LoRA please.", "requested_technique", "lora"),
        ("We want to fine-tune Mistral 7B.", "preferred_model", "mistral-7b-instruct-v0.3"),
        ("Something like a 70B model.", "preferred_model", "llama-3.1-70b-instruct"),
        ("We serve 40 different classification tasks.", "task_count", 40),
        ("Classify incoming tickets by intent.", "task_type", "classification"),
        ("Summarize long meeting transcripts.", "task_type", "summarization"),
    ],
)
def test_fields(extractor, text, field, value):
    assert getattr(extractor.extract(text), field).value == value


def test_money_that_is_not_a_budget_is_ignored(extractor):
    p = extractor.extract("Our churn was 12% and revenue grew to $1M last year.")
    assert p.budget_usd.value is None


def test_every_fact_keeps_its_sentence(extractor):
    text = "We are a law firm. We have 4,000 Q&A pairs.\nOur single GPU has 24 GB of VRAM."
    p = extractor.extract(text)
    assert p.example_count.evidence == "We have 4,000 Q&A pairs."
    assert p.example_count.source == "text"
    assert p.gpu_memory_gb.evidence == "Our single GPU has 24 GB of VRAM."
    assert not p.needs_citations.known and p.needs_citations.source == "unknown"


def test_negation_is_clause_local(extractor):
    # "no" belongs to the first clause; the second one still asks for citations.
    p = extractor.extract("There is no budget problem, but answers must cite the policy they rely on.")
    assert p.needs_citations.value is True


def test_language(extractor):
    assert extractor.extract("We want a chatbot for our customers.").language.value == "en"
    assert extractor.extract("Wir möchten einen Chatbot für unsere Kunden bauen.").language.value == "other"
    assert extractor.extract("asdkj qweoiu zxcmn qweqwe").language.value == "other"
    assert not extractor.extract("").language.known


def test_one_megabyte_is_handled_quickly(extractor):
    text = ("We have 4,000 Q&A pairs about our insurance products. " * 20000)[:1_000_000]
    start = time.perf_counter()
    p = extractor.extract(text)
    elapsed = time.perf_counter() - start
    assert p.example_count.value == 4000
    assert elapsed < 30  # generous: this guards against super-linear regexes, not speed
