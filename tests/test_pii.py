"""PII redaction: the hand-written corpus (exact output), counts, type subsets, properties, and speed."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.data.pii import PII_TYPES, PiiRedactor, luhn_valid, redact_pii

CORPUS_FILE = Path(__file__).parent / "data" / "pii_corpus.jsonl"
CORPUS = [json.loads(line) for line in CORPUS_FILE.read_text("utf-8").splitlines()]
PLACEHOLDER = re.compile(r"<(" + "|".join(PII_TYPES) + r")>")


def _placeholders(text: str) -> Counter[str]:
    return Counter(PLACEHOLDER.findall(text))


@pytest.mark.parametrize("case", CORPUS, ids=[f"{i}-{c['note']}" for i, c in enumerate(CORPUS)])
def test_corpus(case):
    redacted, counts = redact_pii(case["text"])
    assert redacted == case["expected"]
    # Every new placeholder is counted under its type (placeholders already in the text are not).
    assert counts == _placeholders(case["expected"]) - _placeholders(case["text"])


def test_corpus_covers_every_type_and_many_look_alikes():
    planted = sum((_placeholders(c["expected"]) for c in CORPUS), Counter())
    assert set(planted) == set(PII_TYPES)
    assert len(CORPUS) >= 80
    assert sum(c["text"] == c["expected"] for c in CORPUS) >= 30


@pytest.mark.parametrize("case", CORPUS, ids=[f"{i}" for i in range(len(CORPUS))])
def test_redacting_twice_changes_nothing(case):
    once, _ = redact_pii(case["text"])
    assert redact_pii(once) == (once, Counter())


def test_counts_by_type():
    text = ("Mail a@example.com or b@example.org, call +44 20 7946 0958, pay with 4111 1111 1111 1111 "
            "from 192.0.2.1 using token=abc123xyz.")
    redacted, counts = redact_pii(text)
    assert counts == Counter(EMAIL=2, PHONE=1, CREDIT_CARD=1, IP_ADDRESS=1, SECRET=1)
    assert redacted == ("Mail <EMAIL> or <EMAIL>, call <PHONE>, pay with <CREDIT_CARD> "
                        "from <IP_ADDRESS> using token=<SECRET>.")


EVERY_TYPE = ("jane@example.com, +1-202-555-0143, 4111 1111 1111 1111, GB82 WEST 1234 5698 7654 32, 192.0.2.1, "
              "123-45-6789, api_key=abc123def456, https://u:pass@example.com/x")


def test_subset_of_types_redacts_only_those():
    redacted, counts = PiiRedactor(["EMAIL", "IP_ADDRESS"]).redact(EVERY_TYPE)
    assert redacted == ("<EMAIL>, +1-202-555-0143, 4111 1111 1111 1111, GB82 WEST 1234 5698 7654 32, <IP_ADDRESS>, "
                        "123-45-6789, api_key=abc123def456, https://u:pass@example.com/x")  # pass@example.com: no email
    assert counts == Counter(EMAIL=1, IP_ADDRESS=1)
    assert PiiRedactor([]).redact(EVERY_TYPE) == (EVERY_TYPE, Counter())


@pytest.mark.parametrize("pii_type", PII_TYPES)
def test_one_type_alone(pii_type):
    redacted, counts = PiiRedactor([pii_type]).redact(EVERY_TYPE)
    assert counts == Counter({pii_type: 1})
    assert _placeholders(redacted) == counts


def test_unknown_type_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="unknown PII type.*'NAME'.*EMAIL"):
        PiiRedactor(["EMAIL", "NAME"])


def test_empty_text():
    assert redact_pii("") == ("", Counter())


# --- properties ------------------------------------------------------------------------------------------

# Every pattern needs a digit, '@', ':' or '=' (an assignment, a URL), '_' or a capital (ghp_..., AKIA...,
# the PEM markers): prose without them must come back untouched.
_PROSE = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz .,;!?'\"()-/\n"), max_size=300)


@given(_PROSE)
def test_text_without_digits_or_at_sign_is_unchanged(text):
    assert redact_pii(text) == (text, Counter())


def _luhn_complete(partial: str) -> str:
    return next(partial + d for d in "0123456789" if luhn_valid(partial + d))


@given(body=st.text(alphabet="0123456789", min_size=14, max_size=14),
       separator=st.sampled_from(["", " ", "-"]),
       before=st.sampled_from(["My card is ", "Charge ", "visa: ", "", "Please use "]),
       after=st.sampled_from([".", " for the renewal.", ", thanks", "", " exp 12/27"]))
def test_any_luhn_valid_visa_in_a_sentence_is_redacted(body, separator, before, after):
    number = _luhn_complete("4" + body)
    grouped = separator.join(number[i:i + 4] for i in range(0, 16, 4))
    redacted, counts = redact_pii(before + grouped + after)
    assert redacted == before + "<CREDIT_CARD>" + after
    assert counts == Counter(CREDIT_CARD=1)


# Fragments that look like PII, half-PII and glue: arbitrary mixtures stress the boundaries between patterns.
_FRAGMENTS = st.sampled_from([
    "a@example.com", "+44 20 7946 0958", "202-555-0143", "030 1234567", "4111 1111 1111 1111", "5555555555554444",
    "GB82 WEST 1234 5698 7654 32", "192.0.2.1", "2001:db8::1", "123-45-6789", "token=abc123", "Bearer abc123def456",
    "https://u:p@host/x", "sk-proj-T3stK3yAbCdEfGhIjKlMnOp0123", "2024-01-15", "1.2.3", "version", "order", "0", "12",
    "345", "6789", ":", "::", ".", "-", "@", "/", " ", "  ", "\n", "x", "<EMAIL>", "{{Order Number}}", "AKIA", "ab",
])


@settings(max_examples=300)
@given(st.one_of(st.lists(_FRAGMENTS, max_size=12).map("".join), st.text(max_size=200)))
def test_redaction_is_idempotent_on_arbitrary_text(text):
    once, _ = redact_pii(text)
    assert redact_pii(once)[0] == once


# --- speed -----------------------------------------------------------------------------------------------

_ROWS = [
    "Hello, I ordered a blue jacket last week but it has not arrived yet. The tracking page says it left the "
    "warehouse on Monday, and nothing has happened since. Could you check what is going on and let me know "
    "whether I should wait a little longer or ask for a refund? I would prefer a replacement if possible. "
    "Also, the size chart on your site seems different from the one in the store; is the medium the same as "
    "before? Thanks a lot for your help, and have a nice weekend. Best regards, a happy long-time customer.",
    "Order 113542617735902 placed on 2024-03-12 for $149.99 (2 items, 15% discount). Customer wants delivery "
    "before 18:00 and asked us to call when the courier is near. Previous ticket #48213 was closed after the "
    "refund of $20. Version 2.4.1 of the app showed the wrong total; support reproduced it on v2.4.0 as well. "
    "Reach the customer at jane.doe@example.com or +44 20 7946 0958; card 4111 1111 1111 1111 on file.",
]


@pytest.mark.slow
def test_speed_on_ordinary_rows():
    prose, with_pii = _ROWS
    rows = [with_pii if i % 10 == 9 else prose for i in range(20_000)]  # one row in ten carries numbers and PII
    size_mb = sum(len(r) for r in rows) / 1e6
    redactor = PiiRedactor()
    start = time.perf_counter()
    for row in rows:
        redactor.redact(row)
    rate = size_mb / (time.perf_counter() - start)
    print(f"\nPII redaction: {rate:.1f} MB/s over {size_mb:.1f} MB")
    assert rate >= 1.0


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("Call (555) 123-4567 today.", "Call <PHONE> today."),
        ("Contact: 555-123-4567", "Contact: <PHONE>"),
        ("Tel. 555.123.4567 or write to us.", "Tel. <PHONE> or write to us."),
        ("Please call me at 555 123 4567.", "Please call me at <PHONE>."),
        ("Phone +1 555-123-4567 anytime", "Phone <PHONE> anytime"),
        # Look-alikes without a word that introduces a phone stay as they are.
        ("Order (555) 123-4567 shipped.", "Order (555) 123-4567 shipped."),
        ("The part number is 555-123-4567.", "The part number is 555-123-4567."),
        ("Version 123-4567 of the contract", "Version 123-4567 of the contract"),
    ],
)
def test_phone_numbers_in_context_are_redacted_even_when_not_valid_nanp(text, redacted):
    assert PiiRedactor().redact(text)[0] == redacted
