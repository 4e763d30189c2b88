"""The fast SFT path (full, LoRA, QLoRA): padding-free packed steps, micro-batches sized by memory, fused kernels.

Chosen automatically on CUDA; on a CPU only when the plan says `packing: on`. Each optimization has a switch:
the plan's `training.speed.<name>: off` (or `training.packing: off` for the whole path), or the environment
variable TUNEWISE_SPEED_OFF=name[,name...] (`all` turns the whole path off). Names:

    varlen_attention  flash-attention over the packed sequences (CUDA); off: sdpa with a block-diagonal mask
    fused_kernels     liger-kernel RMSNorm, SwiGLU, RoPE, fused linear cross-entropy (when installed, CUDA)
    fused_lora        each LoRA linear as one autograd node (3 matmuls forward, 4 backward) instead of PEFT's chain,
                      over a plain nn.Linear or QLoRA's 4-bit layer (dequantized inside the matmuls, never kept)
    chunked_loss      the logits computed 4,096 tokens at a time, never all at once (when fused_kernels is off)
    auto_micro_batch  micro-batches sized from free GPU memory; off: `speed.micro_batch_tokens` or one per step
    compile           torch.compile of each decoder layer, dynamic shapes (auto: on with CUDA for full and LoRA
                      runs of at least COMPILE_MIN_STEPS steps, off for QLoRA); a layer dynamo cannot compile runs
                      eagerly. Inside compiled layers
                      inductor fuses the norms, SwiGLU and RoPE itself, so fused_kernels then means liger's
                      fused linear cross-entropy only

What stays the same as the padded path: the rows of every optimizer step (per_device_batch_size x
gradient_accumulation_steps, in the same sampler order) and the loss (summed over the step's label tokens,
divided by their count), so the loss curve and every hyperparameter keep their meaning. A step's rows are packed
into one row per micro-batch; position ids restart at every example, and the attention never crosses examples.
Under DDP each process packs its own share of the step, and the step reduces the gradients itself (so the loss
is the same as one process's over the same rows); under FSDP the path steps aside and batches are padded.

Lazy imports: torch and the project modules that pull them in are imported inside the functions that use them, so
importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from transformers import Trainer

from executor.plan import TECHNIQUES
from executor.train.data import IGNORE_INDEX

SWITCHES = ("varlen_attention", "fused_kernels", "fused_lora", "chunked_loss", "auto_micro_batch", "compile")
ENV_OFF = "TUNEWISE_SPEED_OFF"
# Supervised techniques whose rows can be packed (prompt tuning prepends virtual tokens to every example).
PACKED_TECHNIQUES = tuple(n for n, i in TECHNIQUES.items() if i.family == "sft" and not i.prompt_adapter)
MAX_MICRO_BATCH_TOKENS = 65_536  # past this a bigger micro-batch no longer runs faster on an H200
# Compiling SmolLM2's 30 layers took 65-100 s on the H200 and saved ~0.1 s a step (16 rows: 25,000 vs 17,400 tokens/s,
# bench/RESULTS.md, issue #8); a run of a few hundred steps would spend more compiling than it saves.
COMPILE_MIN_STEPS = 1000


@dataclass
class Speedups:
    packed: bool = False
    varlen_attention: bool = False
    fused_kernels: bool = False
    fused_lora: bool = False
    chunked_loss: bool = False
    auto_micro_batch: bool = False
    compile: bool = False
    micro_batch_tokens: int | None = None  # None: the whole step in one micro-batch
    notes: list[str] = field(default_factory=list)

    @property
    def loss(self) -> str:
        return "fused" if self.fused_kernels else "chunked" if self.chunked_loss else "full"

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "notes"}


def switched_off(environ=None) -> set[str]:
    raw = (environ if environ is not None else os.environ).get(ENV_OFF, "")
    names = {name.strip() for name in raw.split(",") if name.strip()}
    unknown = names - set(SWITCHES) - {"all", "packing"}
    if unknown:
        raise ValueError(f"{ENV_OFF}: unknown name(s) {', '.join(sorted(unknown))} (known: all, packing, "
                         f"{', '.join(SWITCHES)})")
    return names


def resolve_speedups(plan, device: str, environ=None, steps: int | None = None) -> Speedups:
    """Which optimizations this run gets: plan switches, then the environment, then what the machine has.
    `steps`: the run's optimizer steps, when known (a short run is not compiled unless the plan says so)."""
    from executor.train.fused import liger_available, varlen_available

    t = plan.training
    environ = os.environ if environ is None else environ
    off = switched_off(environ)
    on_gpu = device == "cuda"
    packed = plan.technique in PACKED_TECHNIQUES and "all" not in off and "packing" not in off and (
        t.packing == "on" or (t.packing == "auto" and on_gpu))
    if packed and environ.get("ACCELERATE_USE_FSDP") == "true":
        # The packed step calls the decoder under the model wrapper; FSDP refuses that outright (it needs its root
        # module called; seen on the H200 with one FSDP process). Under DDP the step reduces the gradients itself.
        return Speedups(notes=["the packed fast path does not run under FSDP; batches are padded"])
    if not packed:
        return Speedups()
    speed = t.speed

    def wanted(name: str, available: bool = True, auto: bool = True) -> bool:
        setting = getattr(speed, name)
        if name in off or setting == "off":
            return False
        return available and (setting == "on" or auto)

    s = Speedups(packed=True)
    s.varlen_attention = wanted("varlen_attention", auto=on_gpu)
    if s.varlen_attention and on_gpu and not varlen_available():
        s.notes.append("varlen attention: this torch has no torch.nn.attention.varlen; sdpa with a block mask")
    s.fused_kernels = wanted("fused_kernels", available=liger_available())
    if speed.fused_kernels == "on" and not s.fused_kernels and "fused_kernels" not in off:
        s.notes.append("fused_kernels: liger-kernel is not installed or there is no GPU (pip install "
                       "'tunewise[gpu]'); plain PyTorch ops used")
    s.fused_lora = TECHNIQUES[plan.technique].lora == "always" and wanted("fused_lora")
    s.chunked_loss = not s.fused_kernels and wanted("chunked_loss")
    s.auto_micro_batch = wanted("auto_micro_batch", auto=on_gpu) and speed.micro_batch_tokens is None
    # Compile was measured for bf16 full and LoRA runs; through bitsandbytes' 4-bit layers it is untested: opt-in.
    s.compile = wanted("compile", auto=on_gpu and plan.technique in PACKED_TECHNIQUES
                       and not TECHNIQUES[plan.technique].quantized and (steps is None or steps >= COMPILE_MIN_STEPS))
    s.micro_batch_tokens = speed.micro_batch_tokens
    return s


