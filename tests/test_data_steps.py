"""The data pipeline's steps one by one: normalize, filters, de-duplication, split, export formats."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.data.clean import normalize_text
from executor.data.dedup import NearDuplicateIndex, content_key, jaccard
from executor.data.filters import check_example, guess_language
from executor.data.formats import chatml_text, export
from executor.data.records import Example, SourceRef
from executor.data.split import allocate, stratified_split

SRC = SourceRef("f.jsonl", 1)


def chat(user: str, reply: str, **kw) -> Example:
    return Example(SRC, [{"role": "user", "content": user}, {"role": "assistant", "content": reply}], **kw)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("cafÃ©", "café"),                         # mojibake repaired by ftfy
        ("e\u0301te\u0301", "été"),                # NFD -> NFC
        ("a\u00a0 b\t\tc", "a b c"),               # odd spaces collapsed
        ("x\x00y\x07z", "xyz"),                    # control characters dropped
        ("line1\r\nline2\r\n\n\n\nline3", "line1\nline2\n\nline3"),
        ("zero\u200bwidth", "zerowidth"),
        ("  padded  ", "padded"),
        ("{{Order Number}}", "{{Order Number}}"),  # template placeholders untouched
    ],
)
def test_normalize(raw, clean):
    assert normalize_text(raw) == clean


@pytest.mark.parametrize(
    ("example", "reason"),
    [
        (chat("hi", ""), "empty"),
        (chat("", "reply"), "empty"),
        (chat("question?", "k"), "too_short"),
        (chat("Say hello", "say  HELLO"), "response_equals_prompt"),
        (Example(SRC, [{"role": "user", "content": "q"}], chosen="same", rejected="same"), "response_equals_prompt"),
        (Example(SRC, text=""), "empty"),
    ],
)
def test_filters(example, reason):
    assert check_example(example)[0] == reason


def test_filters_keep_good_rows_and_filter_language():
    good = chat("How do I reset my password?", "Open Settings, then Security, then Reset password.")
    assert check_example(good) is None
    assert check_example(good, language="en") is None
    german = chat("Wie kann ich mein Passwort zurücksetzen?", "Öffnen Sie die Einstellungen und dann die Sicherheit.")
    assert check_example(german, language="en") == ("wrong_language", "reads as 'de', expected 'en'")
    assert guess_language("ok") is None  # too little text: never reject on a guess


def test_exact_key_folds_case_and_spaces():
    assert content_key(["Hello  World", "x"]) == content_key(["hello world", "x"])
    assert content_key(["hello world", "x"]) != content_key(["hello world", "y"])


def test_near_duplicates():
    index = NearDuplicateIndex(threshold=0.7)
    base = ("Your card will arrive within five business days after we approve the application and verify "
            "your identity at the branch or online")
    assert index.add_or_match("a", base) is None
    assert index.add_or_match("b", base + " today") == "a"
    assert index.add_or_match("c", "Refunds for cancelled orders go back to the original payment method") is None
    assert jaccard(base, base + " today") > 0.8


def test_allocate_sums_and_rounds():
    assert allocate(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert allocate(1, (0.8, 0.1, 0.1)) == [1, 0, 0]
    assert sum(allocate(997, (0.7, 0.2, 0.1))) == 997


def test_stratified_split_keeps_label_shares_and_is_deterministic():
    labels = ["a"] * 100 + ["b"] * 50 + ["c"] * 10
    first = stratified_split(labels, seed=7)
    assert first == stratified_split(labels, seed=7)
    assert first != stratified_split(labels, seed=8)
    shares = Counter(zip(labels, first, strict=True))
    assert (shares[("a", "train")], shares[("a", "validation")], shares[("a", "test")]) == (80, 10, 10)
    assert (shares[("b", "train")], shares[("b", "validation")], shares[("b", "test")]) == (40, 5, 5)
    assert (shares[("c", "train")], shares[("c", "validation")], shares[("c", "test")]) == (8, 1, 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["x", "y", "z", None]), max_size=200), st.integers(0, 2**16))
def test_split_assigns_every_row_exactly_once(labels, seed):
    assignment = stratified_split(labels, seed=seed)
    assert len(assignment) == len(labels)
    assert set(assignment) <= {"train", "validation", "test"}


def test_export_formats():
    ex = Example(SRC, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q1"},
                       {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
                       {"role": "assistant", "content": "A2"}], label="billing")
    assert export(ex, "openai") == {"messages": ex.messages}
    chatml = export(ex, "chatml")
    assert chatml["text"] == chatml_text(ex.messages)
    assert chatml["text"].startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ1<|im_end|>")
    assert chatml["label"] == "billing" and chatml["source"] == {"file": "f.jsonl", "line": 1}
    alpaca = export(ex, "alpaca")
    assert (alpaca["instruction"], alpaca["output"], alpaca["system"], alpaca["history"]) == (
        "Q2", "A2", "Be brief.", [["Q1", "A1"]])
    share = export(ex, "sharegpt")["conversations"]
    assert [t["from"] for t in share] == ["system", "human", "gpt", "human", "gpt"]


def test_export_preference_and_text():
    pref = Example(SRC, [{"role": "user", "content": "Q"}], chosen="good", rejected="bad")
    assert export(pref, "openai") == {
        "input": {"messages": [{"role": "user", "content": "Q"}]},
        "preferred_output": [{"role": "assistant", "content": "good"}],
        "non_preferred_output": [{"role": "assistant", "content": "bad"}],
    }
    trl = export(pref, "chatml")
    assert trl["prompt"] == pref.messages and trl["chosen"][0]["content"] == "good"
    assert export(pref, "sharegpt")["rejected"] == {"from": "gpt", "value": "bad"}
    doc = Example(SourceRef("docs/a.md"), text="Some document.")
    assert export(doc, "alpaca") == {"text": "Some document.", "source": {"file": "docs/a.md"}}
    with pytest.raises(ValueError, match="unknown output format 'csv'"):
        export(doc, "csv")


def test_near_duplicates_one_word_apart_are_found():
    # 120-word rows that differ in one word (Jaccard ~0.95): the LSH bands must not let them slip through.
    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(5000)]
    found = 0
    for _ in range(50):
        index = NearDuplicateIndex(0.85)
        row = [rng.choice(vocabulary) for _ in range(120)]
        variant = list(row)
        variant[rng.randrange(120)] = rng.choice(vocabulary)
        index.add_or_match("a", " ".join(row))
        found += index.add_or_match("b", " ".join(variant)) == "a"
    assert found >= 49
