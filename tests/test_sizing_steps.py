"""The advisor's step sizing for a small model on a big GPU (knowledge/hyperparameters.yaml `large_steps`)."""

from __future__ import annotations

import pytest

from assistant.knowledge import load_knowledge
from assistant.recommend import training_spec
from assistant.sizing import large_steps


@pytest.fixture(scope="module")
def kn():
    return load_knowledge()


def rows(train) -> int:
    return train.per_device_batch_size * train.gradient_accumulation_steps


def test_banking77_on_an_h200_gets_the_measured_large_steps(kn):
    """10,000 examples, SmolLM2-135M, one 141 GB GPU: the plan measured on the H200 (256 rows a step, lr 1.7e-3,
    4 epochs = 128 steps over 7,963 rows: 87.7% on Banking77's test set in 41.7 s of training)."""
    base = training_spec("lora", "fine_tuning", 10_000, True, kn)
    assert rows(base) == 16 and base.learning_rate == 2e-4 and base.epochs == 2 and base.lora.dropout == 0.0
    sized = large_steps(base, kn.models["smollm2-135m-instruct"], 141.0, 1, 10_000, kn)
    assert rows(sized) == 256 and sized.per_device_batch_size == 32
    assert sized.learning_rate == pytest.approx(1.7e-3) and sized.epochs == 4


@pytest.mark.parametrize("model, gpu_gb, examples", [
    ("smollm2-135m-instruct", 141.0, 900),   # too few rows for 30 steps an epoch at 32 rows
    ("smollm2-135m-instruct", None, 10_000),  # GPU memory unknown
])
def test_steps_stay_as_they_are_where_the_rule_does_not_apply(kn, model, gpu_gb, examples):
    base = training_spec("lora", "fine_tuning", examples, True, kn)
    assert large_steps(base, kn.models[model], gpu_gb, 1, examples, kn) == base


def test_a_model_that_fills_the_gpu_keeps_its_steps(kn):
    big = max((m for m in kn.models.values() if m.params_b and "lora" in m.methods), key=lambda m: m.params_b)
    base = training_spec("lora", "fine_tuning", 10_000, True, kn)
    assert large_steps(base, big, 24.0, 1, 10_000, kn) == base