# ---- micro-batch sizing ----------------------------------------------------------------------------------------

def activation_bytes_per_token(config, checkpointing: bool, dtype_bytes: int = 2) -> int:
    """What one token's saved activations weigh across the layers (bf16): per layer the norm inputs, q/k/v, the
    attention output and the MLP's gate, up and product (Korthikanti et al.'s count, adapted to SwiGLU and GQA),
    with a 1.5 margin for allocator slack and the layer being recomputed; with gradient checkpointing only each
    layer's input is kept, plus one layer's worth."""
    h = config.hidden_size
    inter = getattr(config, "intermediate_size", 4 * h)
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    kv_width = h // heads * kv
    per_layer = dtype_bytes * (7 * h + 2 * kv_width + 4 * inter)
    layers = config.num_hidden_layers
    saved = layers * dtype_bytes * h + per_layer if checkpointing else layers * per_layer
    return int(1.5 * saved) + 4 * h  # + the final hidden state in fp32 for the loss


def micro_batch_tokens(free_bytes: int, reserved_bytes: int, bytes_per_token: int, max_seq_length: int,
                       fraction: float = 0.6, ceiling: int = MAX_MICRO_BATCH_TOKENS) -> int:
    """Tokens per micro-batch: a `fraction` of the memory left after `reserved_bytes` (gradients, optimizer
    state, the loss's logits chunk), at `bytes_per_token`; never below one longest row, never above `ceiling`."""
    usable = max(0, int(free_bytes * fraction) - reserved_bytes)
    tokens = usable // max(1, bytes_per_token)
    return int(max(max_seq_length, min(ceiling, tokens)))


