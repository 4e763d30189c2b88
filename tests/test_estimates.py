"""Memory / time / cost formulas (assistant/estimates.py): the documented numbers, not vibes."""

from __future__ import annotations

import pytest

from assistant.estimates import estimate, lora_trainable_params, techniques_that_fit, training_memory_gb


def test_full_fine_tuning_costs_16_bytes_per_parameter(knowledge):
    model = knowledge.models["llama-3.1-8b-instruct"]
    tiny_batch = training_memory_gb(model, "full", micro_batch=1, seq_len=16, gradient_checkpointing=True)
    assert tiny_batch == pytest.approx(model.params_b * 16 + 1.0, rel=0.02)
    # Sharded over 8 GPUs (FSDP), the state per GPU is an eighth.
    sharded = training_memory_gb(model, "full", micro_batch=1, seq_len=16, gradient_checkpointing=True, gpu_count=8)
    assert sharded == pytest.approx(model.params_b * 2 + 1.0, rel=0.03)


def test_qlora_weights_are_about_a_quarter_of_lora(knowledge):
    model = knowledge.models["llama-3.1-8b-instruct"]
    kwargs = dict(micro_batch=1, seq_len=16, gradient_checkpointing=True)
    lora = training_memory_gb(model, "lora", **kwargs) - 1.0
    qlora = training_memory_gb(model, "qlora", **kwargs) - 1.0
    adapters = lora_trainable_params(model, 16) * 16 / 1e9
    assert (qlora - adapters) / (lora - adapters) == pytest.approx(0.55 / 2.0, rel=0.02)


def test_memory_grows_with_batch_and_shrinks_with_checkpointing(knowledge):
    model = knowledge.models["qwen2.5-7b-instruct"]
    small = training_memory_gb(model, "lora", micro_batch=1, gradient_checkpointing=False)
    big = training_memory_gb(model, "lora", micro_batch=8, gradient_checkpointing=False)
    ckpt = training_memory_gb(model, "lora", micro_batch=8, gradient_checkpointing=True)
    assert small < ckpt < big


def test_what_fits(knowledge):
    llama70 = knowledge.models["llama-3.1-70b-instruct"]
    assert techniques_that_fit(llama70, 80, 1, knowledge) == ["qlora"]
    smol = knowledge.models["smollm2-135m-instruct"]
    assert set(techniques_that_fit(smol, 16, 1, knowledge)) == set(smol.methods)
    assert techniques_that_fit(smol, 0, 0, knowledge) == []


def test_time_and_cost_on_a_named_gpu(knowledge):
    model = knowledge.models["llama-3.1-8b-instruct"]
    est = estimate(model, "lora", examples=10_000, epochs=2, micro_batch=4, seq_len=1024, lora_r=16,
                   gpu_memory_gb=80, gpu_count=1, gpu_name="h100-80gb", knowledge=knowledge)
    h100 = next(g for g in knowledge.gpus if g.id == "h100-80gb")
    tokens = 10_000 * knowledge.hardware["defaults"]["tokens_per_example"] * 2
    hours = 4 * model.params_b * 1e9 * tokens / (h100.bf16_tflops * 1e12 * knowledge.hardware["defaults"]["mfu"]) / 3600
    assert est.train_hours == pytest.approx(hours, abs=1e-3)  # reported to 3 decimals
    assert est.cost_usd == pytest.approx(hours * h100.price_per_hour_usd, abs=0.01)


def test_cpu_estimate_uses_the_measured_rate(knowledge):
    model = knowledge.models["smollm2-135m-instruct"]
    est = estimate(model, "lora", examples=1000, epochs=3, micro_batch=2, seq_len=512, lora_r=8,
                   gpu_memory_gb=0.0, gpu_count=0, gpu_name=None, knowledge=knowledge)
    assert "CPU" in est.hardware
    # ~441 tokens/s measured for SmolLM2 LoRA here: 1,050,000 tokens take on the order of 40 minutes.
    assert 0.3 < est.train_hours < 1.5


def test_the_micro_batch_is_chosen_with_the_same_headroom_as_the_model(knowledge):
    from assistant.recommend import fit_micro_batch, training_spec

    model = knowledge.models["qwen2.5-1.5b-instruct"]  # micro-batch 4 needs 15.3 GB: fits 16 GB, not 85% of it
    train = training_spec("lora", "fine_tuning", 5000, True, knowledge)
    fitted = fit_micro_batch(train, model, 16.0, 1, knowledge)
    need = training_memory_gb(model, "lora", micro_batch=fitted.per_device_batch_size, seq_len=fitted.max_seq_length,
                              lora_r=fitted.lora.r, gradient_checkpointing=fitted.gradient_checkpointing == "on")
    assert need <= knowledge.sizing["headroom"] * 16.0
    effective = train.per_device_batch_size * train.gradient_accumulation_steps
    assert fitted.per_device_batch_size * fitted.gradient_accumulation_steps == effective
