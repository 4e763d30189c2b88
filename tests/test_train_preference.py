"""DPO and RLHF (reward model + GRPO) on CPU with a tiny random Llama and the SmolLM2 tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.models.loader import tiny_llama
from executor.plan import TrainingPlan
from executor.train.common import read_metrics
from executor.train.runner import train

GOOD = "Yes, you can return it within 30 days for a full refund."
BAD = "No."


def pairs(n: int) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"Can I return item {i}?"}],
             "chosen": [{"role": "assistant", "content": GOOD}],
             "rejected": [{"role": "assistant", "content": BAD}]} for i in range(n)]


@pytest.fixture(scope="module")
def pref_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("pref-data")
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs(24)))
    (data / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs(6)))
    return data


def plan_for(technique: str, **training) -> TrainingPlan:
    spec = {"method": technique, "epochs": 1, "learning_rate": 5e-3, "per_device_batch_size": 4,
            "gradient_accumulation_steps": 1, "max_seq_length": 96, "warmup_ratio": 0.0, "lr_scheduler": "constant",
            "early_stopping_patience": None, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}
    if technique == "dpo":
        spec["preference"] = {"beta": 0.1}
    else:
        spec["rlhf"] = {"reward_learning_rate": 5e-3, "policy_learning_rate": 1e-3, "num_generations": 4,
                        "kl_beta": 0.04}
    spec.update(training)
    return TrainingPlan.model_validate({"approach": "fine_tuning", "technique": technique,
                                        "base_model": {"id": "smollm2-135m-instruct"}, "training": spec,
                                        "hardware": {"device": "cpu"}})


def test_dpo_learns_the_preference(pref_data, tmp_path, smol_tokenizer):
    run = tmp_path / "dpo"
    result = train(plan_for("dpo", max_steps=12).with_overrides({"data.path": str(pref_data)}), run,
                   model_factory=tiny_llama)
    metrics = [m for m in read_metrics(run / "metrics.jsonl") if m.get("loss") is not None]
    losses = [m["loss"] for m in metrics]
    assert losses[0] == pytest.approx(0.6931, abs=0.01)  # log 2: policy == reference at the start
    assert sum(losses[-3:]) / 3 < losses[0] - 0.1, losses
    margins = [m["rewards/margins"] for m in metrics if "rewards/margins" in m]
    assert margins[-1] > 0  # the chosen reply now scores above the rejected one
    from peft import PeftModel

    PeftModel.from_pretrained(tiny_llama(smol_tokenizer), run / "adapter")
    assert (run / "merged" / "config.json").exists() and result["steps"] == 12


@pytest.mark.slow
def test_rlhf_reward_model_then_grpo(pref_data, tmp_path, smol_tokenizer):
    run = tmp_path / "rlhf"
    result = train(plan_for("rlhf", max_steps=4).with_overrides({"data.path": str(pref_data)}), run,
                   model_factory=tiny_llama)
    metrics = read_metrics(run / "metrics.jsonl")
    reward_losses = [m["loss"] for m in metrics if m.get("stage") == "reward" and m.get("loss") is not None]
    assert reward_losses[-1] < reward_losses[0]
    assert result["reward_pairwise_accuracy"] == 1.0  # chosen and rejected are easy to tell apart
    policy = [m for m in metrics if m.get("stage") == "policy"]
    assert any("reward" in m for m in policy)  # GRPO logged the reward model's scores
    assert (run / "reward" / "model" / "config.json").exists() and (run / "adapter").exists()