def auto_micro_batch_tokens(model, max_seq_length: int, checkpointing: bool, vocab_chunk: int = 4096) -> int:
    import torch

    from executor.train.fused import causal_lm

    free, _ = torch.cuda.mem_get_info()
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    # gradients + two Adam moments + fp32 scratch for the fused optimizer; the loss's logits chunk in fp32 twice
    config = causal_lm(model).config
    reserved = 4 * trainable + 2 * vocab_chunk * config.vocab_size * 4
    return micro_batch_tokens(free, reserved, activation_bytes_per_token(config, checkpointing), max_seq_length)


def split_micro_batches(lengths: list[int], budget: int | None) -> list[list[int]]:
    """Indices of a step's rows grouped into micro-batches of at most `budget` tokens, keeping their order
    (a row longer than the budget gets a micro-batch of its own)."""
    if not budget:
        return [list(range(len(lengths)))] if lengths else []
    groups, current, used = [], [], 0
    for i, n in enumerate(lengths):
        if current and used + n > budget:
            groups.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        groups.append(current)
    return groups


# ---- collation ------------------------------------------------------------------------------------------------

class PackedStepCollator:
    """One optimizer step's rows -> micro-batches, each one packed row: input_ids, position_ids (restarting at
    every example), shift_labels (the next token's label; IGNORE_INDEX at each example's last token, so no
    example learns to predict its neighbour) and the cumulative sequence lengths for varlen attention.
    The token counts travel as Python ints, so the training step never waits on the GPU to read them."""

    def __init__(self, budget: int | None = None):
        self.budget = budget

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        micro = []
        for group in split_micro_batches([len(r["input_ids"]) for r in rows], self.budget):
            ids, pos, shifted, cu = [], [], [], [0]
            for row in (rows[i] for i in group):
                n = len(row["input_ids"])
                ids += row["input_ids"]
                pos += range(n)
                shifted += row["labels"][1:] + [IGNORE_INDEX]
                cu.append(cu[-1] + n)
            longest = max(b - a for a, b in zip(cu[:-1], cu[1:], strict=True))
            cu_t = torch.tensor(cu, dtype=torch.int32)
            micro.append({"input_ids": torch.tensor([ids]), "position_ids": torch.tensor([pos]),
                          "shift_labels": torch.tensor([shifted]), "cu_seq_lens_q": cu_t, "cu_seq_lens_k": cu_t,
                          "max_length_q": longest, "max_length_k": longest})
        return {"micro_batches": micro, "num_tokens": sum(len(r["input_ids"]) for r in rows),
                "num_label_tokens": sum(sum(1 for x in r["labels"][1:] if x != IGNORE_INDEX) for r in rows)}


# ---- the trainer ----------------------------------------------------------------------------------------------

