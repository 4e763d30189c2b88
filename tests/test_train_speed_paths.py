"""The fast training path's pieces on CPU with a tiny random Llama: each must leave the numbers unchanged.

packed vs unpacked per-sequence losses, varlen attention vs plain attention, chunked vs full loss (values and
gradients), micro-batch sizing and splitting, and every switch turning its optimization off.
"""

from __future__ import annotations

import pytest
import torch

from executor.models.loader import tiny_llama
from executor.train.data import IGNORE_INDEX
from executor.train.fused import (
    causal_lm_loss_sum,
    chunked_cross_entropy_sum,
    full_cross_entropy_sum,
    register_varlen_attention,
)
from executor.train.speed import (
    PackedStepCollator,
    activation_bytes_per_token,
    micro_batch_tokens,
    resolve_speedups,
    split_micro_batches,
)


def rows(lengths: list[int], vocab: int = 500, seed: int = 0) -> list[dict[str, list[int]]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(1, vocab, (n,), generator=g).tolist()
        labels = [IGNORE_INDEX] * (n // 3) + ids[n // 3:]  # a prompt without loss, then the completion
        out.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * n})
    return out


@pytest.fixture(scope="module")
def model(smol_tokenizer):
    m = tiny_llama(smol_tokenizer).eval()
    m.config.use_cache = False
    return m


def unpacked_loss_sums(model, batch_rows) -> list[float]:
    """Each row alone through the stock model: the reference."""
    sums = []
    with torch.no_grad():
        for r in batch_rows:
            logits = model(input_ids=torch.tensor([r["input_ids"]])).logits[0, :-1].float()
            sums.append(torch.nn.functional.cross_entropy(logits, torch.tensor(r["labels"][1:]),
                                                          ignore_index=IGNORE_INDEX, reduction="sum").item())
    return sums


def packed_per_sequence_sums(model, batch_rows) -> list[float]:
    micro = PackedStepCollator()(batch_rows)["micro_batches"]
    assert len(micro) == 1
    b = micro[0]
    with torch.no_grad():
        hidden = model.model(input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False,
                             cu_seq_lens_q=b["cu_seq_lens_q"], cu_seq_lens_k=b["cu_seq_lens_k"],
                             max_length_q=b["max_length_q"], max_length_k=b["max_length_k"]).last_hidden_state
        per_token = torch.nn.functional.cross_entropy(model.lm_head(hidden)[0].float(), b["shift_labels"][0],
                                                      ignore_index=IGNORE_INDEX, reduction="none")
    cu = b["cu_seq_lens_q"].tolist()
    return [per_token[a:z].sum().item() for a, z in zip(cu[:-1], cu[1:], strict=True)]


@pytest.mark.parametrize("attention", ["sdpa", "varlen"])
def test_packed_per_sequence_losses_equal_unpacked(model, attention):
    batch = rows([37, 5, 64, 18])
    reference = unpacked_loss_sums(model, batch)
    if attention == "varlen":
        model.set_attn_implementation(register_varlen_attention())
    try:
        packed = packed_per_sequence_sums(model, batch)
    finally:
        model.set_attn_implementation("sdpa")
    assert packed == pytest.approx(reference, rel=1e-4, abs=1e-4)


def test_packing_without_position_ids_would_leak(model):
    """The control: the same packed row with positions running on (no restart) gives different losses."""
    batch = rows([37, 5, 64, 18])
    b = PackedStepCollator()(batch)["micro_batches"][0]
    with torch.no_grad():
        hidden = model.model(input_ids=b["input_ids"], use_cache=False).last_hidden_state
        leaky = torch.nn.functional.cross_entropy(model.lm_head(hidden)[0].float(), b["shift_labels"][0],
                                                  ignore_index=IGNORE_INDEX, reduction="sum").item()
    assert abs(leaky - sum(unpacked_loss_sums(model, batch))) > 1e-2


