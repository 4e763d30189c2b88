"""Load what `tunewise serve RUN_DIR|MODEL` names: a run directory, a model folder, a GGUF file, a model id.

    run directory   merged/ (LoRA merged at training), model/ (full fine-tuning), or base + adapter/
                    (LoRA merged in memory; prompt tuning kept as a PEFT model)
    folder          a Hugging Face model folder (an export, for instance)
    file.gguf       loaded through transformers' GGUF reader (dequantized)
    id              a catalog id (the bundled SmolLM2) or a hub id, resolved by executor.models

Lazy imports: torch, transformers, peft and the project modules that pull them in are imported inside the functions
that use them, so importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor.models.registry import SAFE_PAD_TOKEN


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    model_id: str
    source: str


def _placement(device: str):
    from executor.models.loader import choose_placement

    return choose_placement(device, "auto")


def _finish(model, tokenizer, placement, model_id: str, source: str) -> Loaded:
    if tokenizer.pad_token is None:
        # Left padding needs a pad id; <|endoftext|> when the vocabulary has it, else the end-of-sequence token.
        tokenizer.pad_token = SAFE_PAD_TOKEN if SAFE_PAD_TOKEN in tokenizer.get_vocab() else tokenizer.eos_token
    model.to(placement.device)
    model.eval()
    model.config.use_cache = True
    return Loaded(model, tokenizer, model_id, source)


def load_for_serving(target: str | Path, device: str = "auto", model_id: str | None = None) -> Loaded:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from executor.export.run_dir import ExportError, is_run_dir, open_run

    placement = _placement(device)
    dtype = placement.dtype if placement.device == "cuda" else torch.float32
    path = Path(target).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
        model.hf_quantizer = None  # the GGUF loader leaves a quantizer flag on plain float weights
        model.is_quantized = False
        return _finish(model, tokenizer, placement, model_id or path.stem, f"GGUF file {path}")
    if is_run_dir(path):
        run = open_run(path)
        folder = run.merged_dir or run.model_dir
        name = model_id or path.resolve().name
        if folder is not None:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(folder if (folder / "tokenizer_config.json").is_file()
                                                      else run.adapter_dir or folder)
            return _finish(model, tokenizer, placement, name, f"run {path} ({folder.name}/)")
        from peft import PeftModel

        from executor.models.loader import load_causal_lm

        if run.result.get("dry_run"):
            raise ExportError(f"{path}/result.json: a dry run trained a tiny stand-in model and wrote no merged/; "
                              "there is nothing meaningful to serve")
        base = load_causal_lm(run.base_model_name, placement)
        model = PeftModel.from_pretrained(base, run.adapter_dir)
        if run.adapter_type == "LORA":
            model = model.merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(run.adapter_dir)
        return _finish(model, tokenizer, placement, name, f"run {path} (base + adapter/)")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ExportError(f"{path}: neither a run directory (plan.yaml) nor a model folder (config.json)")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
        return _finish(model, tokenizer, placement, model_id or path.resolve().name, f"folder {path}")
    from executor.models.loader import load_causal_lm
    from executor.models.registry import load_tokenizer

    name = str(target)
    model = load_causal_lm(name, placement)
    return _finish(model, load_tokenizer(name), placement, model_id or name, f"model {name}")