class PackedStepTrainer(Trainer):
    """A Trainer whose step is one packed batch of the plan's rows, run as token-budgeted micro-batches.
    Everything else (optimizer, schedule, clipping, evaluation loop, checkpoints, callbacks) is the Trainer's."""

    def __init__(self, *args, speedups: Speedups, autocast_dtype=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.speedups = speedups
        self.autocast_dtype = autocast_dtype

    def _autocast(self):
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.args.device.type, dtype=self.autocast_dtype)

    def _device(self, batch: dict[str, Any]) -> dict[str, Any]:
        import torch

        return {k: v.to(self.args.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    def _step_loss(self, model, inputs, backward: bool, denominator=None):
        from executor.train.fused import causal_lm_loss_sum

        denominator = max(1, inputs["num_label_tokens"]) if denominator is None else denominator
        total = None
        for micro in inputs["micro_batches"]:
            with self._autocast():
                loss = causal_lm_loss_sum(model, self._device(micro), self.speedups.loss) / denominator
            if backward:
                self.accelerator.backward(loss)
            loss = loss.detach()
            total = loss if total is None else total + loss
        return total

    def training_step(self, model, inputs, num_items_in_batch=None):
        model.train()
        world = self.accelerator.num_processes
        if world == 1:
            loss, tokens = self._step_loss(model, inputs, backward=True), inputs["num_tokens"]
        else:
            loss, tokens = self._distributed_step(model, inputs, world)
        self.state.num_input_tokens_seen = (self.state.num_input_tokens_seen or 0) + tokens
        return loss

    def _distributed_step(self, model, inputs, world: int):
        """One rank's share of a step under DDP. The packed step calls the decoder below DDP's wrapper, so DDP's
        gradient hooks never arm; the gradients are reduced here instead, once per step. Each rank divides its
        summed loss by the label tokens of the whole step (all ranks), and the gradients are summed: exactly the
        one-process gradient of the same rows (DDP's mean would weight a rank of short rows like one of long)."""
        import torch
        import torch.distributed as dist

        counts = torch.tensor([float(inputs["num_label_tokens"]), float(inputs["num_tokens"])],
                              device=self.args.device)
        dist.all_reduce(counts)  # the label count stays on the device: the forward does not wait for the host
        no_sync = model.no_sync() if hasattr(model, "no_sync") else contextlib.nullcontext()
        with no_sync:
            loss = self._step_loss(self.accelerator.unwrap_model(model, keep_torch_compile=True), inputs,
                                   backward=True, denominator=counts[0].clamp(min=1.0))
        all_reduce_gradients(model.parameters())
        # The Trainer logs the mean over ranks of the returned loss: times the ranks, that is the step's loss.
        # Tokens seen count every rank's, as the padded path's gathered count does (read once the step is queued).
        return loss * world, int(counts[1].item())

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        import torch

        model.eval()
        with torch.no_grad():  # (unwrapped: the step calls the decoder itself, below any DDP wrapper)
            loss = self._step_loss(self.accelerator.unwrap_model(model, keep_torch_compile=True), inputs,
                                   backward=False)
        return loss, None, None


def all_reduce_gradients(parameters, bucket_bytes: int = 256 * 2**20) -> None:
    """Sum every trainable parameter's gradient over the ranks, in flat buckets of one dtype (few, large
    collectives). A parameter without a gradient joins with zeros so every rank sends the same buckets."""
    import torch
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = []
    for p in parameters:
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    bucket: list = []
    size = 0
    for i, grad in enumerate(grads):
        bucket.append(grad)
        size += grad.numel() * grad.element_size()
        last = i == len(grads) - 1
        if last or size >= bucket_bytes or grads[i + 1].dtype != grad.dtype or grads[i + 1].device != grad.device:
            flat = _flatten_dense_tensors(bucket)
            dist.all_reduce(flat)
            for g, synced in zip(bucket, _unflatten_dense_tensors(flat, bucket), strict=True):
                g.copy_(synced)
            bucket, size = [], 0


def prepare_model(model, speedups: Speedups, notes: list[str], dtype=None) -> bool:
    """Attention implementation, fused LoRA layers, liger modules and compiled layers, as the speedups say.
    Returns whether the forward still needs autocast to `dtype`: not when every floating weight already is in
    `dtype` except the adapters of fused LoRA layers (they cast themselves), as in bf16 full or LoRA runs."""
    from executor.train.fused import apply_liger_modules, causal_lm, fuse_lora_layers, register_varlen_attention

    lm = causal_lm(model)
    if speedups.varlen_attention:
        lm.set_attn_implementation(register_varlen_attention())
    self_casting = {id(p) for p in fuse_lora_layers(model)} if speedups.fused_lora else set()
    # Inside compiled layers inductor fuses the norms and the SwiGLU itself (and cannot trace liger's in-place
    # RMSNorm); liger's loss stays, outside the layers.
    if speedups.fused_kernels and not speedups.compile and not apply_liger_modules(model):
        notes.append(f"fused_kernels: no liger kernels for model type {lm.config.model_type!r}; plain ops used")
        speedups.fused_kernels = False
        speedups.chunked_loss = True
    if speedups.compile:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True  # a frame dynamo cannot compile falls back to eager
        for layer in lm.model.layers:
            layer.compile(dynamic=True)
    return any(p.is_floating_point() and p.dtype != dtype and id(p) not in self_casting for p in model.parameters())


def restore_model(model) -> None:
    """Back to the attention every other path loads (for saving, merging, generation)."""
    from executor.train.fused import VARLEN_ATTENTION, causal_lm

    lm = causal_lm(model)
    if lm.config._attn_implementation == VARLEN_ATTENTION:
        lm.set_attn_implementation("sdpa")
