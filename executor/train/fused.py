"""Kernels for the fast training path: variable-length attention, a loss that never holds all the logits,
and liger-kernel's fused RMSNorm / SwiGLU / RoPE / linear cross-entropy when that package is installed.

Every function here has a plain-PyTorch twin that the CPU tests compare it with:
    varlen_attention   flash-attention over packed sequences (torch's varlen kernel on CUDA; one sdpa call per
                       sequence elsewhere), cu_seqlens handed down by the collator, so no N x N mask and no host sync
    causal_lm_loss_sum sum of the next-token cross-entropy over a packed micro-batch: liger's fused linear
                       cross-entropy, or the logits computed and dropped chunk by chunk (recomputed in backward)
    liger_patches      liger's RMSNorm and SwiGLU bound to one model instance, its RoPE for the duration of a run
    LoraLinearFunction a LoRA linear as one autograd node (PEFT's layer is a chain of small ops)
    Lora4bitLinearFunction  the same over a bitsandbytes 4-bit base: the base weight is dequantized inside the
                       matmul kernels only, in forward and again in backward, never kept (QLoRA stays 4-bit)

Lazy imports: torch, transformers, liger_kernel, peft are imported inside the functions that use them, so importing
this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect

import torch
import torch.nn.functional as F

from executor.train.data import IGNORE_INDEX  # the label data.py gives tokens the loss skips

VARLEN_ATTENTION = "tunewise_varlen"  # the name the attention function is registered under in transformers
LOSS_CHUNK_TOKENS = 4096  # 4,096 tokens x 49,152 vocabulary x 4 bytes = 0.8 GB of fp32 logits at a time


# ---- attention ---------------------------------------------------------------------------------------------

def _find_torch_varlen():
    """torch's flash varlen kernel and the keyword arguments this torch version takes, or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters
    if "window_size" not in params and "is_causal" not in params:
        return None
    return varlen_attn, frozenset(params)


_TORCH_VARLEN = _find_torch_varlen()  # looked up once: the attention function runs inside compiled layers


def varlen_available() -> bool:
    return torch.cuda.is_available() and _TORCH_VARLEN is not None


def varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """A transformers attention function (registered as VARLEN_ATTENTION) for one packed row.

    query (1, Hq, N, D), key / value (1, Hkv, N, D); `cu_seq_lens_q` (int32, [0, len1, len1+len2, ..., N]) and
    `max_length_q` come from the collator. Returns (1, N, Hq, D) as transformers expects."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:  # not a packed batch (generation, a stray caller): a single causal sequence per row
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      is_causal=attention_mask is None)
    if query.shape[0] != 1:
        raise ValueError("varlen attention expects one packed row per micro-batch")
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (N, H, D)
    max_len = int(kwargs.get("max_length_q") or 0)
    found = _TORCH_VARLEN if q.is_cuda else None
    if found is not None and q.dtype in (torch.bfloat16, torch.float16):
        out = _flash_varlen(found, q, k, v, cu.to(torch.int32), max_len, scaling)
    else:
        out = _reference_varlen(q, k, v, cu, scaling)
    return out.unsqueeze(0), None


def _flash_varlen(found, q, k, v, cu, max_len, scaling):
    varlen_attn, params = found
    kwargs = {}
    if "window_size" in params:
        kwargs["window_size"] = (-1, 0)  # causal
    else:
        kwargs["is_causal"] = True
    if "scale" in params and scaling is not None:
        kwargs["scale"] = scaling
    if k.shape[1] != q.shape[1]:
        if "enable_gqa" in params:
            kwargs["enable_gqa"] = True
        else:
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return varlen_attn(q, k.contiguous(), v.contiguous(), cu, cu, max_len, max_len, **kwargs)


def _reference_varlen(q, k, v, cu, scaling):
    """The same attention, one sdpa call per sequence (CPU, tests, dtypes flash does not take)."""
    groups = q.shape[1] // k.shape[1]
    bounds = cu.tolist()
    outs = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # (H, n, D)
        if groups > 1:
            ks, vs = ks.repeat_interleave(groups, dim=0), vs.repeat_interleave(groups, dim=0)
        outs.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scaling).transpose(0, 1))
    return torch.cat(outs, dim=0)


def register_varlen_attention() -> str:
    from transformers import AttentionInterface

    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention)
    return VARLEN_ATTENTION


# ---- loss ----------------------------------------------------------------------------------------------------

def _cross_entropy_sum(hidden, weight, labels):
    logits = hidden @ weight.t()
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()  # softmax over 49k classes in 16 bits loses the small probabilities
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")


def chunked_cross_entropy_sum(hidden, weight, labels, chunk_tokens: int = LOSS_CHUNK_TOKENS):
    """sum of cross-entropy(hidden @ weight.T, labels) over tokens, the logits built `chunk_tokens` rows at a
    time; under autograd each chunk is checkpointed, so backward recomputes its logits instead of keeping them."""
    from torch.utils.checkpoint import checkpoint

    hidden = hidden.reshape(-1, hidden.shape[-1])
    labels = labels.reshape(-1)
    grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    total = None
    for start in range(0, hidden.shape[0], chunk_tokens):
        h, y = hidden[start:start + chunk_tokens], labels[start:start + chunk_tokens]
        part = checkpoint(_cross_entropy_sum, h, weight, y, use_reentrant=False) if grad else \
            _cross_entropy_sum(h, weight, y)
        total = part if total is None else total + part
    return total


def full_cross_entropy_sum(hidden, weight, labels):
    """The reference: every logit materialized at once."""
    return _cross_entropy_sum(hidden.reshape(-1, hidden.shape[-1]), weight, labels.reshape(-1))


@functools.cache
def _liger_flce():
    from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

    return LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum")


def liger_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import liger_kernel  # noqa: F401
    except ImportError:
        return False
    return True


def causal_lm(model):
    """The *ForCausalLM module under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def causal_lm_loss_sum(model, batch, loss: str = "chunked"):
    """Summed next-token loss of one packed micro-batch. `batch` has input_ids, position_ids and shift_labels
    (1, N) plus the varlen keywords; `loss` is 'fused' (liger), 'chunked' or 'full'."""
    lm = causal_lm(model)
    extra = {k: batch[k] for k in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k") if k in batch}
    hidden = lm.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
                      **extra).last_hidden_state
    weight = lm.get_output_embeddings().weight
    labels = batch["shift_labels"]
    if loss == "fused" and torch.is_grad_enabled():
        h = hidden.reshape(-1, hidden.shape[-1])
        return _liger_flce()(weight, h if h.dtype == weight.dtype else h.to(weight.dtype), labels.reshape(-1))
    if loss == "full":
        return full_cross_entropy_sum(hidden, weight, labels)
    return chunked_cross_entropy_sum(hidden, weight, labels)


