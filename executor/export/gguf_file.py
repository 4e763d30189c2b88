"""Write a Hugging Face folder (merged model + tokenizer) as one GGUF file for llama.cpp and Ollama.

Tensors and metadata use llama.cpp's names (`token_embd`, `blk.N.attn_q`, `llama.context_length`, ...),
taken from the `gguf` package's own tables so they stay in step with llama.cpp. Two things llama.cpp's
converter does that a plain rename would miss:

- For the `llama` architecture (Llama, Mistral, SmolLM2) the q and k projections are stored with their
  rotary halves interleaved (`permute` below); llama.cpp's rope kernel expects that layout, and
  transformers' GGUF loader undoes it. Qwen2 uses the other rope layout and is written as is.
- Norm weights and other 1-D tensors stay float32 in every file type; only matrices are halved or quantized.

The tokenizer goes in as llama.cpp's `gpt2` (byte-level BPE) model: tokens, token types, merges, the
special token ids and the chat template. SentencePiece-style tokenizers (Llama 2, Mistral v0.1-0.3) are
refused with a pointer to llama.cpp's converter rather than written half right.

Lazy imports: safetensors, gguf, transformers are imported inside the functions that use them, so importing this
module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# HF model_type -> (GGUF architecture, whether q/k get llama.cpp's rotary permutation)
ARCHITECTURES = {
    "llama": ("llama", True),
    "mistral": ("llama", True),  # llama.cpp runs Mistral as the llama architecture
    "qwen2": ("qwen2", False),
}
FILE_TYPES = ("f16", "q8_0", "f32")


class GGUFExportError(ValueError):
    """A model or tokenizer that cannot be written as GGUF; the message names the file and field."""


@dataclass
class GGUFSummary:
    path: Path
    architecture: str
    file_type: str
    tensors: int
    vocab_size: int
    bytes: int


def permute_rotary(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute`: interleave the two rotary halves of every head."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _read_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not path.is_file():
        raise GGUFExportError(f"{path}: missing; GGUF export needs a Hugging Face model folder (merged weights)")
    return json.loads(path.read_text(encoding="utf-8"))


def _state_dict(model_dir: Path):
    """(name, float32 array) for every tensor in the folder's safetensors files, shards included."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise GGUFExportError(f"{model_dir}: no *.safetensors files (save the model with safe_serialization=True)")
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                yield name, handle.get_tensor(name).float().numpy()


def _rope_theta(config: dict, where: Path) -> float:
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    kind = params.get("rope_type") or params.get("type") or "default"
    if kind != "default":
        raise GGUFExportError(f"{where}: rope_type {kind!r} (rope scaling) is not written by this exporter; "
                              "use llama.cpp's convert_hf_to_gguf.py for this model")
    theta = config.get("rope_theta", params.get("rope_theta"))
    if theta is None:
        raise GGUFExportError(f"{where}: no rope_theta in config.json or its rope_parameters")
    return float(theta)


def _tensor_type(name: str, array: np.ndarray, file_type: str):
    from gguf import GGMLQuantizationType

    if array.ndim < 2 or file_type == "f32":
        return GGMLQuantizationType.F32
    if file_type == "q8_0" and array.shape[-1] % 32 == 0:  # Q8_0 packs rows in blocks of 32
        return GGMLQuantizationType.Q8_0
    return GGMLQuantizationType.F16


def _pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's name for the pre-tokenizer (`tokenizer.ggml.pre`), recognized from its structure.
    llama.cpp identifies it by hashing a tokenization; these are the families that hashing yields."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre])
    kinds = [step.get("type") for step in steps]
    pattern = json.dumps(pre)
    if "Digits" in kinds and "ByteLevel" in kinds:
        return "smollm"  # individual digits, then byte-level: SmolLM / SmolLM2
    if r"\\p{N}{1,3}" in pattern:
        return "llama-bpe"  # Llama 3's split pattern
    if r"\\p{N}" in pattern and "Split" in kinds:
        return "qwen2"
    return "gpt2"


