"""The torch-free MiniLM encoder (executor/embeddings.py) against the transformers pipeline, and what it loads.

The reference is the pipeline the encoder replaced: transformers' BertModel over the same folder, mean pooling
over real tokens, L2 normalization. Matching it to ~1e-6 is what keeps Chroma collections built by the older
torch path valid without a rebuild.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from executor.embeddings import MiniLMEmbedder, minilm_dir

ROOT = Path(__file__).resolve().parent.parent

TEXTS = [
    "LoRA adapters on a frozen base",
    "Retrieval adds 50-200 ms of latency",
    "customer support for a bank, 12,000 past messages labeled with one of 77 intents",
    "",
    "a",
    "Café naïve résumé — 日本語のテキスト 🙂 and   odd\tspacing\n",
    # Longer than MiniLM's 256 word pieces: both sides must cut at the same place.
    " ".join(f"sentence {i} says the adapter rank matters less than the data" for i in range(60)),
    "Mixtral NF4 QLoRA DPO GGUF",
]


@pytest.fixture(scope="module")
def embedder():
    return MiniLMEmbedder.shared()


@pytest.mark.slow
def test_same_vectors_as_the_transformers_pipeline(embedder):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    model = transformers.AutoModel.from_pretrained(minilm_dir()).eval()
    with torch.inference_mode():
        batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        reference = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()

    ours = embedder.embed_array(TEXTS)
    assert ours.shape == reference.shape == (len(TEXTS), 384)
    cosine = (ours * reference).sum(1)
    assert cosine.min() > 1 - 1e-5, cosine
    assert np.abs(ours - reference).max() < 1e-5


def test_same_word_pieces_as_the_transformers_tokenizer(embedder):
    """The `tokenizers` library with the folder's tokenizer.json cuts text as BertTokenizerFast does."""
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    for text in TEXTS:
        assert embedder.tokenizer.encode(text).ids == tokenizer(text, truncation=True, max_length=256)["input_ids"]


def test_a_vector_does_not_depend_on_its_batch(embedder):
    """Rows are sorted by length and padded per batch; padding must not leak into a sentence's vector."""
    alone = np.stack([embedder.embed_array([t])[0] for t in TEXTS])
    together = embedder.embed_array(TEXTS)
    small_batches = embedder.embed_array(TEXTS, batch_size=2)
    assert np.abs(alone - together).max() < 1e-5
    assert np.abs(alone - small_batches).max() < 1e-5


def test_vectors_are_unit_length_and_in_input_order(embedder):
    vectors = embedder.embed_array(["a recipe for soup", "a GPU with little memory", "a recipe for soup"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors[0] - vectors[2]).max() < 1e-6
    assert float(vectors[0] @ vectors[1]) < 0.5
    assert embedder.embed([]) == [] and embedder.embed_array([]).shape == (0, 384)


def test_the_fingerprint_names_encoder_and_model(embedder):
    assert embedder.fingerprint.startswith("numpy-bert-")
    assert "model.safetensors:" in embedder.fingerprint


def test_embedding_imports_neither_torch_nor_chromadb():
    """The advisor's meaning layer runs on every recommendation: it must not pay for torch or Chroma."""
    code = ("import sys; from executor.embeddings import MiniLMEmbedder; MiniLMEmbedder().embed(['a GPU']); "
            "print(sorted(m for m in ('torch', 'transformers', 'chromadb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_chroma_embedding_function_is_registered_on_first_use():
    code = ("import sys; import executor.embeddings as e; assert 'chromadb' not in sys.modules; "
            "f = e.TunewiseMiniLM(); from chromadb.utils.embedding_functions import known_embedding_functions; "
            "print(known_embedding_functions['tunewise-minilm'] is type(f), len(f(['x'])[0]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "384"]


def test_safetensors_are_read_as_float32_views(tmp_path):
    import json
    import struct

    from executor.embeddings import read_safetensors

    weight = np.arange(6, dtype="<f4").reshape(2, 3)
    ids = np.arange(4, dtype="<i8")
    header = json.dumps({
        "__metadata__": {"format": "pt"},
        "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "ids": {"dtype": "I64", "shape": [4], "data_offsets": [24, 56]},
    }).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + weight.tobytes() + ids.tobytes())
    tensors = read_safetensors(path)
    assert set(tensors) == {"w"}  # int64 tensors (BERT's position_ids) are not needed and left out
    assert np.array_equal(tensors["w"], weight)

    path.write_bytes(struct.pack("<Q", 50) + b"{not json")
    with pytest.raises(RuntimeError, match="model.safetensors: not a safetensors file"):
        read_safetensors(path)


def test_blas_threads_one_for_small_jobs_and_busy_machines(monkeypatch):
    import executor.embeddings as embeddings

    monkeypatch.setattr(embeddings.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(embeddings.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert embeddings.blas_threads(200) == 1  # a few sentences: one thread whatever the machine
    assert embeddings.blas_threads(embeddings.PARALLEL_TOKENS) == 16  # a big job on an idle 16-core host
    monkeypatch.setattr(embeddings.os, "getloadavg", lambda: (5.5, 5.0, 5.0))
    assert embeddings.blas_threads(embeddings.PARALLEL_TOKENS) == 10  # the cores the load leaves free
    monkeypatch.setattr(embeddings.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(embeddings.os, "getloadavg", lambda: (7.0, 7.0, 7.0))
    assert embeddings.blas_threads(10**6) == 1  # the busy 2-core machine: never more than one


def test_several_blas_threads_give_the_same_vectors(embedder, monkeypatch):
    import executor.embeddings as embeddings

    texts = TEXTS * 4
    one = embedder.embed_array(texts)
    monkeypatch.setattr(embeddings, "blas_threads", lambda tokens: 2)
    assert np.abs(embedder.embed_array(texts) - one).max() < 1e-5


def test_evaluation_retriever_is_an_exact_cosine_top_k_without_chroma():
    """The evaluation's RAG baseline searches its corpus exactly (brute force), nearest first, and builds no Chroma
    collection, so it also runs on a GPU host without Chroma's native bindings."""
    code = (
        "import sys, numpy as np\n"
        "from executor.evaluate.prompts import Retriever\n"
        "from executor.embeddings import MiniLMEmbedder\n"
        "passages = ['The card arrived damaged and does not work.', 'How do I top up with a bank transfer?',\n"
        "            'Exchange rates for euros and dollars', 'My PIN is blocked after three tries.',\n"
        "            'A refund for a duplicate card payment']\n"
        "r = Retriever(passages)\n"
        "queries = ['my pin got blocked', 'currency exchange rate', 'card broken']\n"
        "found = r.search_many(queries, 2)\n"
        "e = MiniLMEmbedder.shared()\n"
        "scores = e.embed_array(queries) @ e.embed_array(passages).T\n"
        "expected = [[passages[i] for i in np.argsort(-row, kind='stable')[:2]] for row in scores]\n"
        "assert found == expected, (found, expected)\n"
        "assert [f[0] for f in found] == [passages[3], passages[2], passages[0]], found\n"
        "assert r.search('card broken', 9) == r.search_many(['card broken'], 9)[0] and len(r.search('x', 9)) == 5\n"
        "assert Retriever([]).search('anything', 3) == []\n"
        "assert 'chromadb' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
