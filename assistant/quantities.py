"""Counts people write in prose: "4,000 pairs", "5–10k examples", "363 billion token", "about 8 per class",
"77 intents", "in two weeks". Used by the extractor (assistant/extract.py).

Why a module of its own: a count's *role* matters as much as its value. "At least 5 reviews per product"
is a property of each item, "8 examples per class" is a per-class count (the data set has classes x that),
and "5,000 emails a day" is traffic; only the remaining counts describe the data set on hand, and of those
the largest is its size ("500 examples, each with at least 5 reviews").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

MULTIPLIERS = {
    "k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "mm": 1e6, "b": 1e9, "bn": 1e9, "billion": 1e9,
    "t": 1e12, "trillion": 1e12, "hundred": 1e2,
}
SMALL_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "fifty": 50,
    "a couple of": 2, "a couple": 2, "a few": 3, "a hundred": 100,
}
NUM = (
    r"(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*(k|mm|m|bn|b|t|thousand|million|billion|trillion|hundred)?\b\+?"
)
# "5-10k", "5,000 to 10,000": the lower bound counts (a conservative size). "between 2k and 3k" is read
# as its upper number only: "and" also joins unrelated counts ("500 tickets and 20 categories").
RANGE = rf"(?:from\s+)?{NUM}(?:\s*(?:-|–|—|to)\s*{NUM})?"
EXAMPLE_UNITS = (
    r"examples?|samples?|pairs?|rows?|records?|conversations?|dialog(?:ue)?s?|chats?|transcripts?|tickets?|"
    r"emails?|questions?|q&as?|instructions?|demonstrations?|comparisons?|ratings?|reviews?|utterances?|"
    r"messages?|annotations?|sentences?|prompts?|responses?|calls?|cases?|notes?|summaries|summary|queries|"
    r"query|problems?|items?|entries|entry|texts?|posts?|tweets?|descriptions?|completions?|"
    r"answers?|instances?|"
    r"data ?points?|observations?|sequences?|solutions?|replies|reply|comments?|abstracts?|products?|"
    r"dictations?|letters?|forms?|invoices?|receipts?|resumes?|cvs|headlines?|captions?|dialogues?|titles?|"
    r"slogans?|subject lines?|judg(?:e)?ments?|calls?"
)
DOCUMENT_UNITS = (
    r"documents?|docs|pages?|pdfs?|articles?|manuals?|files?|papers?|contracts?|reports?|policies|policy|"
    r"wiki pages?|books?|web ?pages?|knowledge base articles|kb articles|faqs?|guidelines?|filings?|"
    r"patents?|regulations?|procedures?"
)
CLASS_UNITS = r"intents?|classes|class|categories|category|labels?|topics?|tags?|buckets|departments|teams|queues"
# Units that are never a count of training examples ("300 million words of text", "20 hours of calls").
NOT_EXAMPLES = (
    r"(?:words?|tokens?|characters?|chars|hours?|minutes?|days?|weeks?|months?|years?|gb|mb|tb|percent|ms|"
    r"people|users|employees|customers|engineers|languages|gpus?|thousand|million|billion|trillion|hundred)\b"
)
_RATE_AFTER = re.compile(
    r"\s*(?:per|a|an|each|every|/)\s*(?:day|week|month|hour|minute|second|year)|"
    r"\s*(?:daily|weekly|monthly|hourly)",
    re.I,
)
# A count of something each item has: "each with at least 5 reviews", "up to 3 labels per ticket".
_PER_ITEM_BEFORE = re.compile(
    r"(?:at least|at most|up to|no more than|minimum of|maximum of|each (?:with|has|having))\s*$", re.I
)
_PER_ITEM_AFTER = re.compile(r"\s*(?:per|for each|for every|each|in each|/)\s+\w+", re.I)
# A number right after a model family is its version, not a count: "make Llama 3 answer questions".
_VERSION_BEFORE = re.compile(
    r"(?:llama|gpt|phi|qwen|gemma|claude|mistral|mixtral|gemini|falcon|bert|t5|yi|deepseek|version|v)[\s-]?$", re.I
)
# A size right after a model's name is its parameter count: "GPT-3 175B", "Llama-2 70B", "Qwen2.5 7B".
_MODEL_BEFORE = re.compile(
    r"(?:llama|gpt|phi|qwen|gemma|claude|mistral|mixtral|gemini|falcon|bloom|opt|t5|yi|deepseek|mpt|pythia)"
    r"[\w.-]*\s+$", re.I
)
# "as an example", "for example": the idiom, not a unit of data ("GPT-3 175B as an example").
_IDIOM_UNIT = re.compile(r"\b(?:as an?|for) (?:example|instance)$", re.I)


def to_number(digits: str, multiplier: str | None) -> float:
    value = float(digits.replace(",", ""))
    return value * MULTIPLIERS.get((multiplier or "").lower(), 1.0)


def _range_low(match: re.Match, first: int = 1) -> float:
    """Lower bound of a RANGE match; "5-10k" borrows the upper bound's multiplier."""
    low_digits, low_mult = match[first], match[first + 1]
    high_mult = match[first + 3] if match.re.groups >= first + 3 else None
    if low_mult is None and high_mult and match[first + 2]:
        low_mult = high_mult
    return to_number(low_digits, low_mult)


def _words(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-])(?:{pattern})(?![\w])", re.I)


@dataclass(frozen=True)
class Count:
    field: str
    value: int
    position: int