# ---- liger's RMSNorm / SwiGLU / RoPE -------------------------------------------------------------------------

LIGER_MODEL_TYPES = ("llama", "mistral", "qwen2")  # RMSNorm + gate/up/down SwiGLU MLP + standard RoPE


def apply_liger_modules(model) -> bool:
    """Bind liger's RMSNorm and SwiGLU forwards to this model's modules (the class and other models untouched).
    Returns False when the architecture is not one liger's kernels are known to match."""
    from liger_kernel.transformers.monkey_patch import _patch_rms_norm_module, _patch_swiglu_module
    from liger_kernel.transformers.swiglu import LigerSwiGLUMLP

    lm = causal_lm(model)
    if getattr(lm.config, "model_type", None) not in LIGER_MODEL_TYPES or getattr(lm.config, "hidden_act",
                                                                                  "silu") != "silu":
        return False
    base = lm.model
    _patch_rms_norm_module(base.norm)
    for layer in base.layers:
        _patch_swiglu_module(layer.mlp, LigerSwiGLUMLP)
        _patch_rms_norm_module(layer.input_layernorm)
        _patch_rms_norm_module(layer.post_attention_layernorm)
    return True


@contextlib.contextmanager
def liger_rope(model):
    """liger's RoPE kernel in place of the model family's apply_rotary_pos_emb while the block runs (the module
    function is shared by every model of that family in the process, so it is put back afterwards)."""
    from liger_kernel.transformers.rope import liger_rotary_pos_emb

    model_type = getattr(causal_lm(model).config, "model_type", None)
    module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    original = module.apply_rotary_pos_emb
    module.apply_rotary_pos_emb = liger_rotary_pos_emb
    try:
        yield
    finally:
        module.apply_rotary_pos_emb = original


# ---- LoRA: one autograd node per adapted linear ---------------------------------------------------------------

