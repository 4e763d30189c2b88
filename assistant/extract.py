"""Read a UseCaseProfile out of free text, deterministically.

Keyword cues come from knowledge/lexicon.yaml; numbers ("4,000 pairs", "24 GB GPU", "under 200 ms",
"$5k budget", "10B tokens") are parsed here. Every fact keeps the sentence it came from. Patterns run
once over the whole text (not per sentence) and are mapped back to sentences by offset, so 1 MB of
text costs a few dozen regex passes, not one per sentence.

`ProfileExtractor` is the interface; `RegexExtractor` is the offline default and `LLMExtractor`
(assistant/llm_extract.py) an optional upgrade behind the same interface.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from assistant.profile import UseCaseProfile
from assistant.quantities import DOCUMENT_UNITS, EXAMPLE_UNITS, Quantities, to_number

if TYPE_CHECKING:
    from assistant.knowledge import Knowledge

MAX_EVIDENCE = 240
WORD_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "dual": 2, "a pair of": 2, "three": 3, "four": 4,
    "quad": 4, "five": 5, "six": 6, "eight": 8, "ten": 10, "twelve": 12, "sixteen": 16,
}
VAGUE_COUNTS = {
    "a handful of": 10, "a dozen": 12, "dozens of": 50, "a few hundred": 300, "several hundred": 500,
    "hundreds of": 500, "a few thousand": 3000, "several thousand": 5000, "thousands of": 5000,
    "a couple of thousand": 2000, "a couple thousand": 2000, "tens of thousands of": 30000,
    "hundreds of thousands of": 300000, "millions of": 2000000,
}
ENGLISH_STOPWORDS = frozenset(
    "the a an and or of to in on for with we our is are be have has that this it as at by from not "
    "but can will would should want need use using about which what how do does they them their you "
    "your i my me us was were been into than more most some any all each per".split()
)


# Words before a model name that make it a comparison or a teacher, not the model to use.
_CONTRAST_BEFORE = re.compile(
    r"(?:instead of|rather than|cheaper than|faster than|better than|compared (?:to|with)|vs\.?|versus|"
    r"alternative to|replac\w+|move away from|switch(?:ing)? from|as good as|outperform\w*|"
    r"distill\w* (?:from |of )?(?:our|the|their|a)?|"
    r"(?:outputs?|answers?|responses?|labels?|completions?) (?:from|of|by)|"
    r"generated (?:by|with|using)|labell?ed (?:by|with|using)|teacher)\s+(?:the\s+)?(?:\w+\s+)?$",
    re.I,
)


# Words after a model name that make it the model being replaced: "GPT-4 is too slow and expensive".
# ... and "GPT-4 outputs", "Claude's answers": the model as the source of data (a teacher), not the one to tune.
_CONTRAST_AFTER = re.compile(
    r"[\w.-]*\s+(?:is|was|are|were|would be|gets|got|became|has become)\s+(?:\w+\s+)?"
    r"(?:too|very|prohibitively|far too|way too)\s+(?:slow|expensive|costly|pricey|big|large)|"
    # ("answers"/"responses" only after a possessive: "Gemini answers our questions" names the model in use).
    r"[\w.-]*\s+(?:outputs|generations|completions|annotations|pipeline)\b|"
    r"[\w.-]*'s\s+(?:outputs|answers|responses|labels|generations|completions)\b|"
    # "Using GPT-3 175B as an example": a model used to illustrate a point is not the one wanted.
    r"[\w.-]*(?:\s+\d+(?:\.\d+)?[bm])?\s+(?:as an? (?:example|illustration)|for (?:example|instance))\b",
    re.I,
)


def _named_as_contrast(text: str, pos: int, end: int | None = None) -> bool:
    if _CONTRAST_BEFORE.search(text[max(0, pos - 40):pos]):
        return True
    return end is not None and bool(_CONTRAST_AFTER.match(text, end))


@dataclass(frozen=True)
class Candidate:
    field: str
    value: Any
    priority: int  # lower wins
    position: int


class ProfileExtractor(Protocol):
    def extract(self, text: str) -> UseCaseProfile: ...


class Sentences:
    """Sentence boundaries of a text, for mapping a match offset back to its sentence."""

    # One definition of a sentence for keywords and meaning alike: after . ! ? ; at an ellipsis that joins
    # excerpts, and at every line break (lists, bullet points, hard-wrapped forum posts).
    SPLIT = re.compile(r"(?<=[.!?;])\s+|\s+…\s+|\n+")

    def __init__(self, text: str):
        self.text = text
        breaks = list(self.SPLIT.finditer(text))
        self.starts = [0] + [m.end() for m in breaks]
        self.ends = [m.start() for m in breaks] + [len(text)]  # the separator (an ellipsis) belongs to neither

    def texts(self) -> list[str]:
        """Each sentence with its white space collapsed."""
        ends = self.ends
        return [" ".join(self.text[a:b].split()) for a, b in zip(self.starts, ends, strict=True)]

    def around(self, pos: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.starts, pos) - 1
        end = self.starts[i + 1] if i + 1 < len(self.starts) else len(self.text)
        return self.starts[i], end

    def sentence(self, pos: int) -> str:
        start, end = self.around(pos)
        sentence = " ".join(self.text[start:end].split())
        return sentence if len(sentence) <= MAX_EVIDENCE else sentence[: MAX_EVIDENCE - 1] + "…"


def _words(pattern: str) -> re.Pattern[str]:
    # Whole words, case-insensitive; lookarounds instead of \b so patterns may end in "&", "+", ".".
    return re.compile(rf"(?<![\w-])(?:{pattern})(?![\w])", re.I)


class RegexExtractor:
    """The deterministic, offline extractor."""

    def __init__(self, knowledge: Knowledge):
        self.knowledge = knowledge
        self.negation = re.compile(knowledge.lexicon.get("negation", r"\bno\b|\bnot\b"), re.I)
        self.question_forms = re.compile(knowledge.lexicon.get("question_forms", r"(?!x)x"), re.I)
        self.dismissal = re.compile(knowledge.lexicon.get("dismissal", r"(?!x)x"), re.I)
        self.cues = [
            (i, cue, _words("|".join(f"(?:{p})" for p in cue.patterns))) for i, cue in enumerate(knowledge.cues)
        ]
        self.quantities = Quantities()
        vague = "|".join(re.escape(k) for k in sorted(VAGUE_COUNTS, key=len, reverse=True))
        self.vague_count = _words(
            rf"({vague})\s+(?:[a-z&/'-]+\s+){{0,3}}?({EXAMPLE_UNITS}|{DOCUMENT_UNITS})"
        )
        self.latency = _words(
            r"(?:under|below|within|less than|<|<=|at most|no more than|max(?:imum)?(?: of)?|sub|"
            r"p\d\d of|budget of|in|faster than)\s*(\d+(?:\.\d+)?)\s*-?\s*(ms|milliseconds?|s|secs?|seconds?)"
        )
        self.sub_second = _words(r"sub[- ]second")
        self.money = _words(
            r"(?:\$|usd\s*|€|eur\s*)\s?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*(k|m|thousand|million)?\b|"
            r"(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*(k|m|thousand|million)?\s*(?:usd|dollars|eur|euros)"
        )
        self.task_count = _words(
            r"(\d+)\s+(?:different|distinct|separate|individual)\s+(?:[a-z-]+\s+)?(?:tasks|tenants|clients|customers|"
            r"classifiers|use[- ]cases|models|departments|products|brands)|(?:each|every|one for each|all) of "
            r"(?:our |the |its )?(\d+)\s+(?:[a-z-]+\s+)?"
            r"(?:tenants|clients|customers|tasks|departments|brands|business units)"
        )
        gpu_aliases = sorted(
            {alias.lower(): gpu for gpu in knowledge.gpus for alias in [*gpu.aliases, gpu.id]}.items(),
            key=lambda kv: -len(kv[0]),
        )
        self.gpu_by_alias = dict(gpu_aliases)
        alias_re = "|".join(re.escape(a) for a, _ in gpu_aliases)
        counts = "|".join(re.escape(k) for k in sorted(WORD_NUMBERS, key=len, reverse=True))
        self.gpu_named = _words(
            rf"(?:(\d+|{counts})\s*(?:x\s*|×\s*)?)?(?:nvidia\s+|geforce\s+|rtx\s+|tesla\s+)*({alias_re})s?"
            rf"(?:\s*(?:x|×)\s*(\d+))?"
        )
        self.gpu_memory = _words(
            r"(\d+(?:\.\d+)?)\s*(?:gb|gib|g)\b(?:\s+of)?\s*(?:\w+\s+){0,2}?(?:gpus?|vram|graphics cards?|cards?|"
            r"of (?:gpu|video) memory|video memory)|(?:gpus?|cards?)\s+(?:with\s+)?(\d+(?:\.\d+)?)\s*(?:gb|gib)\b"
        )
        self.memory_after_name = re.compile(r"\s*(?:with\s+|,\s*)?(\d+(?:\.\d+)?)\s*(?:gb|gib)\b", re.I)
        self.gpu_count_words = _words(
            rf"(\d+|{counts})\s*(?:x\s*)?(?:\w+\s+)?gpus"
        )
        models = [m for m in knowledge.models.values()]
        model_aliases = sorted(
            {alias.lower(): m.id for m in models for alias in [*m.aliases, m.id]}.items(),
            key=lambda kv: -len(kv[0]),
        )
        self.model_by_alias = dict(model_aliases)
        self.model_named = _words("|".join(re.escape(a) for a, _ in model_aliases))
        self.model_named_by_size = re.compile(r"\b[a-z][a-z0-9.]*-(\d+(?:\.\d+)?)b\b", re.I)
        self.model_size = _words(
            r"(llama|mistral|qwen|gemma|phi|smollm\w*)?[\s-]*(?:\d(?:\.\d)?[\s-]+)?(\d+(?:\.\d+)?)\s*b\b"
            r"(?=\s*(?:-?\s*(?:parameter|param|model|llm|instruct|base|chat)|\b))"
        )

    # ------------------------------------------------------------------ the story
    def extract(self, text: str) -> UseCaseProfile:
        text = text or ""
        sentences = Sentences(text)
        candidates: list[Candidate] = []
        candidates += self._cue_candidates(text, sentences)
        candidates += self._number_candidates(text)
        profile = UseCaseProfile()
        for field, best in self._resolve(candidates).items():
            profile = profile.with_fact(field, best.value, "text", sentences.sentence(best.position))
        profile = self.fill_implied(profile)
        language, evidence = detect_language(text)
        if language is not None:
            profile = profile.with_fact("language", language, "text", evidence)
        return profile

    # ------------------------------------------------------------------ keyword cues
    def _negated(self, text: str, sentences: Sentences, pos: int) -> bool:
        start, _ = sentences.around(pos)
        window = text[max(start, pos - 60):pos]
        # The negation must be in the same clause: stop at the last comma / "but".
        clause = re.split(r",|\bbut\b|\bhowever\b|\band\b", window)[-1]
        return bool(self.negation.search(clause))

    def _asked_about(self, text: str, sentences: Sentences, pos: int) -> bool:
        """Is the match the subject of a question ("do we need to fine-tune?", "is training necessary?")?"""
        start, end = sentences.around(pos)
        sentence = text[start:end]
        return sentence.rstrip().endswith("?") and bool(self.question_forms.search(text[start:pos + 40]))

    def _dismissed(self, text: str, sentences: Sentences, end: int) -> bool:
        """Does the rest of the match's clause argue against it ("... becomes less feasible")?"""
        _, stop = sentences.around(end)
        rest = re.sub(r",\s*(?:which|that|who)\b[^,]*,", " ", text[end:stop])  # skip ", which ...,"
        clause = re.split(r"[,;]|\bbut\b|\bhowever\b|\bwhile\b|\bwhereas\b", rest)[0]
        return bool(self.dismissal.search(clause))

    def _cue_candidates(self, text: str, sentences: Sentences) -> Iterable[Candidate]:
        for priority, cue, regex in self.cues:
            for match in regex.finditer(text):
                if cue.not_if_dismissed and self._dismissed(text, sentences, match.end()):
                    continue
                value = cue.value
                if cue.negatable and self._negated(text, sentences, match.start()):
                    if cue.negated_value is None:
                        continue
                    value = cue.negated_value
                if cue.not_in_question and self._asked_about(text, sentences, match.start()):
                    continue
                yield Candidate(cue.field, value, priority, match.start())
                break  # the earliest match of a cue decides; later ones add nothing

    # ------------------------------------------------------------------ numbers
    def _number_candidates(self, text: str) -> Iterable[Candidate]:
        first = -1  # numbers beat keyword defaults for the same field
        for count in self.quantities.counts(text):
            yield Candidate(count.field, count.value, first, count.position)
        for match in self.vague_count.finditer(text):
            field = "document_count" if re.fullmatch(DOCUMENT_UNITS, match[2], re.I) else "example_count"
            yield Candidate(field, VAGUE_COUNTS[match[1].lower()], first + 1, match.start())
        for match in self.latency.finditer(text):
            value = float(match[1]) * (1 if match[2].lower().startswith("m") else 1000)
            yield Candidate("latency_budget_ms", int(value), first, match.start())
            break
        for match in self.sub_second.finditer(text):
            yield Candidate("latency_budget_ms", 1000, first + 1, match.start())
            break
        for match in self.money.finditer(text):
            start, end = max(0, match.start() - 80), match.end() + 80
            if not re.search(r"budget|spend|afford|cost|pay|invest|allocat", text[start:end], re.I):
                continue  # "$1M in lost revenue" is not a budget
            usd = to_number(match[1] or match[3], match[2] or match[4])
            yield Candidate("budget_usd", usd, first, match.start())
            tier = "low" if usd < 2_000 else "medium" if usd < 50_000 else "high"
            yield Candidate("budget", tier, first, match.start())
            break
        for match in self.task_count.finditer(text):
            yield Candidate("task_count", int(match[1] or match[2]), first, match.start())
            break
        yield from self._gpu_candidates(text)
        yield from self._model_candidates(text)

    def _gpu_candidates(self, text: str) -> Iterable[Candidate]:
        first = -1
        for match in self.gpu_named.finditer(text):
            gpu = self.gpu_by_alias[match[2].lower()]
            count = match[1] or match[3]
            count = int(count) if count and count.isdigit() else WORD_NUMBERS.get((count or "").lower(), 1)
            yield Candidate("gpu_name", gpu.id, first, match.start())
            # A size written right after the name is that card's ("RTX 4070 8GB" is the laptop part).
            written = self.memory_after_name.match(text, match.end())
            memory = float(written[1]) if written else float(gpu.memory_gb)
            yield Candidate("gpu_memory_gb", memory, first, match.start())
            yield Candidate("gpu_count", count, first, match.start())
            break
        for match in self.gpu_memory.finditer(text):
            yield Candidate("gpu_memory_gb", float(match[1] or match[2]), first - 1, match.start())
            break
        for match in self.gpu_count_words.finditer(text):
            count = match[1]
            count = int(count) if count.isdigit() else WORD_NUMBERS.get(count.lower(), 1)
            yield Candidate("gpu_count", count, first, match.start())
            break

    def _model_candidates(self, text: str) -> Iterable[Candidate]:
        """The model the team wants to use, from the catalog's names (ids, families, aliases). A model named
        as a point of comparison or as the source of outputs ("instead of GPT-4", "answers from GPT-4") is
        not the one they want; the first other mention is."""
        for match in self.model_named.finditer(text):
            if _named_as_contrast(text, match.start(), match.end()):
                continue
            yield Candidate("preferred_model", self.model_by_alias[match[0].lower()], -1, match.start())
            return
        for match in self.model_named_by_size.finditer(text):
            # "falcon-7b", "bloomz-3b": a family outside the catalog, matched to a catalog model by size.
            if not _named_as_contrast(text, match.start(), match.end()):
                model = self._nearest_model(None, float(match[1]))
                if model:
                    yield Candidate("preferred_model", model, 0, match.start())
                    return
        for match in self.model_size.finditer(text):
            if _named_as_contrast(text, match.start(), match.end()):
                continue
            model = self._nearest_model(match[1], float(match[2]))
            if model:
                yield Candidate("preferred_model", model, 0, match.start())
                return

    def _nearest_model(self, family: str | None, size_b: float) -> str | None:
        family = (family or "").lower()
        family = "smollm" if family.startswith("smollm") else family
        pool = [
            m for m in self.knowledge.models.values()
            if m.params_b and (not family or m.family == family)
        ]
        if not pool:
            return None
        # Without a family, prefer the most widely used one (Llama) when sizes tie.
        nearest = min(pool, key=lambda m: (abs(m.params_b - size_b), m.family != "llama"))
        # "175B parameters" is no 72B model: a size far from every catalog model names none of them.
        if not 0.5 <= nearest.params_b / size_b <= 2.0:
            return None
        return nearest.id

    # ------------------------------------------------------------------ resolution
    @staticmethod
    def _resolve(candidates: list[Candidate]) -> dict[str, Candidate]:
        best: dict[str, Candidate] = {}
        for cand in candidates:
            current = best.get(cand.field)
            if current is None or (cand.priority, cand.position) < (current.priority, current.position):
                best[cand.field] = cand
        return best

    @staticmethod
    def fill_implied(profile: UseCaseProfile) -> UseCaseProfile:
        """Facts that follow from others ("no GPU" means 0 GB; a GPU named implies one GPU)."""
        if profile.gpu_count.known and profile.gpu_count.value == 0 and not profile.gpu_memory_gb.known:
            profile = profile.with_fact("gpu_memory_gb", 0.0, "text", profile.gpu_count.evidence)
        if profile.gpu_memory_gb.known and profile.gpu_memory_gb.value > 0 and not profile.gpu_count.known:
            profile = profile.with_fact("gpu_count", 1, "text", profile.gpu_memory_gb.evidence)
        training_kinds = ("labeled_classes", "instruction_pairs", "chat_logs", "preference_pairs")
        if (
            not profile.example_count.known
            and profile.document_count.known
            and profile.data_kind.value in training_kinds
        ):
            profile = profile.with_fact("example_count", profile.document_count.value, "text",
                                        profile.document_count.evidence)
        per_class, classes = profile.examples_per_class, profile.class_count
        if per_class.known and classes.known and not profile.example_count.known:
            # "about 8 per class, 12 classes": the data set is the product, not the per-class count.
            profile = profile.with_fact("example_count", per_class.value * classes.value, "text",
                                        per_class.evidence)
        if profile.example_count.known and classes.known and not per_class.known and classes.value:
            profile = profile.with_fact("examples_per_class", profile.example_count.value // classes.value,
                                        "text", profile.example_count.evidence)
        if classes.known and not profile.task_type.known:
            profile = profile.with_fact("task_type", "classification", "text", classes.evidence)
        if profile.data_kind.value == "none" and not profile.example_count.known:
            profile = profile.with_fact("example_count", 0, "text", profile.data_kind.evidence)
        return profile


def detect_language(text: str) -> tuple[str | None, str | None]:
    """'en' when common English function words make up a normal share of the words, else 'other'.

    Good enough to tell English from other languages and from keyboard noise; the point is to lower
    confidence and ask, not to identify the language.
    """
    words = re.findall(r"[^\W\d_]+", text.lower()[:20000])
    if len(words) < 3:
        return None, None
    share = sum(w in ENGLISH_STOPWORDS for w in words) / len(words)
    if share >= 0.12:
        return "en", f"{share:.0%} of words are common English words"
    return "other", f"only {share:.0%} of words are common English words"
