"""Facts by meaning: the sentences of a description compared with cue exemplars (knowledge/exemplars.yaml).

Keywords miss what people say in their own words ("it cost a fraction of a penny per message and that added
up" is a cost-per-request constraint; "staff want to search our wiki by asking questions" is a knowledge
source to answer from). Each sentence is embedded with the bundled MiniLM and compared with every exemplar;
a fact is set when a sentence is close enough to one of its exemplars and clearly closer than to any other
value of the same field. `SemanticExtractor` wraps the keyword extractor behind the same ProfileExtractor
interface: keyword facts stand (they are exact), the meaning fills what they left unknown, and every fact
keeps the sentence it came from plus the exemplar it matched.

The exemplars' vectors are cached on disk (`<data dir>/cache/exemplars-<key>.npy`), keyed by a hash of the
exemplar and background sentences and the embedder's fingerprint (encoder version, model package, file sizes):
a new process embeds only the user's sentences. Editing knowledge/exemplars.yaml or changing the model changes
the key, so a stale cache is never read.

Lazy imports: MiniLMEmbedder (numpy, tokenizers, the model's weights) loads when a matcher is built, never for
keyword-only extraction.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from assistant.extract import RegexExtractor, Sentences
from assistant.knowledge import KnowledgeError
from assistant.profile import UseCaseProfile

MIN_WORDS = 4
MAX_SENTENCES = 200  # a description longer than this is read by keywords only past here


@dataclass(frozen=True)
class Exemplars:
    threshold: float
    margin: float
    groups: list[tuple[str, Any, list[str]]]  # (field, value, sentences)
    background: list[str] = ()  # sentences that set nothing: a match must beat them by `margin`

    @classmethod
    def load(cls, root: Path) -> Exemplars:
        path = root / "exemplars.yaml"
        # libyaml's loader where PyYAML has it: the same data, read ~10x faster than the pure-Python one.
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        groups = []
        fields = set(UseCaseProfile.field_names())
        for i, entry in enumerate(raw.get("exemplars") or []):
            where = f"{path}: exemplar #{i + 1}"
            if not isinstance(entry, dict) or not {"field", "value", "sentences"} <= set(entry):
                raise KnowledgeError(f"{where}: needs field, value and sentences")
            if entry["field"] not in fields:
                raise KnowledgeError(f"{where}: field 'field': unknown profile field {entry['field']!r}")
            try:
                UseCaseProfile().with_fact(entry["field"], entry["value"])
            except ValueError as exc:
                raise KnowledgeError(f"{where}: field 'value': {entry['value']!r} is not valid: {exc}") from None
            if not entry["sentences"]:
                raise KnowledgeError(f"{where}: field 'sentences' is empty")
            groups.append((entry["field"], entry["value"], list(entry["sentences"])))
        return cls(float(raw.get("threshold", 0.6)), float(raw.get("margin", 0.04)), groups,
                   list(raw.get("background") or []))


def sentences_of(text: str) -> list[str]:
    return [p for p in Sentences(text or "").texts() if len(p.split()) >= MIN_WORDS][:MAX_SENTENCES]


class SemanticMatcher:
    """Embeds the exemplars once (or reads them from the cache); `matches(text)` gives
    {field: (value, sentence, exemplar, score)}."""

    def __init__(self, exemplars: Exemplars, embedder=None, cache_dir: Path | None = None):
        import numpy as np  # with the embedder: only when meaning is read

        from executor.embeddings import MiniLMEmbedder  # loads the model's weights: only when meaning is read

        self.np = np
        self.exemplars = exemplars
        self.embedder = embedder or MiniLMEmbedder.shared()
        flat = [(f, v, s) for f, v, sentences in exemplars.groups for s in sentences]
        self.keys = [(f, v) for f, v, _ in flat]
        self.texts = [s for _, _, s in flat]
        background = list(exemplars.background)
        vectors = self._cached_vectors(self.texts + background, cache_dir)
        self.vectors = vectors[:len(self.texts)]
        self.background = vectors[len(self.texts):] if background else None

    def _embed(self, texts: list[str]):
        embed_array = getattr(self.embedder, "embed_array", None)
        vectors = embed_array(texts) if embed_array else self.embedder.embed(texts)
        return self.np.asarray(vectors, dtype=self.np.float32).reshape(len(texts), -1)

    def _cached_vectors(self, texts: list[str], cache_dir: Path | None):
        """The texts' vectors from the cache when its key matches, else embedded now and written there."""
        fingerprint = getattr(self.embedder, "fingerprint", None)
        if fingerprint is None:  # an embedder that cannot say what its vectors depend on is never cached
            return self._embed(texts)
        key = hashlib.sha256(json.dumps([fingerprint, texts], ensure_ascii=False).encode("utf-8")).hexdigest()[:24]
        if cache_dir is None:
            from executor.paths import data_dir  # creates the data directory: only when a cache is used

            cache_dir = data_dir() / "cache"
        path = Path(cache_dir) / f"exemplars-{key}.npy"
        try:
            cached = self.np.load(path, allow_pickle=False)
            if cached.shape[0] == len(texts) and cached.dtype == self.np.float32:
                return cached
        except (OSError, ValueError):
            pass  # missing, unreadable or truncated: embed again
        vectors = self._embed(texts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
            with os.fdopen(fd, "wb") as out:
                self.np.save(out, vectors, allow_pickle=False)
            os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
        except OSError:
            pass  # a read-only data directory only costs the embedding time again
        return vectors

    def matches(self, text: str) -> dict[str, tuple[Any, str, str, float]]:
        sentences = sentences_of(text)
        if not sentences:
            return {}
        vectors = self._embed(sentences)
        # Cosine similarities (the embeddings are unit length), sentences x exemplars, in one product.
        scores = (vectors @ self.vectors.T).tolist()
        floors = ((vectors @ self.background.T).max(axis=1).tolist() if self.background is not None
                  else [-1.0] * len(sentences))
        # Best score per (field, value) over all sentence x exemplar pairs, counted only where the
        # sentence is nearer the exemplar than to every background sentence by the margin.
        best: dict[tuple[str, Any], tuple[float, str, str]] = {}
        for si, row in enumerate(scores):
            floor = floors[si] + self.exemplars.margin
            for ei, score in enumerate(row):
                if score < floor:
                    continue
                key = (self.keys[ei][0], _hashable(self.keys[ei][1]))
                if key not in best or score > best[key][0]:
                    best[key] = (score, sentences[si], self.texts[ei])
        out: dict[str, tuple[Any, str, str, float]] = {}
        for (field, value), (score, sentence, exemplar) in best.items():
            if score < self.exemplars.threshold:
                continue
            rivals = [s for (f, v), (s, _, _) in best.items() if f == field and v != value]
            if rivals and score - max(rivals) < self.exemplars.margin:
                continue
            out[field] = (value, sentence, exemplar, score)
        return out


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


class SemanticExtractor:
    """Keyword facts first, then facts by meaning for the fields they left unknown."""

    def __init__(self, keywords: RegexExtractor, matcher: SemanticMatcher):
        self.keywords = keywords
        self.matcher = matcher
        self.knowledge = keywords.knowledge

    def extract(self, text: str) -> UseCaseProfile:
        profile = self.keywords.extract(text)
        for field, (value, sentence, exemplar, score) in self.matcher.matches(text).items():
            if getattr(profile, field).known:
                continue
            evidence = f"{sentence[:200]} (read by meaning: like “{exemplar}”, similarity {score:.2f})"
            profile = profile.with_fact(field, value, "text", evidence)
        return self.keywords.fill_implied(profile)


def default_extractor(knowledge) -> Any:
    """The semantic extractor when the bundled MiniLM loads, else the keyword extractor alone."""
    keywords = RegexExtractor(knowledge)
    try:
        matcher = SemanticMatcher(Exemplars.load(knowledge.root))
    except (RuntimeError, OSError):
        return keywords  # no embedding model installed: keywords still give a complete, offline answer
    return SemanticExtractor(keywords, matcher)
