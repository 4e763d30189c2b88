"""Export a run's weights: the PEFT adapter as is, LoRA merged into the 16-bit base, or a GGUF file.

    adapter  adapter/ copied, its base_model_name_or_path pointed at the hub id (not this machine's cache)
    merged   merged/ when training wrote it, else LoRA merged now into a 16-bit copy of the base (a QLoRA
             adapter is merged into the unquantized base, never into 4-bit weights); full fine-tuning: model/
    gguf     the merged folder written as GGUF (f16 or q8_0) + an Ollama Modelfile

Each export lands in its own folder with export.json saying what it holds and where it came from.

Lazy imports: transformers, torch, peft and the project modules that pull them in are imported inside the functions
that use them, so importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from executor.export.run_dir import ExportError, Run, open_run

FORMATS = ("adapter", "merged", "gguf")


def default_out(run: Run, fmt: str) -> Path:
    return run.path / f"export-{fmt}"


def _prepare_out(out: Path, run: Run) -> Path:
    protected = [run.path / name for name in ("adapter", "model", "merged", "checkpoints")] + [run.path]
    resolved = out.resolve()
    if any(resolved == p.resolve() or p.resolve() in resolved.parents and p != run.path for p in protected):
        raise ExportError(f"--out {out}: would overwrite the run's own files; choose another folder")
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)  # an export folder is ours to replace; a stale file must not survive a re-export
    out.mkdir(parents=True, exist_ok=True)
    return out


def _portable_base(run: Run) -> str:
    """The base model as someone on another machine would name it: the catalog's hub id when there is one."""
    from executor.models.registry import ModelError, resolve

    try:
        spec = resolve(run.base_model_name)
    except ModelError:
        return run.base_model_name
    if spec.catalog and spec.catalog.get("hf_id"):
        return spec.catalog["hf_id"]
    return spec.location


def _record(out: Path, run: Run, fmt: str, **extra: Any) -> dict[str, Any]:
    info = {"format": fmt, "run": str(run.path.resolve()), "technique": run.plan.technique,
            "base_model": _portable_base(run), "dry_run": bool(run.result.get("dry_run")), **extra}
    (out / "export.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def export_adapter(run: Run, out: Path) -> dict[str, Any]:
    if run.adapter_dir is None:
        raise ExportError(f"{run.path}: technique {run.plan.technique!r} trained every weight (model/), there is no "
                          "adapter; export --format merged or gguf")
    out = _prepare_out(out, run)
    shutil.copytree(run.adapter_dir, out, dirs_exist_ok=True)
    config_file = out / "adapter_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    trained_on = config.get("base_model_name_or_path")
    config["base_model_name_or_path"] = _portable_base(run)
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return _record(out, run, "adapter", peft_type=config.get("peft_type"), trained_on=trained_on,
                   load_with="PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), folder)")


def _load_tokenizer(run: Run, folder: Path | None):
    from transformers import AutoTokenizer

    from executor.models.end_of_turn import with_end_of_turn

    if folder is not None and (folder / "tokenizer_config.json").is_file():
        return with_end_of_turn(AutoTokenizer.from_pretrained(folder))
    from executor.models.registry import load_tokenizer

    return load_tokenizer(run.base_model_name)


def merge_adapter(run: Run, out: Path, base: str | Path | None = None, dtype: str = "bfloat16") -> Path:
    """LoRA merged into a 16-bit copy of the base, saved to `out` with the tokenizer and chat template.
    `base`: a model folder to merge into instead of the plan's base model (a run trained on a stand-in)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if run.adapter_type != "LORA":
        raise ExportError(f"{run.adapter_dir}/adapter_config.json: peft_type {run.adapter_type!r} cannot be merged "
                          "into the weights (only LoRA can); export --format adapter, or serve the run directly")
    if base is not None:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    else:
        from executor.models.loader import Placement, load_causal_lm

        # Never the 4-bit base a QLoRA run trained on: merging into quantized weights degrades the model.
        model = load_causal_lm(run.base_model_name, Placement("cpu", "float32"))
    merged = PeftModel.from_pretrained(model, run.adapter_dir).merge_and_unload()
    merged = merged.to(getattr(torch, dtype))
    merged.config.use_cache = True
    tokenizer = _load_tokenizer(run, run.adapter_dir)
    from executor.models.end_of_turn import set_generation_stop

    set_generation_stop(merged, tokenizer)
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def export_merged(run: Run, out: Path, base: str | Path | None = None) -> dict[str, Any]:
    out = _prepare_out(out, run)
    if base is None and (run.merged_dir or run.model_dir):
        source = run.merged_dir or run.model_dir
        shutil.copytree(source, out, dirs_exist_ok=True)
        if not (out / "tokenizer_config.json").is_file():
            _load_tokenizer(run, None).save_pretrained(out)
        how = f"copied from {source.name}/"
    elif run.adapter_dir is not None:
        merge_adapter(run, out, base)
        how = f"adapter merged into {base or run.base_model_name}"
    else:
        raise ExportError(f"{run.path}: no merged/, model/ or adapter/ to export")
    if not any(out.glob("*.safetensors")):
        raise ExportError(f"{out}: the merged model has no safetensors weights ({how})")
    return _record(out, run, "merged", how=how, load_with="AutoModelForCausalLM.from_pretrained(folder)")


def export_gguf(run: Run, out: Path, file_type: str = "q8_0", base: str | Path | None = None) -> dict[str, Any]:
    from executor.export.gguf_file import write_gguf
    from executor.export.modelfile import write_modelfile

    out = _prepare_out(out, run)
    with tempfile.TemporaryDirectory(prefix="tunewise-merge-") as tmp:
        source = None if base is not None else (run.merged_dir or run.model_dir)
        if source is None:
            source = merge_adapter(run, Path(tmp) / "merged", base)
        name = run.path.resolve().name
        gguf_name = f"{name}-{file_type}.gguf"
        family = _base_family(run)
        summary = write_gguf(source, out / gguf_name, file_type, name=name,
                             pre_tokenizer="smollm" if family == "smollm" else None)
        write_modelfile(out, gguf_name, _load_tokenizer(run, source), _ollama_name(name))
    return _record(out, run, "gguf", file=gguf_name, file_type=file_type, architecture=summary.architecture,
                   tensors=summary.tensors, bytes=summary.bytes,
                   load_with=f"llama.cpp / `ollama create NAME -f {out / 'Modelfile'}`")


def _base_family(run: Run) -> str | None:
    from executor.models.registry import ModelError, resolve

    try:
        return (resolve(run.base_model_name).catalog or {}).get("family")
    except ModelError:
        return None


def _ollama_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower()).strip("-.")
    return cleaned or "tunewise-model"


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None, *, file_type: str = "q8_0",
               base: str | Path | None = None) -> dict[str, Any]:
    """`tunewise export RUN_DIR --format adapter|merged|gguf [--out DIR]` as a function."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    run = open_run(run_dir)
    target = Path(out) if out else default_out(run, fmt)
    if fmt == "adapter":
        info = export_adapter(run, target)
    elif fmt == "merged":
        info = export_merged(run, target, base)
    else:
        info = export_gguf(run, target, file_type, base)
    info["out"] = str(target)
    return info