def _tokenizer_metadata(writer, model_dir: Path, vocab_size: int, pre_tokenizer: str | None) -> int:
    """Add llama.cpp's tokenizer keys; returns the number of tokens written."""
    from gguf import TokenType
    from transformers import AutoTokenizer

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise GGUFExportError(f"{path}: missing; GGUF export needs the fast tokenizer saved with the model")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model", {})
    byte_level = (data.get("decoder") or {}).get("type") == "ByteLevel"
    if model.get("type") != "BPE" or model.get("byte_fallback") or not byte_level:
        raise GGUFExportError(f"{path}: model.type {model.get('type')!r} (byte_fallback={model.get('byte_fallback')}) "
                              "is not a byte-level BPE tokenizer; this exporter writes llama.cpp's 'gpt2' tokenizer "
                              "only. Use llama.cpp's convert_hf_to_gguf.py for SentencePiece-style tokenizers")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = tokenizer.get_vocab()
    by_id = {index: token for token, index in vocab.items()}
    added = {token.content: token for token in tokenizer.added_tokens_decoder.values()}
    count = max(vocab_size, max(by_id) + 1)
    tokens, types = [], []
    for index in range(count):
        token = by_id.get(index)
        if token is None:  # embedding rows past the tokenizer: llama.cpp pads them the same way
            tokens.append(f"[PAD{index}]")
            types.append(TokenType.UNUSED)
        elif token in added:
            tokens.append(token)
            types.append(TokenType.CONTROL if added[token].special else TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(TokenType.NORMAL)
    merges = model.get("merges") or []
    merges = [" ".join(m) if isinstance(m, list) else m for m in merges]

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer or _pre_tokenizer_name(data))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for kind in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{kind}_token_id", None)
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(int(token_id))
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    template = tokenizer.chat_template
    if isinstance(template, str) and template:
        writer.add_chat_template(template)
    return len(tokens)


def write_gguf(model_dir: str | Path, out_path: str | Path, file_type: str = "f16", name: str | None = None,
               pre_tokenizer: str | None = None) -> GGUFSummary:
    """Write `model_dir` (a Hugging Face folder: config.json, safetensors, tokenizer) to `out_path`.
    `pre_tokenizer`: llama.cpp's pre-tokenizer name when the caller knows the model family (a tokenizer
    re-saved by transformers can lose the structure `_pre_tokenizer_name` recognizes)."""
    from gguf import GGML_QUANT_VERSION, MODEL_ARCH_NAMES, GGUFWriter, LlamaFileType, get_tensor_name_map, quants

    model_dir, out_path = Path(model_dir), Path(out_path)
    if file_type not in FILE_TYPES:
        raise GGUFExportError(f"file type {file_type!r}: choose one of {', '.join(FILE_TYPES)}")
    config = _read_config(model_dir)
    where = model_dir / "config.json"
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise GGUFExportError(f"{where}: model_type {model_type!r} is not supported for GGUF export (supported: "
                              f"{', '.join(ARCHITECTURES)})")
    arch_name, permute = ARCHITECTURES[model_type]
    arch = next(key for key, value in MODEL_ARCH_NAMES.items() if value == arch_name)
    n_layers = int(config["num_hidden_layers"])
    n_head = int(config["num_attention_heads"])
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // n_head)
    vocab_size = int(config["vocab_size"])
    tied = bool(config.get("tie_word_embeddings", False))
    rope_theta = _rope_theta(config, where)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    writer = GGUFWriter(str(partial), arch_name)
    writer.add_name(name or model_dir.name)
    writer.add_context_length(int(config.get("max_position_embeddings") or 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_freq_base(rope_theta)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(vocab_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_file_type({"f16": LlamaFileType.MOSTLY_F16, "q8_0": LlamaFileType.MOSTLY_Q8_0,
                          "f32": LlamaFileType.ALL_F32}[file_type])
    writer.add_quantization_version(GGML_QUANT_VERSION)
    tokens = _tokenizer_metadata(writer, model_dir, vocab_size, pre_tokenizer)

    names = get_tensor_name_map(arch, n_layers)
    count = 0
    for hf_name, array in _state_dict(model_dir):
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed from rope_theta at load time
        if tied and hf_name == "lm_head.weight":
            continue  # tied: llama.cpp reuses token_embd when there is no output tensor
        base, dot, suffix = hf_name.rpartition(".")
        gguf_name = names.get_name(base)
        if gguf_name is None:
            raise GGUFExportError(f"{model_dir}: tensor {hf_name!r} has no llama.cpp name for {arch_name}")
        if permute and gguf_name.endswith(".attn_q"):
            array = permute_rotary(array, n_head, n_head)
        elif permute and gguf_name.endswith(".attn_k"):
            array = permute_rotary(array, n_head, n_head_kv)
        qtype = _tensor_type(gguf_name, array, file_type)
        data = quants.quantize(np.ascontiguousarray(array), qtype)
        writer.add_tensor(f"{gguf_name}{dot}{suffix}", data, raw_dtype=qtype)
        count += 1
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    partial.replace(out_path)  # never leave a half-written file under the final name
    return GGUFSummary(out_path, arch_name, file_type, count, tokens, out_path.stat().st_size)