def test_collator_keeps_each_row_and_its_labels():
    batch = rows([7, 3, 9])
    out = PackedStepCollator(budget=12)(batch)
    micro = out["micro_batches"]
    assert [m["input_ids"].shape[1] for m in micro] == [10, 9]  # 7 + 3 fit in 12 tokens, 9 does not
    assert micro[0]["position_ids"][0].tolist() == list(range(7)) + list(range(3))
    assert micro[0]["cu_seq_lens_q"].tolist() == [0, 7, 10] and micro[0]["max_length_q"] == 7
    # the last token of every row predicts nothing (no learning across the boundary)
    assert micro[0]["shift_labels"][0, 6].item() == IGNORE_INDEX
    assert micro[0]["shift_labels"][0, :6].tolist() == batch[0]["labels"][1:]
    assert out["num_tokens"] == 19
    assert out["num_label_tokens"] == sum(sum(1 for x in r["labels"][1:] if x != IGNORE_INDEX) for r in batch)


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_chunked_loss_equals_full_loss_values_and_gradients(chunk):
    torch.manual_seed(0)
    hidden = torch.randn(1, 50, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(300, 16, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 300, (1, 50))
    labels[0, ::4] = IGNORE_INDEX
    full = full_cross_entropy_sum(hidden, weight, labels)
    g_full = torch.autograd.grad(full, (hidden, weight))
    chunked = chunked_cross_entropy_sum(hidden, weight, labels, chunk_tokens=chunk)
    g_chunked = torch.autograd.grad(chunked, (hidden, weight))
    assert chunked.item() == pytest.approx(full.item(), rel=1e-12)
    for a, b in zip(g_full, g_chunked, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_model_loss_is_the_same_with_chunked_and_full_loss(model):
    batch = PackedStepCollator()(rows([40, 25]))["micro_batches"][0]
    losses, grads = {}, {}
    for kind in ("full", "chunked"):
        model.zero_grad()
        loss = causal_lm_loss_sum(model, batch, kind)
        loss.backward()
        losses[kind] = loss.item()
        grads[kind] = model.lm_head.weight.grad.clone()
    model.zero_grad()
    assert losses["chunked"] == pytest.approx(losses["full"], rel=1e-5)
    assert torch.allclose(grads["chunked"], grads["full"], rtol=1e-4, atol=1e-6)
    assert losses["full"] == pytest.approx(sum(unpacked_loss_sums(model, rows([40, 25]))), rel=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_lora_layers_match_peft_values_and_gradients(smol_tokenizer, dtype):
    """PEFT's LoRA forward and the one-node version: same loss, same adapter gradients (fp32 adapters on a bf16
    base, as PEFT keeps them, included)."""
    from peft import LoraConfig, get_peft_model

    from executor.train.fused import fuse_lora_layers

    batch = PackedStepCollator()(rows([30, 12]))["micro_batches"][0]
    results = []
    for fused in (False, True):
        base = tiny_llama(smol_tokenizer).to(dtype)
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        for name, p in model.named_parameters():
            if "lora_B" in name:  # B starts at zero; give it values so A's gradient is not zero
                torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(hash(name) % 1000))
        if fused:
            assert len(fuse_lora_layers(model)) == 2 * 2 * 7  # 2 layers x 7 linears x (A, B)
        loss = causal_lm_loss_sum(model, batch, "full")
        loss.backward()
        grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.item(), grads))
    (loss_peft, g_peft), (loss_fused, g_fused) = results
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert loss_fused == pytest.approx(loss_peft, rel=tol)
    for name, grad in g_peft.items():
        assert torch.allclose(g_fused[name], grad, rtol=tol, atol=tol * grad.abs().max().item()), name


def qlora_tiny(smol_tokenizer):
    """The tiny Llama quantized to NF4 by bitsandbytes (as from_pretrained does for QLoRA), frozen as build_model
    leaves it, with LoRA on every linear and non-zero B."""
    from peft import LoraConfig, get_peft_model

    from executor.plan import QuantizationSpec
    from executor.train.sft import _quantize_tiny

    base = _quantize_tiny(tiny_llama(smol_tokenizer, hidden=128), QuantizationSpec())
    for p in base.parameters():
        p.requires_grad_(False)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(hash(name) % 1000))
    return model


