"""Right-sized base models: the smallest catalog model expected to do the task well, that fits.

The band of sizes comes from knowledge/models.yaml (`sizing`): the task type sets it (routing and
extraction need 1-3B, open generation 7-9B), deployment limits cap it (devices, tight latency, a tight
budget). Within the band the smallest model that fits the GPU with headroom wins, models tagged for the
task or for the inputs' languages first. When nothing in the band fits, the largest smaller model that
fits is taken and the reason says so: a smaller GPU never gets a larger model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assistant.estimates import fits, training_memory_gb
from executor.plan import TRAINING_TECHNIQUES, TrainingSpec, trains

if TYPE_CHECKING:
    from assistant.knowledge import Knowledge, ModelInfo

TRAIN_SHARE = 0.8  # the share of the examples `tunewise data prepare` puts in train by default

TASK_TAGS = {"code": {"code"}, "reasoning": {"math", "reasoning"}}


@dataclass(frozen=True)
class Band:
    min_b: float
    max_b: float
    why: str


def size_band(facts: dict[str, Any], knowledge: Knowledge) -> Band:
    sizing = knowledge.sizing or {}
    default = sizing.get("default", {"min_b": 7, "max_b": 9.5})
    task = facts.get("task_type")
    band = (sizing.get("by_task") or {}).get(task) or default
    min_b, max_b = float(band["min_b"]), float(band["max_b"])
    why = band.get("why") or "the task is not known yet, so a general 7-9B model"
    caps = sizing.get("caps") or {}
    limits = []
    if facts.get("deployment") == "on_device" and "on_device" in caps:
        limits.append(caps["on_device"])
    latency = facts.get("latency_budget_ms")
    tight = caps.get("tight_latency_ms")
    if tight and latency is not None and latency < tight.get("below", 250):
        limits.append(tight)
    if facts.get("budget") == "low" and "low_budget" in caps:
        limits.append(caps["low_budget"])
    for cap in limits:
        if cap["max_b"] < max_b:
            max_b = float(cap["max_b"])
            why += f"; at most {max_b:g}B because {cap['why']}"
    return Band(min(min_b, max_b), max_b, why)


def wanted_tags(facts: dict[str, Any]) -> set[str]:
    tags = set(TASK_TAGS.get(facts.get("task_type") or "", set()))
    if facts.get("multilingual") or facts.get("language") == "other":
        tags.add("multilingual")
    return tags


def open_models(knowledge: Knowledge, technique: str) -> list[ModelInfo]:
    return [
        m for m in knowledge.models.values()
        if m.source != "api" and m.params_b and (not trains(technique) or technique in m.methods)
    ]


def right_sized(
    facts: dict[str, Any], technique: str, knowledge: Knowledge
) -> tuple[ModelInfo | None, str]:
    """The model for `technique` on the stated GPUs, and why that size (None when nothing fits)."""
    gpu_gb, gpu_count = facts.get("gpu_memory_gb") or 0.0, facts.get("gpu_count") or 1
    band = size_band(facts, knowledge)
    tags = wanted_tags(facts)
    fitting = [m for m in open_models(knowledge, technique) if fits(m, technique, gpu_gb, gpu_count, knowledge)]
    in_band = [m for m in fitting if band.min_b <= m.params_b <= band.max_b]
    if in_band:
        # The smallest that does the task well, models made for the task or the languages first.
        best = min(in_band, key=lambda m: (-len(tags & set(m.tags)), m.params_b, m.family != "llama"))
        return best, f"{band.why}: the smallest such model that fits {_gpus(gpu_count, gpu_gb)}"
    smaller = [m for m in fitting if m.params_b < band.min_b]
    if smaller:
        best = max(smaller, key=lambda m: (m.params_b, len(tags & set(m.tags))))
        return best, (f"{band.why}, but no {band.min_b:g}-{band.max_b:g}B model fits "
                      f"{_gpus(gpu_count, gpu_gb)} for {technique}: the largest that does")
    return None, f"no catalog model fits {_gpus(gpu_count, gpu_gb)} for {technique}"


def band_fits(facts: dict[str, Any], knowledge: Knowledge) -> list[str] | None:
    """Training techniques with which some model of the right size fits the GPUs (None: GPU unknown)."""
    gpu_gb = facts.get("gpu_memory_gb")
    if gpu_gb is None or not facts.get("has_gpu"):
        return None
    band = size_band(facts, knowledge)
    gpu_count = facts.get("gpu_count") or 1
    out = []
    for technique in TRAINING_TECHNIQUES:
        if any(
            band.min_b <= m.params_b <= band.max_b and fits(m, technique, gpu_gb, gpu_count, knowledge)
            for m in open_models(knowledge, technique)
        ):
            out.append(technique)
    return out


def _gpus(count: int, memory: float) -> str:
    return f"{count} x {memory:g} GB" if count > 1 else f"a {memory:g} GB GPU"


def chinchilla_model(tokens: float | None, knowledge: Knowledge) -> tuple[ModelInfo, str]:
    """For training from scratch: the architecture sized for the corpus (~20 tokens per parameter)."""
    tokens = tokens or 2e10
    target_b = tokens / 20 / 1e9
    model = min(open_models(knowledge, "full"), key=lambda m: abs(math.log(m.params_b / target_b)))
    return model, f"its architecture sized for your corpus (~20 tokens per parameter: ~{target_b:.1f}B)"


def large_steps(train: TrainingSpec, model: ModelInfo, gpu_gb: float | None, gpu_count: int, examples: int | None,
                knowledge: Knowledge) -> TrainingSpec:
    """More rows per optimizer step (with a larger learning rate and enough epochs for `min_total_steps`) for a
    small model on a big GPU, as the hyperparameters' `large_steps` section says; the spec unchanged when it does
    not apply."""
    rule = (knowledge.hyperparameters or {}).get("large_steps")
    if not rule or not gpu_gb or not model.params_b or not examples:
        return train
    rows = train.per_device_batch_size * train.gradient_accumulation_steps
    lora_r = train.lora.r if train.lora else 16
    needed = training_memory_gb(model, train.method, micro_batch=train.per_device_batch_size,
                                seq_len=train.max_seq_length, lora_r=lora_r, gpu_count=gpu_count)
    if needed > rule["max_memory_share"] * gpu_gb:
        return train
    train_rows = examples * TRAIN_SHARE
    grown = rows
    while grown * 2 <= rule["max_rows"] and train_rows / (grown * 2) >= rule["min_steps_per_epoch"]:
        grown *= 2
    if grown == rows:
        return train
    micro = min(grown, rule["max_micro_batch"])
    per_epoch = math.ceil(train_rows / grown)
    epochs = max(train.epochs, math.ceil(rule["min_total_steps"] / per_epoch))
    return train.model_copy(update={
        "per_device_batch_size": micro, "gradient_accumulation_steps": grown // micro, "epochs": float(epochs),
        "learning_rate": float(f"{train.learning_rate * (grown / rows) ** rule['lr_exponent']:.2g}")})
