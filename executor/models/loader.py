"""Load base models for training: device and precision, the bundled GGUF, tiny stand-ins for dry runs.

The bundled SmolLM2 GGUF is dequantized once and cached as a normal safetensors folder: loading from
GGUF takes 15-30 s and leaves the model flagged as quantized (the Trainer refuses to train it and
`save_pretrained` refuses to save it), a cached folder loads in well under a second.

Lazy imports: torch, transformers and the project modules that pull them in are imported inside the functions that
use them, so importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from executor.models.registry import BUNDLED_GGUF, ModelError, ModelSpec, _cache_dir, load_tokenizer, resolve


@dataclass(frozen=True)
class Placement:
    device: str  # "cuda" | "cpu"
    dtype_name: str  # "bfloat16" | "float16" | "float32"

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.dtype_name)


def choose_placement(device: str = "auto", precision: str = "auto") -> Placement:
    """CUDA with bf16 when there is a GPU, else CPU with fp32; either can be overridden by the plan."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("the plan asks for device 'cuda' but no CUDA GPU is visible; use device: auto or cpu")
    if precision == "auto":
        precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    names = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
    return Placement(device, names[precision])


def bundled_model_dir(spec: ModelSpec | None = None) -> str:
    """The bundled model as a plain Hugging Face folder (dequantized from the GGUF on first use)."""
    spec = spec or resolve(None)
    cached = _cache_dir(spec, "model")
    if (cached / "config.json").exists() and any(cached.glob("*.safetensors")):
        return str(cached)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(spec.location, gguf_file=BUNDLED_GGUF)
    # The GGUF loader leaves a quantizer attached although the weights are plain floats now.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Write beside the cache and rename: a crash mid-write never leaves a half-written model behind.
    tmp = cached.with_name(f"{cached.name}.partial-{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    load_tokenizer(spec.id).save_pretrained(tmp)
    try:
        os.replace(tmp, cached)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return str(cached)


def model_location(name: str | None) -> str:
    """A path or hub id that `from_pretrained` can open."""
    spec = resolve(name)
    if spec.source == "api":
        raise ModelError(f"{spec.id} is a hosted API model: it is tuned with technique 'api', not locally")
    if spec.source == "bundled":
        return bundled_model_dir(spec)
    return spec.location


def load_causal_lm(name: str | None, placement: Placement, quantization=None, attn_implementation: str = "sdpa"):
    """The base model on its device. `quantization` is a plan QuantizationSpec (QLoRA) or None."""
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": placement.dtype, "attn_implementation": attn_implementation}
    if quantization is not None:
        import torch
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=quantization.bits == 4,
            load_in_8bit=quantization.bits == 8,
            bnb_4bit_quant_type=quantization.quant_type,
            bnb_4bit_use_double_quant=quantization.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, quantization.compute_dtype)
            if placement.device == "cuda" else torch.float32,
        )
        # The current GPU: under a multi-process launch each rank has made its own GPU current (distributed.main)
        kwargs["device_map"] = {"": torch.cuda.current_device()} if placement.device == "cuda" else {"": "cpu"}
    location = model_location(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except OSError as exc:
        raise ModelError(f"cannot load {location!r}: {exc}; without a network use the bundled default or a local "
                         "model folder") from None
    if quantization is None:
        model.to(placement.device)
    from executor.models.end_of_turn import set_generation_stop

    try:
        tokenizer = load_tokenizer(name)
    except (OSError, ValueError, ModelError):  # a weights-only local folder: its own config decides, as before
        return model
    set_generation_stop(model, tokenizer)  # whatever is saved from it stops at the end of turn
    return model


def tiny_llama(tokenizer, hidden: int = 64, layers: int = 2, seed: int = 0):
    """A tiny random Llama with the tokenizer's vocabulary: for tests and dry runs (3 M parameters)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)
