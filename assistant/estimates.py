"""Memory, time and cost estimates for a plan: simple formulas, written down so users can check them.

Memory (GB, per GPU) = weights + trainable state + activations + logits + 1 GB runtime overhead.
  weights: bytes/param x params (bf16 2, NF4 with double quantization ~0.55); full fine-tuning adds
  bf16 grads (2) and fp32 master weights + Adam m, v (12) = 16 bytes/param; adapters keep 16 bytes per
  *trainable* parameter (LoRA: r x hidden x 20 per layer over all linear layers of a Llama-style block).
  activations: ~34 x hidden bytes per token per layer in bf16 (Korthikanti et al. 2022, flash attention);
  with gradient checkpointing only ~2 x hidden per token per layer is kept, plus one layer's worth.
  logits: tokens x vocab x 4 bytes (fp32), twice (values and gradients). DPO and RLHF run two sequences
  (chosen/rejected, or samples) per example; RLHF also holds a reward model (bf16 weights).
Time = FLOPs / (peak FLOP/s x MFU).  FLOPs = k x active params x tokens, tokens = examples x tokens per
  example x epochs; k = 6 for full fine-tuning (forward 2 + backward 4), 4 for adapters (the frozen base
  needs no weight gradients), x1.3 for QLoRA (dequantization), 12 for DPO (policy on chosen+rejected plus
  reference forwards), 30 for RLHF with GRPO (reward model training, sampling, policy updates).
Cost = hours x GPU count x price per GPU-hour (knowledge/hardware.yaml); hosted API fine-tuning is billed
  per training token x epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from executor.plan import TECHNIQUES, TRAINING_TECHNIQUES

if TYPE_CHECKING:
    from assistant.knowledge import GpuInfo, Knowledge, ModelInfo

GB = 1e9
RUNTIME_OVERHEAD_GB = 1.0
FLOPS_PER_PARAM_TOKEN = {
    "full": 6.0, "lora": 4.0, "qlora": 5.2, "prompt_tuning": 4.0, "dpo": 12.0, "rlhf": 30.0,
}


def lora_trainable_params(model: ModelInfo, r: int) -> float:
    # q,k,v,o,gate,up,down: sum of (in + out) over a Llama block is ~20 x hidden.
    return r * model.hidden_size * 20 * model.num_layers


def training_memory_gb(
    model: ModelInfo,
    technique: str,
    *,
    micro_batch: int = 4,
    seq_len: int = 1024,
    lora_r: int = 16,
    gradient_checkpointing: bool | None = None,
    gpu_count: int = 1,
) -> float:
    """Peak memory per device for training `model` with `technique` (serving when technique is none/api)."""
    n = model.params_b * 1e9
    h, layers, vocab = model.hidden_size, model.num_layers, model.vocab_size or 32000
    if gradient_checkpointing is None:
        gradient_checkpointing = model.params_b >= 1.0
    tokens = micro_batch * seq_len
    info = TECHNIQUES[technique]
    if not info.trains:  # inference: weights + KV cache for one batch
        kv = 2 * layers * h * tokens * 2
        return round((n * 2 + kv) / GB + RUNTIME_OVERHEAD_GB, 1)
    if technique == "full":
        # Sharded across GPUs (FSDP) when there are several.
        state = n * 16 / max(gpu_count, 1)
    else:
        weights = n * (0.55 if info.quantized else 2.0)
        trainable = 20 * h if info.prompt_adapter else lora_trainable_params(model, lora_r)
        state = weights + trainable * 16
        if technique == "rlhf":
            state += n * 2  # the reward model
    sequences = 2 if info.needs_preference_data else 1
    per_layer = (2 if gradient_checkpointing else 34) * h * tokens * sequences
    activations = per_layer * layers + (34 * h * tokens * sequences if gradient_checkpointing else 0)
    logits = tokens * sequences * vocab * 4 * 2
    return round((state + activations + logits) / GB + RUNTIME_OVERHEAD_GB, 1)


DEFAULT_HEADROOM = 0.85


def fits(model: ModelInfo, technique: str, gpu_memory_gb: float, gpu_count: int, knowledge: Knowledge) -> bool:
    """Does training (or serving) `model` with `technique` fit, keeping the catalog's memory headroom?

    The one fit test of the advisor: the rules, the model choice and the interview all ask this function,
    so they cannot disagree. Full fine-tuning shards its state over the GPUs (FSDP); adapters do not.
    Micro-batch 1 with gradient checkpointing: the smallest footprint training can run at.
    """
    if gpu_memory_gb <= 0:
        return False
    needed = training_memory_gb(
        model, technique, micro_batch=1, seq_len=1024, gradient_checkpointing=True, gpu_count=gpu_count
    )
    return within_headroom(needed, gpu_memory_gb, knowledge)


def within_headroom(needed_gb: float, gpu_memory_gb: float, knowledge: Knowledge) -> bool:
    """The one memory test: `needed_gb` leaves the catalog's headroom of the GPU free (estimates are
    estimates, fragmentation is real). `fits` and the micro-batch choice both ask it."""
    headroom = (knowledge.sizing or {}).get("headroom", DEFAULT_HEADROOM)
    return needed_gb <= headroom * gpu_memory_gb


def techniques_that_fit(
    model: ModelInfo, gpu_memory_gb: float, gpu_count: int, knowledge: Knowledge
) -> list[str]:
    """Training techniques whose estimated peak memory fits the GPUs with the catalog's headroom."""
    return [
        technique
        for technique in TRAINING_TECHNIQUES
        if technique in model.methods and fits(model, technique, gpu_memory_gb, gpu_count, knowledge)
    ]