def test_fused_qlora_layers_match_peft_and_keep_the_base_4bit(smol_tokenizer):
    """QLoRA's one-node 4-bit LoRA linear: the loss and adapter gradients of PEFT's 4-bit layer, and nothing the size
    of a dequantized base weight is saved for backward (the weights stay 4-bit through the step)."""
    pytest.importorskip("bitsandbytes")
    from executor.train.fused import fuse_lora_layers

    batch = PackedStepCollator()(rows([30, 12]))["micro_batches"][0]
    results = []
    for fused in (False, True):
        model = qlora_tiny(smol_tokenizer)
        weight_shapes = {tuple(m.base_layer.weight.quant_state.shape) for m in model.modules()
                         if hasattr(m, "base_layer") and hasattr(m.base_layer.weight, "quant_state")}
        assert len(weight_shapes) >= 3  # q/o, k/v, gate/up, down: quantized
        if fused:
            assert len(fuse_lora_layers(model)) == 2 * 2 * 7  # every 4-bit linear fused
        saved = []

        def keep(t, saved=saved):
            saved.append(tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            loss = causal_lm_loss_sum(model, batch, "full")
        loss.backward()
        if fused:
            assert not weight_shapes & set(saved), "a dequantized base weight was kept for backward"
        grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.requires_grad}
        assert grads and all(g.abs().sum() > 0 for g in grads.values())
        results.append((loss.item(), grads))
    (loss_peft, g_peft), (loss_fused, g_fused) = results
    assert loss_fused == pytest.approx(loss_peft, rel=1e-4)
    for name, grad in g_peft.items():
        assert torch.allclose(g_fused[name], grad, rtol=1e-3, atol=1e-3 * grad.abs().max().item()), name


def test_packed_qlora_with_checkpointing_matches_peft_layers(tmp_path):
    """QLoRA through the product's packed path with gradient checkpointing: the one-node 4-bit layers give PEFT's
    loss curve, and the adapters learn (non-reentrant checkpointing needs no requires_grad hook on the input)."""
    pytest.importorskip("bitsandbytes")
    import json

    from test_train_sft import chat_rows, plan_for

    from executor.train.common import read_metrics
    from executor.train.runner import train

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_rows(16)))
    curves = {}
    for fused in ("on", "off"):
        plan = plan_for("qlora", data, packing="on", gradient_checkpointing="on", learning_rate=3e-3,
                        speed={"fused_lora": fused}, max_steps=5)
        result = train(plan, tmp_path / fused, model_factory=tiny_llama)
        assert result["speed"]["fused_lora"] == (fused == "on")
        curves[fused] = [m["loss"] for m in read_metrics(tmp_path / fused / "metrics.jsonl") if m.get("loss")]
    assert curves["on"] == pytest.approx(curves["off"], rel=1e-3)
    assert curves["on"][-1] < curves["on"][0]


def test_micro_batch_sizing():
    class Config:  # Llama-3.2-1B's shape
        hidden_size, intermediate_size, num_attention_heads, num_key_value_heads = 2048, 8192, 32, 8
        num_hidden_layers, vocab_size = 16, 49152

    plain = activation_bytes_per_token(Config, checkpointing=False)
    saved = activation_bytes_per_token(Config, checkpointing=True)
    assert 1.5e6 < plain < 3.5e6 and saved < plain / 5
    gib = 1 << 30
    # 100 GiB free, 10 GiB reserved: 0.6 * 100 - 10 = 50 GiB of activations
    assert micro_batch_tokens(100 * gib, 10 * gib, 1 << 20, 2048, ceiling=10**9) == 50 * 1024
    assert micro_batch_tokens(100 * gib, 10 * gib, 1 << 19, 2048) == 65_536  # 100k tokens would fit: capped
    assert micro_batch_tokens(2 * gib, 10 * gib, 1 << 20, 2048) == 2048  # never below one longest row
    assert split_micro_batches([5, 5, 5, 20, 1], 10) == [[0, 1], [2], [3], [4]]
    assert split_micro_batches([5, 5, 5], None) == [[0, 1, 2]]
    assert split_micro_batches([], 10) == []