class LoraLinearFunction(torch.autograd.Function):
    """y = x W^T + b + s (x A^T) B^T with the frozen base W, in 3 matmuls forward and 4 backward, one autograd
    node instead of PEFT's chain of modules, casts, scale and add (the small model's step is launch-bound).
    A and B may be kept in fp32 (PEFT's default); they are used in x's dtype and their gradients returned in theirs."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling):
        a, b = lora_a.to(x.dtype), lora_b.to(x.dtype)
        x2 = x.reshape(-1, x.shape[-1])
        t = x2 @ a.t()
        out = torch.addmm(bias.to(x.dtype), x2, weight.t()) if bias is not None else x2 @ weight.t()
        out.addmm_(t, b.t(), alpha=scaling)
        ctx.save_for_backward(x2, weight, a, b, t)
        ctx.scaling, ctx.dtypes, ctx.has_bias = scaling, (lora_a.dtype, lora_b.dtype), bias is not None
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        x2, weight, a, b, t = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        gb = g @ b  # (N, r)
        grad_x = grad_a = grad_b = grad_w = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = (g @ weight).addmm_(gb, a, alpha=ctx.scaling).view(*grad.shape[:-1], x2.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_w = g.t() @ x2
        if ctx.needs_input_grad[2] and ctx.has_bias:
            grad_bias = g.sum(0)
        if ctx.needs_input_grad[3]:
            grad_a = (gb.t() @ x2).mul_(ctx.scaling).to(ctx.dtypes[0])
        if ctx.needs_input_grad[4]:
            grad_b = (g.t() @ t).mul_(ctx.scaling).to(ctx.dtypes[1])
        return grad_x, grad_w, grad_bias, grad_a, grad_b, None


class Lora4bitLinearFunction(torch.autograd.Function):
    """y = base(x) + s (x A^T) B^T over a frozen bitsandbytes 4-bit base layer, one autograd node.

    What it keeps for backward is x and x A^T, never the weight: backward dequantizes the 4-bit weight again for
    grad_x = g W (one layer's bf16 weight alive for the duration of one matmul), so the base weights stay 4-bit
    for the whole step. PEFT's 4-bit LoRA layer is a chain of a clone, casts, two linears, a scale and an add."""

    @staticmethod
    def forward(ctx, x, lora_a, lora_b, base, scaling):
        a, b = lora_a.to(x.dtype), lora_b.to(x.dtype)
        x2 = x.reshape(-1, x.shape[-1])
        t = x2 @ a.t()
        out = base(x2)  # bitsandbytes' own 4-bit matmul (and bias); grad mode is off inside forward
        out = out.to(x.dtype) if out.dtype != x.dtype else out
        out.addmm_(t, b.t(), alpha=scaling)
        ctx.save_for_backward(x2, a, b, t)
        ctx.base, ctx.scaling, ctx.dtypes = base, scaling, (lora_a.dtype, lora_b.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        x2, a, b, t = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        gb = g @ b  # (N, r)
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            weight = dequantize_4bit_weight(ctx.base).to(g.dtype)  # (out, in), freed when this returns
            grad_x = (g @ weight).addmm_(gb, a, alpha=ctx.scaling).view(*grad.shape[:-1], x2.shape[-1])
            del weight
        if ctx.needs_input_grad[1]:
            grad_a = (gb.t() @ x2).mul_(ctx.scaling).to(ctx.dtypes[0])
        if ctx.needs_input_grad[2]:
            grad_b = (g.t() @ t).mul_(ctx.scaling).to(ctx.dtypes[1])
        return grad_x, grad_a, grad_b, None, None


def dequantize_4bit_weight(base):
    """A bitsandbytes Linear4bit's weight as a float (out_features, in_features) tensor."""
    import bitsandbytes.functional as bnbf  # only 4-bit layers get here, and they exist only with bitsandbytes

    weight = base.weight
    return bnbf.dequantize_4bit(weight.data, weight.quant_state).reshape(base.out_features, base.in_features)


def _is_4bit_linear(layer) -> bool:
    return type(layer).__name__ == "Linear4bit" and type(layer).__module__.startswith("bitsandbytes")


def _fused_lora_forward(self, x, *args, **kwargs):
    if args or kwargs or self.disable_adapters or self.merged or len(self.active_adapters) != 1:
        return type(self).forward(self, x, *args, **kwargs)
    name = self.active_adapters[0]
    base = self.base_layer
    if self.fused_4bit:
        return Lora4bitLinearFunction.apply(x, self.lora_A[name].weight, self.lora_B[name].weight, base,
                                            self.scaling[name])
    return LoraLinearFunction.apply(x, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight,
                                    self.scaling[name])


def fuse_lora_layers(model) -> list:
    """Give every plain LoRA linear (an nn.Linear or a bitsandbytes 4-bit base, no dropout, no DoRA, one adapter)
    the one-node forward. Returns the parameters those layers own (their adapters' A and B); the rest keep PEFT's
    forward."""
    from peft.tuners.lora.layer import LoraLayer

    owned = []
    for module in model.modules():
        if not isinstance(module, LoraLayer) or not hasattr(module, "base_layer") or len(module.lora_A) != 1 \
                or getattr(module, "lora_variant", None):
            continue
        name = next(iter(module.lora_A))
        base = module.base_layer
        four_bit = _is_4bit_linear(base)
        if not (four_bit or type(base) is torch.nn.Linear) or getattr(module, "fan_in_fan_out", False) \
                or not isinstance(module.lora_dropout[name], torch.nn.Identity):
            continue
        module.fused_4bit = four_bit
        module.forward = _fused_lora_forward.__get__(module, type(module))
        owned += [module.lora_A[name].weight, module.lora_B[name].weight]
    return owned