@dataclass
class Estimates:
    gpu_memory_gb: float | None
    train_hours: float | None
    cost_usd: float | None
    hardware: str
    tokens: float | None
    assumptions: list[str] = field(default_factory=list)
    formula: str = (
        "memory = weights + trainable state + activations + logits + 1 GB; "
        "time = k x active params x tokens / (peak FLOP/s x MFU); cost = hours x GPUs x $/GPU-hour"
    )


def smallest_gpu_that_fits(memory_gb: float, knowledge: Knowledge) -> GpuInfo | None:
    fitting = [g for g in knowledge.gpus if g.memory_gb >= memory_gb]
    return min(fitting, key=lambda g: (g.price_per_hour_usd, g.memory_gb)) if fitting else None


def estimate(
    model: ModelInfo,
    technique: str,
    *,
    examples: int | None,
    epochs: float,
    micro_batch: int,
    seq_len: int,
    lora_r: int,
    gradient_checkpointing: bool | None = None,
    gpu_memory_gb: float | None,
    gpu_count: int | None,
    gpu_name: str | None,
    knowledge: Knowledge,
) -> Estimates:
    hw = knowledge.hardware
    assumptions: list[str] = []
    tokens_per_example = hw["defaults"]["tokens_per_example"]
    if examples is None:
        examples = 1000
        assumptions.append("example count unknown: assumed 1,000")
    tokens = examples * tokens_per_example * epochs
    assumptions.append(f"{tokens_per_example} tokens per example, {epochs:g} epoch(s)")

    if technique == "api":
        price = next(
            (p["training_usd_per_million_tokens"] for p in hw["api_pricing"] if p["model"] == model.id),
            None,
        )
        cost = round(tokens / 1e6 * price, 2) if price is not None else None
        if price is None:
            assumptions.append(f"no training price on file for {model.id}")
        return Estimates(None, None, cost, f"hosted fine-tuning ({model.name})", tokens, assumptions)
    if technique == "none" or model.params_b is None:
        if model.params_b is None:  # an API model: nothing to host
            return Estimates(None, 0.0, 0.0, f"hosted API ({model.name})", None, ["no training"])
        memory = training_memory_gb(model, "none", micro_batch=1, seq_len=seq_len)
        return Estimates(memory, 0.0, 0.0, "serving only", None, ["no training: serving memory shown"])

    count = max(gpu_count or 1, 1)
    memory = training_memory_gb(
        model, technique, micro_batch=micro_batch, seq_len=seq_len, lora_r=lora_r,
        gradient_checkpointing=gradient_checkpointing, gpu_count=count,
    )
    active = (model.active_params_b or model.params_b) * 1e9
    flops = FLOPS_PER_PARAM_TOKEN[technique] * active * tokens
    if gpu_memory_gb == 0 or (gpu_count == 0):
        rate = hw["cpu"]["effective_tflops"] * 1e12
        hours = flops / rate / 3600
        cost = hours * hw["cpu"]["price_per_hour_usd"]
        label = hw["cpu"]["name"]
        assumptions.append(f"CPU at {hw['cpu']['effective_tflops']} TFLOP/s effective (measured)")
    else:
        gpu = _gpu_by_name(gpu_name, knowledge) if gpu_name else None
        if gpu is None and gpu_memory_gb:
            gpu = min(
                (g for g in knowledge.gpus if g.memory_gb >= gpu_memory_gb),
                key=lambda g: g.memory_gb, default=None,
            )
            if gpu is not None:
                assumptions.append(f"GPU model not named: priced as {gpu.name}")
        if gpu is None:
            gpu = smallest_gpu_that_fits(memory, knowledge)
            if gpu is not None:
                assumptions.append(f"GPU unknown: priced on the cheapest that fits ({gpu.name})")
        if gpu is None:
            return Estimates(memory, None, None, "no single GPU on file fits", tokens, assumptions)
        mfu = hw["defaults"]["mfu"]
        hours = flops / (gpu.bf16_tflops * 1e12 * mfu * count) / 3600
        cost = hours * count * gpu.price_per_hour_usd
        label = f"{count} x {gpu.name}"
        assumptions.append(f"{gpu.bf16_tflops:g} TFLOP/s peak per GPU at {mfu:.0%} MFU")
    return Estimates(memory, round(hours, 3), round(cost, 2), label, tokens, assumptions)


def _gpu_by_name(name: str, knowledge: Knowledge) -> GpuInfo | None:
    lowered = name.lower()
    return next(
        (g for g in knowledge.gpus if g.id == lowered or lowered in (a.lower() for a in g.aliases)), None
    )