def lora_plan(**training):
    from executor.plan import TrainingPlan

    spec = {"method": "lora", "lora": {"r": 8}, **training}
    return TrainingPlan.model_validate({"approach": "fine_tuning", "technique": "lora",
                                        "base_model": {"id": "smollm2-135m-instruct"}, "training": spec})


def test_fast_path_is_automatic_on_cuda_and_opt_in_on_cpu(monkeypatch):
    import executor.train.fused as fused

    monkeypatch.setattr(fused, "varlen_available", lambda: True)
    monkeypatch.setattr(fused, "liger_available", lambda: True)
    gpu = resolve_speedups(lora_plan(), "cuda", environ={})
    assert gpu.packed and gpu.varlen_attention and gpu.fused_kernels and gpu.auto_micro_batch and gpu.fused_lora
    assert not gpu.chunked_loss and gpu.loss == "fused" and gpu.compile
    short = resolve_speedups(lora_plan(), "cuda", environ={}, steps=125)  # compiling would cost more than it saves
    assert short.packed and short.fused_lora and not short.compile
    assert resolve_speedups(lora_plan(speed={"compile": "on"}), "cuda", environ={}, steps=125).compile
    assert not resolve_speedups(lora_plan(), "cpu", environ={}).packed
    cpu = resolve_speedups(lora_plan(packing="on"), "cpu", environ={})
    assert cpu.packed and not cpu.varlen_attention and not cpu.auto_micro_batch and not cpu.compile
    qlora = lora_plan(quantization={}).model_copy(update={"technique": "qlora"})
    quantized = resolve_speedups(qlora, "cuda", environ={})
    assert quantized.packed and not quantized.compile  # compile: untested through 4-bit layers
    prompt = lora_plan(packing="on").model_copy(update={"technique": "prompt_tuning"})
    assert not resolve_speedups(prompt, "cuda", environ={}).packed


@pytest.mark.parametrize("name", ["varlen_attention", "fused_kernels", "fused_lora", "chunked_loss",
                                  "auto_micro_batch", "compile"])
def test_each_switch_turns_its_optimization_off(monkeypatch, name):
    import executor.train.fused as fused

    monkeypatch.setattr(fused, "varlen_available", lambda: True)
    monkeypatch.setattr(fused, "liger_available", lambda: True)
    by_plan = resolve_speedups(lora_plan(speed={name: "off"}), "cuda", environ={})
    by_env = resolve_speedups(lora_plan(), "cuda", environ={"TUNEWISE_SPEED_OFF": name})
    for s in (by_plan, by_env):
        assert s.packed and getattr(s, name) is False
    if name == "fused_kernels":  # the loss falls back to chunks, never to all the logits at once
        assert by_plan.chunked_loss and by_plan.loss == "chunked"
    if name == "chunked_loss":
        off = resolve_speedups(lora_plan(speed={"chunked_loss": "off", "fused_kernels": "off"}), "cuda", environ={})
        assert off.loss == "full"


def test_whole_path_off_and_compile_on(monkeypatch):
    assert not resolve_speedups(lora_plan(packing="off"), "cuda", environ={}).packed
    assert not resolve_speedups(lora_plan(), "cuda", environ={"TUNEWISE_SPEED_OFF": "all"}).packed
    assert not resolve_speedups(lora_plan(), "cuda", environ={"TUNEWISE_SPEED_OFF": "packing"}).packed
    assert resolve_speedups(lora_plan(packing="on", speed={"compile": "on"}), "cpu", environ={}).compile
    ddp = resolve_speedups(lora_plan(), "cuda", environ={"WORLD_SIZE": "2"})
    assert ddp.packed and ddp.compile  # under DDP the packed step reduces the gradients itself (test_runs.py)
    fsdp = resolve_speedups(lora_plan(), "cuda", environ={"WORLD_SIZE": "2", "ACCELERATE_USE_FSDP": "true"})
    assert not fsdp.packed and "FSDP" in fsdp.notes[0]  # FSDP must call its root module, which the step bypasses
    with pytest.raises(ValueError, match="unknown name"):
        resolve_speedups(lora_plan(), "cuda", environ={"TUNEWISE_SPEED_OFF": "liger"})
    fixed = resolve_speedups(lora_plan(speed={"micro_batch_tokens": 4096}), "cuda", environ={})
    assert fixed.micro_batch_tokens == 4096 and not fixed.auto_micro_batch