class Quantities:
    """Every count a text states, each with the field it describes."""

    def __init__(self) -> None:
        gap = rf"(?!{NOT_EXAMPLES})(?:[a-z&/'-]+\s+){{0,3}}?"
        self.examples = _words(rf"{RANGE}\s+{gap}(?:{EXAMPLE_UNITS})")
        self.documents = _words(rf"{RANGE}\s+(?:[a-z&/'-]+\s+){{0,2}}?(?:{DOCUMENT_UNITS})")
        self.per_class = _words(
            rf"(?:about |around |roughly |~)?{RANGE}\s+(?:(?:labeled |labelled |training )?(?:{EXAMPLE_UNITS})\s+)?"
            rf"(?:per|for each|for every|each|in each|a|/)\s*(?:\w+\s+)?(?:class|label|intent|category|topic|tag|type)"
        )
        words = "|".join(k for k in SMALL_NUMBERS if " " not in k)
        self.class_words = _words(rf"(?:one of |into |among )({words})\s+(?:[a-z]+\s+)?(?:{CLASS_UNITS})\b")
        self.classes = _words(
            rf"{RANGE}\s+(?:(?:different|distinct|possible|predefined|fixed|target|output|custom|[a-z]+-level)\s+)?"
            rf"(?:(?!per\b|for\b|each\b|a\b|an\b)[a-z]+\s+)?(?:{CLASS_UNITS})\b"
        )
        # Tokens, or the symbols of a non-language corpus (one nucleotide or residue is about one token).
        self.tokens = _words(rf"{NUM}\s*[- ]?(?:tokens?|nucleotides|base pairs|residues)")
        # "a corpus of ~150GB", "2.7 TB of source code": raw text at ~4 bytes per token.
        self.corpus_bytes = _words(
            r"(\d+(?:\.\d+)?)\s*(gb|tb|gib|tib)\s+(?:of\s+)?(?:\w+\s+){0,3}?(?:text|corpus|corpora|code|data|documents)|"
            r"(?:corpus|corpora|text|dataset)\s+of\s+~?(?:about\s+|around\s+|roughly\s+)?(\d+(?:\.\d+)?)\s*(gb|tb|gib|tib)"
        )
        self.words_corpus = _words(rf"{NUM}\s*[- ]?words\b")
        self.deadline = _words(
            r"(?:in|within|by|next)\s+(?:the\s+next\s+)?(\d+|one|two|three|four|five|six|a|a couple of|a few)\s+"
            r"(days?|weeks?|months?)"
        )

    # ------------------------------------------------------------------ per field
    def counts(self, text: str) -> Iterator[Count]:
        yield from self._example_counts(text)
        yield from self._document_counts(text)
        yield from self._class_counts(text)
        for match in self.tokens.finditer(text):
            yield Count("corpus_tokens", int(to_number(match[1], match[2])), match.start())
            break
        else:
            for match in self.corpus_bytes.finditer(text):
                size, unit = (match[1], match[2]) if match[1] else (match[3], match[4])
                gigabytes = float(size) * (1000 if unit.lower().startswith("t") else 1)
                yield Count("corpus_tokens", int(gigabytes * 1e9 / 4), match.start())
                break
            # "300 million words" of raw text: ~1.3 tokens per English word.
            for match in self.words_corpus.finditer(text):
                words = to_number(match[1], match[2])
                if words >= 1e6:
                    yield Count("corpus_tokens", int(words * 1.3), match.start())
                    break
        for match in self.deadline.finditer(text):
            amount = match[1].lower()
            n = int(amount) if amount.isdigit() else SMALL_NUMBERS.get(amount, 1)
            unit = match[2].lower().rstrip("s")
            yield Count("deadline_days", n * {"day": 1, "week": 7, "month": 30}[unit], match.start())
            break

    def _example_counts(self, text: str) -> Iterator[Count]:
        per_class = [(m.start(), m.end()) for m in self.per_class.finditer(text)]
        for match in self.per_class.finditer(text):
            yield Count("examples_per_class", int(_range_low(match)), match.start())
            break
        yield from _largest(self.examples, "example_count", text, skip=per_class)

    def _document_counts(self, text: str) -> Iterator[Count]:
        yield from _largest(self.documents, "document_count", text, skip=[])

    def _class_counts(self, text: str) -> Iterator[Count]:
        per_class = [(m.start(), m.end()) for m in self.per_class.finditer(text)]
        for match in self.classes.finditer(text):
            if any(s <= match.start() < e for s, e in per_class):
                continue
            if _PER_ITEM_AFTER.match(text, match.end()) or _RATE_AFTER.match(text, match.end()):
                continue
            value = int(_range_low(match))
            if 2 <= value <= 100_000:
                yield Count("class_count", value, match.start())
                return
        for match in self.class_words.finditer(text):
            yield Count("class_count", SMALL_NUMBERS[match[1].lower()], match.start())
            return


def _largest(pattern: re.Pattern[str], field: str, text: str, skip: list[tuple[int, int]]) -> Iterator[Count]:
    """The largest count of `pattern` that describes the data set: not a per-class count (`skip`), not
    traffic ("a day"), not a property of each item ("per product", "each with at least 5")."""
    best: Count | None = None
    for match in pattern.finditer(text):
        if any(s <= match.start() < e for s, e in skip):
            continue
        if _RATE_AFTER.match(text, match.end()) or _PER_ITEM_AFTER.match(text, match.end()):
            continue
        if _PER_ITEM_BEFORE.search(text[max(0, match.start() - 24):match.start()]):
            continue
        if _VERSION_BEFORE.search(text[max(0, match.start() - 10):match.start()]):
            continue
        if _IDIOM_UNIT.search(match[0]):
            continue
        if re.match(r"\d+(?:\.\d+)?[bm]\b", match[0], re.I) and _MODEL_BEFORE.search(
                text[max(0, match.start() - 24):match.start()]):
            continue
        value = int(_range_low(match))
        if best is None or value > best.value:
            best = Count(field, value, match.start())
    if best is not None:
        yield best
