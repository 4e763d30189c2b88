"""Supervised fine-tuning recipe: full, LoRA, QLoRA, prompt / prefix tuning.

Supports: completion-only loss on chat data (assistant tokens only, mask derived from the model's own
template), plain-text rows (continued pre-training, loss on every token), gradient accumulation,
gradient checkpointing (off on CPU unless the plan says on), evaluation on the validation split with
early stopping and the best checkpoint kept, resume from the last checkpoint, TensorBoard logging.
Refuses up front: preference rows (use technique dpo/rlhf), QLoRA without bitsandbytes.
On a GPU, full / LoRA / QLoRA take the fast path (executor/train/speed.py: padding-free packed steps,
varlen attention, micro-batches sized by memory, liger-kernel when installed, a loss that never holds all
the logits); each part has a switch (plan `training.speed`, env TUNEWISE_SPEED_OFF). On a CPU batches are
padded unless the plan says `packing: on`.

    setup -> load tokenizer + data -> build model (+ adapter) -> fit -> save adapter/model -> merge

Lazy imports: peft, torch, transformers and the project modules that pull them in are imported inside the functions
that use them, so importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path
from typing import Any

from executor.models.end_of_turn import set_generation_stop
from executor.models.loader import load_causal_lm
from executor.models.registry import load_tokenizer
from executor.plan import TECHNIQUES, uses_lora
from executor.train.common import RunContext, resume_point, standard_callbacks, trainer_arguments
from executor.train.data import PadCollator, find_splits, read_split, sft_features
from executor.train.phases import PhaseClock


def load_rows(ctx: RunContext) -> dict[str, list[dict[str, Any]]]:
    splits = find_splits(ctx.data_dir)
    rows = {name: read_split(path) for name, path in splits.items() if name in ("train", "validation")}
    if ctx.dry_run:  # a few rows are enough to find mistakes
        rows = {name: split[:32] for name, split in rows.items()}
    cap = ctx.plan.training.eval_max_rows
    if cap and len(rows.get("validation", [])) > cap:
        # Evaluating ~10 times per run on thousands of rows would cost more than the training on a CPU;
        # an evenly spaced subset keeps the estimate of validation loss while staying deterministic.
        step = len(rows["validation"]) / cap
        rows["validation"] = [rows["validation"][int(i * step)] for i in range(cap)]
    return rows


def peft_config(ctx: RunContext, tokenizer):
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, PromptTuningInit, TaskType

    t = ctx.plan.training
    if uses_lora(ctx.plan.technique, t.lora) and t.lora is not None:
        return LoraConfig(r=t.lora.r, lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout,
                          target_modules=t.lora.target_modules, task_type=TaskType.CAUSAL_LM)
    if TECHNIQUES[ctx.plan.technique].prompt_adapter:
        pt = t.prompt_tuning
        if pt.kind == "prefix":
            return PrefixTuningConfig(num_virtual_tokens=pt.num_virtual_tokens, task_type=TaskType.CAUSAL_LM)
        if pt.init_text:
            return PromptTuningConfig(num_virtual_tokens=pt.num_virtual_tokens, task_type=TaskType.CAUSAL_LM,
                                      prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=pt.init_text,
                                      tokenizer_name_or_path=tokenizer.name_or_path)
        return PromptTuningConfig(num_virtual_tokens=pt.num_virtual_tokens, task_type=TaskType.CAUSAL_LM,
                                  prompt_tuning_init=PromptTuningInit.RANDOM)
    return None


def build_model(ctx: RunContext, tokenizer):
    """The base model (or the stand-in for dry runs and tests), with the plan's adapter attached."""
    plan = ctx.plan
    quantization = plan.training.quantization if TECHNIQUES[plan.technique].quantized else None
    if ctx.model_factory is not None:
        model = ctx.model_factory(tokenizer)
        set_generation_stop(model, tokenizer)
        if quantization is not None:
            model = _quantize_tiny(model, quantization)
        model.to(ctx.placement.device if quantization is None else "cpu")
    else:
        model = load_causal_lm(plan.base_model.id if plan.base_model.source != "local" else plan.base_model.path,
                               ctx.placement, quantization)
    model.config.use_cache = False  # the KV cache only costs memory during training
    if quantization is not None:
        # Not peft's prepare_model_for_kbit_training: it casts every 16-bit weight left (embeddings, LM head, norms)
        # to fp32, which doubles what QLoRA keeps unquantized (an 8B model's embeddings and head: 1.6 GB instead of
        # 0.8 at a 49k vocabulary, 4.2 instead of 2.1 at 128k) and turns the residual stream and every saved
        # activation fp32. The base stays frozen in the placement's dtype, as the bf16 LoRA path keeps it.
        for param in model.parameters():
            param.requires_grad_(False)
    config = peft_config(ctx, tokenizer)
    if config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, config)
    return model