def test_packed_training_matches_padded_training(tmp_path):
    """The same plan with the packed path on and off: same rows per step, so the same loss curve."""
    import json

    from test_train_sft import chat_rows, plan_for

    from executor.train.common import read_metrics
    from executor.train.runner import train

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_rows(24)))
    curves = {}
    for packing in ("off", "on"):
        plan = plan_for("full", data, packing=packing, gradient_accumulation_steps=2, per_device_batch_size=3,
                        learning_rate=1e-3, speed={"micro_batch_tokens": 64}, max_steps=6)
        result = train(plan, tmp_path / packing, model_factory=tiny_llama)
        curves[packing] = [m["loss"] for m in read_metrics(tmp_path / packing / "metrics.jsonl") if m.get("loss")]
        if packing == "on":
            assert result["speed"]["packed"] and result["speed"]["micro_batch_tokens"] == 64
    assert len(curves["on"]) == 6
    assert curves["on"] == pytest.approx(curves["off"], rel=2e-3)


# ---- on a GPU (skipped elsewhere): the CUDA kernels against the same references --------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def gpu_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).cuda().to(torch.bfloat16).eval()
    model.config.use_cache = False
    return model


@cuda
def test_flash_varlen_attention_matches_unpacked_on_gpu():
    from executor.train.fused import varlen_available

    assert varlen_available(), "torch.nn.attention.varlen is missing on this GPU machine"
    model = gpu_model()
    batch = rows([300, 7, 1000, 64], vocab=512)
    reference = unpacked_loss_sums(model.cpu().float(), batch)
    model = model.cuda().to(torch.bfloat16)
    model.set_attn_implementation(register_varlen_attention())
    b = {k: v.cuda() if isinstance(v, torch.Tensor) else v
         for k, v in PackedStepCollator()(batch)["micro_batches"][0].items()}
    with torch.no_grad():
        hidden = model.model(input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False,
                             **{k: b[k] for k in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")}
                             ).last_hidden_state
        per_token = torch.nn.functional.cross_entropy(model.lm_head(hidden)[0].float(), b["shift_labels"][0],
                                                      ignore_index=IGNORE_INDEX, reduction="none")
    cu = b["cu_seq_lens_q"].tolist()
    packed = [per_token[a:z].sum().item() for a, z in zip(cu[:-1], cu[1:], strict=True)]
    assert packed == pytest.approx(reference, rel=2e-2)  # bf16 against fp32


@cuda
def test_liger_fused_loss_matches_chunked_loss_on_gpu():
    pytest.importorskip("liger_kernel")
    from executor.train.fused import apply_liger_modules, liger_rope

    model = gpu_model().train()
    batch = {k: v.cuda() if isinstance(v, torch.Tensor) else v
             for k, v in PackedStepCollator()(rows([200, 50, 90], vocab=512))["micro_batches"][0].items()}
    model.set_attn_implementation(register_varlen_attention())
    losses, grads = {}, {}
    for kind in ("chunked", "fused"):
        if kind == "fused":
            assert apply_liger_modules(model)
        model.zero_grad()
        with liger_rope(model) if kind == "fused" else torch.autocast("cuda", enabled=False):
            loss = causal_lm_loss_sum(model, batch, kind)
            loss.backward()
        losses[kind] = loss.item()
        grads[kind] = model.model.layers[0].mlp.up_proj.weight.grad.float().clone()
    assert losses["fused"] == pytest.approx(losses["chunked"], rel=1e-2)
    cosine = torch.nn.functional.cosine_similarity(grads["fused"].flatten(), grads["chunked"].flatten(), dim=0)
    assert cosine.item() > 0.99