def _quantize_tiny(model, quantization):
    """Quantize an in-memory stand-in the way from_pretrained would (save, reload with bitsandbytes)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return AutoModelForCausalLM.from_pretrained(tmp, quantization_config=BitsAndBytesConfig(
            load_in_4bit=quantization.bits == 4, load_in_8bit=quantization.bits == 8,
            bnb_4bit_quant_type=quantization.quant_type, bnb_4bit_use_double_quant=quantization.double_quant,
            bnb_4bit_compute_dtype=torch.float32), device_map={"": "cpu"})


def train_sft(ctx: RunContext) -> dict[str, Any]:
    plan, t = ctx.plan, ctx.plan.training
    clock = PhaseClock()
    tokenizer = load_tokenizer(_tokenizer_name(plan))
    rows = load_rows(ctx)
    features = {}
    dropped = 0
    for name, split in rows.items():
        features[name], lost = sft_features(tokenizer, split, t.max_seq_length)
        dropped += lost
    if dropped:
        ctx.notes.append(f"{dropped} rows had no assistant token within max_seq_length={t.max_seq_length} and "
                         "were skipped")
    if not features["train"]:
        raise ValueError("no trainable rows: every row lost its assistant tokens to truncation")
    clock.mark("read_and_tokenize")
    model = build_model(ctx, tokenizer)
    clock.mark("load_model")
    trainer, stop, speedups = make_trainer(ctx, model, tokenizer, features["train"], features.get("validation"))
    clock.mark("make_trainer")
    with run_context(model, speedups):
        output = trainer.train(resume_from_checkpoint=resume_point(ctx))
    finish_model(trainer.model, speedups)
    clock.mark("train")
    if stop is not None and stop.triggered:  # "crashed": leave the checkpoints, write nothing final
        return {"stopped_at_step": trainer.state.global_step}
    result = save_outputs(ctx, trainer, tokenizer, output, rows)
    clock.mark("save_and_merge")
    if speedups.packed:
        result["speed"] = speedups.summary()
    result["phase_seconds"] = clock.seconds
    return result


def make_trainer(ctx: RunContext, model, tokenizer, train_features: list[dict], eval_features: list[dict] | None,
                 **overrides):
    """The Trainer for this plan: the packed fast path (executor/train/speed.py) when it applies, else the
    padded one. `overrides` go to TrainingArguments (the speed benchmark turns checkpoint saving off).
    Returns (trainer, stop-after callback or None, the speedups in force)."""
    from transformers import Trainer, TrainingArguments

    from executor.train.speed import PackedStepCollator, PackedStepTrainer, prepare_model, resolve_speedups

    t = ctx.plan.training
    has_validation = bool(eval_features)
    callbacks, stop = standard_callbacks(ctx, has_validation)
    rows_per_step = t.per_device_batch_size * t.gradient_accumulation_steps
    steps = ctx.max_steps or math.ceil(math.ceil(len(train_features) / rows_per_step) * t.epochs)
    speedups = resolve_speedups(ctx.plan, ctx.placement.device, steps=steps)
    if ctx.dry_run:
        speedups.compile = False  # a 3-step check would spend longer compiling than training
    ctx.notes.extend(speedups.notes)
    if not speedups.packed:
        args = TrainingArguments(**trainer_arguments(ctx, len(train_features), has_validation, **overrides))
        trainer = Trainer(model=model, args=args, train_dataset=train_features, eval_dataset=eval_features,
                          data_collator=collator(ctx, tokenizer), processing_class=tokenizer, callbacks=callbacks)
        return trainer, stop, speedups
    # One optimizer step = the same rows as per_device_batch_size x gradient_accumulation_steps on the padded
    # path, packed; the micro-batches inside the step are sized by tokens, not rows.
    arguments = trainer_arguments(ctx, len(train_features), has_validation, per_device_train_batch_size=rows_per_step,
                                  per_device_eval_batch_size=rows_per_step, gradient_accumulation_steps=1,
                                  include_num_input_tokens_seen="no", **overrides)
    if ctx.placement.device == "cuda":
        arguments["accelerator_config"] = {"non_blocking": True}  # pinned batches copied while the GPU works
    args = TrainingArguments(**arguments)
    low_precision = ctx.placement.dtype_name in ("bfloat16", "float16")
    needs_autocast = prepare_model(model, speedups, ctx.notes, ctx.placement.dtype) and low_precision
    if speedups.auto_micro_batch:
        from executor.train.speed import auto_micro_batch_tokens

        speedups.micro_batch_tokens = auto_micro_batch_tokens(model, t.max_seq_length, args.gradient_checkpointing)
    autocast = ctx.placement.dtype if needs_autocast else None
    trainer = PackedStepTrainer(model=model, args=args, train_dataset=train_features, eval_dataset=eval_features,
                                data_collator=PackedStepCollator(speedups.micro_batch_tokens),
                                processing_class=tokenizer, callbacks=callbacks, speedups=speedups,
                                autocast_dtype=autocast)
    return trainer, stop, speedups


def run_context(model, speedups):
    """What must hold only while training runs (liger's RoPE replaces a function shared by the process)."""
    if speedups.fused_kernels and not speedups.compile:  # compiled layers get inductor's RoPE
        from executor.train.fused import liger_rope

        return liger_rope(model)
    return contextlib.nullcontext()


def finish_model(model, speedups) -> None:
    if speedups.packed:
        from executor.train.speed import restore_model

        restore_model(model)


def collator(ctx: RunContext, tokenizer):
    """The padded path's collator (prompt tuning, DPO's reference, CPUs unless the plan asks for packing):
    right-padded per batch; padding never counts in the loss."""
    return PadCollator(tokenizer.pad_token_id)


def _tokenizer_name(plan) -> str | None:
    return plan.base_model.path if plan.base_model.source == "local" else plan.base_model.id


def save_outputs(ctx: RunContext, trainer, tokenizer, output, rows) -> dict[str, Any]:
    plan = ctx.plan
    adapter = TECHNIQUES[plan.technique].prompt_adapter or uses_lora(plan.technique, plan.training.lora)
    target = ctx.run_dir / ("adapter" if adapter else "model")
    sharded = getattr(trainer, "is_fsdp_enabled", False)
    if sharded:
        # The parameters are sharded: gathering the full state dict is a collective every rank joins, and only
        # rank 0 writes (save_pretrained on the wrapped model fails on the sharded storage; seen on the H200).
        trainer.save_model(str(target))
    if not trainer.is_world_process_zero():
        return {"steps": trainer.state.global_step}
    if not sharded:
        set_generation_stop(trainer.model, tokenizer)
        trainer.model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    result: dict[str, Any] = {
        "steps": trainer.state.global_step,
        "train_rows": len(rows["train"]),
        "validation_rows": len(rows.get("validation", [])),
        "train_runtime_s": round(output.metrics.get("train_runtime", 0.0), 2),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "weights": target.name,
    }
    if uses_lora(plan.technique, plan.training.lora):
        result["merged"] = merge_lora(ctx, target, tokenizer)
    return result


def merge_lora(ctx: RunContext, adapter_dir: Path, tokenizer) -> str:
    """Merge the adapter into a 16-bit copy of the base (never into 4-bit weights: merging into a
    quantized base degrades the model), saved as a plain Hugging Face folder."""
    import torch
    from peft import PeftModel

    from executor.models.loader import Placement

    if ctx.model_factory is not None:
        base = ctx.model_factory(tokenizer)
    else:
        name = _tokenizer_name(ctx.plan)
        base = load_causal_lm(name, Placement("cpu", "float32"))
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged = merged.to(torch.bfloat16)
    merged.config.use_cache = True
    set_generation_stop(merged, tokenizer)
    target = ctx.run_dir / "merged"
    merged.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target.name
