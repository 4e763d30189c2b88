"""SFT recipes on CPU with a tiny random Llama and the SmolLM2 tokenizer: loss goes down, outputs reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.models.loader import tiny_llama
from executor.plan import TrainingPlan, load_plan
from executor.train.common import read_metrics
from executor.train.data import IGNORE_INDEX, tokenize_chat
from executor.train.runner import PlanCannotRun, train

CAPITALS = [("France", "Paris"), ("Spain", "Madrid"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Peru", "Lima"),
            ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Chile", "Santiago"), ("Egypt", "Cairo"), ("Cuba", "Havana")]


def chat_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        country, city = CAPITALS[i % len(CAPITALS)]
        rows.append({"messages": [{"role": "user", "content": f"Capital of {country}?"},
                                  {"role": "assistant", "content": f"The capital of {country} is {city}."}]})
    return rows


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("chat-data")
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_rows(40)))
    (data / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_rows(10)))
    return data


def plan_for(technique: str, data: Path | None = None, **training) -> TrainingPlan:
    spec = {"method": technique, "epochs": 1, "learning_rate": 1e-2, "per_device_batch_size": 4,
            "early_stopping_patience": None,
            "gradient_accumulation_steps": 1, "max_seq_length": 128, "warmup_ratio": 0.0, "lr_scheduler": "constant"}
    if technique in ("lora", "qlora"):
        spec["lora"] = {"r": 8, "alpha": 16, "dropout": 0.0}
    if technique == "qlora":
        spec["quantization"] = {"bits": 4, "compute_dtype": "float32"}
    if technique == "prompt_tuning":
        spec["prompt_tuning"] = {"num_virtual_tokens": 8}
        spec["learning_rate"] = 3e-1
    spec.update(training)
    return TrainingPlan.model_validate({"approach": "fine_tuning", "technique": technique,
                                        "base_model": {"id": "smollm2-135m-instruct"}, "training": spec,
                                        "data": {"path": str(data) if data else None},
                                        "hardware": {"device": "cpu"}})


def test_loss_mask_covers_exactly_the_assistant_tokens(smol_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Capital of Peru?"},
                {"role": "assistant", "content": "Lima."}]
    item = tokenize_chat(smol_tokenizer, messages, 512)
    trained = [tok for tok, label in zip(item["input_ids"], item["labels"], strict=True) if label != IGNORE_INDEX]
    assert smol_tokenizer.decode(trained) == "Hello!<|im_end|>\nLima.<|im_end|>\n"
    assert item["labels"][: len(item["labels"]) - len(trained)].count(IGNORE_INDEX) > 0
    # Every token outside the two replies is masked: the prompt, the roles, the system prompt.
    full = smol_tokenizer.decode(item["input_ids"])
    assert full.startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_truncation_that_removes_the_reply_drops_the_row(smol_tokenizer):
    messages = [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "ok"}]
    assert tokenize_chat(smol_tokenizer, messages, 32) is None


# How much the mean of the last three logged losses must sit below the first three's. A soft prompt on a
# random 2-layer model has little leverage (it acts only through attention), hence its smaller margin.
MIN_DROP = {"full": 0.5, "lora": 0.3, "qlora": 0.3, "prompt_tuning": 0.03}


@pytest.mark.parametrize("technique", ["full", "lora", "qlora", "prompt_tuning"])
def test_sft_methods_learn_and_reload(technique, chat_data, tmp_path, smol_tokenizer):
    run = tmp_path / technique
    result = train(plan_for(technique, chat_data, max_steps=20), run, model_factory=tiny_llama)
    metrics = read_metrics(run / "metrics.jsonl")
    losses = [m["loss"] for m in metrics if m.get("loss") is not None]
    assert len(losses) >= 6 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - MIN_DROP[technique], losses
    assert any(m.get("eval_loss") is not None for m in metrics)
    assert (run / "loss_curve.png").stat().st_size > 0 and (run / "plan.yaml").exists()
    assert result["steps"] == 20 and result["final_loss"] == losses[-1]
    if technique == "full":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(run / "model")
        assert model.config.hidden_size == 64
        return
    from peft import PeftModel

    reloaded = PeftModel.from_pretrained(tiny_llama(smol_tokenizer), run / "adapter")
    assert reloaded.peft_config["default"].peft_type.value == {"lora": "LORA", "qlora": "LORA",
                                                               "prompt_tuning": "PROMPT_TUNING"}[technique]
    if technique in ("lora", "qlora"):
        from transformers import AutoModelForCausalLM

        merged = AutoModelForCausalLM.from_pretrained(run / "merged")
        assert str(merged.dtype) == "torch.bfloat16"
        enc = smol_tokenizer.apply_chat_template([{"role": "user", "content": "Capital of Peru?"}],
                                                 add_generation_prompt=True, return_tensors="pt", return_dict=True)
        out = merged.generate(**enc, max_new_tokens=5, do_sample=False)
        assert out.shape[1] == enc["input_ids"].shape[1] + 5 or smol_tokenizer.eos_token_id in out[0].tolist()


def test_resume_gives_the_same_result_as_an_uninterrupted_run(chat_data, tmp_path):
    plan = plan_for("lora", chat_data, lr_scheduler="linear", max_steps=10)
    straight = train(plan, tmp_path / "straight", model_factory=tiny_llama)
    stopped = train(plan, tmp_path / "crashed", model_factory=tiny_llama, stop_after_step=5)
    assert stopped == {"stopped_at_step": 5}
    resumed = train(plan, tmp_path / "crashed", model_factory=tiny_llama, resume=True)
    assert resumed["steps"] == straight["steps"] == 10
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], rel=1e-4)
    assert resumed["best_eval_loss"] == pytest.approx(straight["best_eval_loss"], rel=1e-4)
    steps = [m["step"] for m in read_metrics(tmp_path / "crashed" / "metrics.jsonl") if m.get("loss") is not None]
    assert steps == sorted(steps) and steps[-1] == 10  # nothing recorded before the crash was lost


def test_dry_run_uses_a_tiny_model_and_few_steps(chat_data, tmp_path):
    result = train(plan_for("lora", chat_data), tmp_path / "dry", dry_run=True)
    assert result["dry_run"] and result["steps"] == 3
    assert load_plan(tmp_path / "dry" / "plan.yaml").training.max_steps == 3  # the run directory says what ran


@pytest.mark.parametrize(
    ("plan_change", "data_change", "message"),
    [
        ({"base_model": {"id": "no-such-model"}}, None, "base_model.id: unknown model 'no-such-model'"),
        ({"base_model": {"id": "llama-3.1-8b-instruct", "source": "hub"}}, None, "no network and no local copy"),
        ({"base_model": {"id": "gpt-4o-mini-2024-07-18", "source": "api"}}, None, "technique 'api'"),
        ({"hardware": {"device": "cuda"}}, None, "hardware.device"),
        ({"technique": "dpo", "training": {"method": "dpo", "preference": {}}}, None, "needs preference pairs"),
        ({"technique": "none", "approach": "prompting", "training": None}, None, "trains nothing"),
        (None, "missing", "missing or empty train.jsonl"),
    ],
)
def test_plans_that_cannot_run_fail_before_loading_weights(chat_data, tmp_path, plan_change, data_change, message,
                                                           monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = plan_for("lora").model_dump()
    for key, value in (plan_change or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict) and key != "training":
            data[key].update(value)
        else:
            data[key] = value
    folder = tmp_path / "empty" if data_change == "missing" else chat_data
    folder.mkdir(exist_ok=True)
    plan = TrainingPlan.model_validate(data).with_overrides({"data.path": str(folder)})
    with pytest.raises(PlanCannotRun, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(plan, tmp_path / "run", model_factory=lambda tok: pytest.fail("weights were loaded"))


def test_packing_does_not_let_examples_see_each_other(smol_tokenizer):
    """The packed (padding-free) batch gives the same loss as the padded one: no cross-contamination."""
    import torch
    from transformers import DataCollatorWithFlattening

    from executor.train.data import PadCollator

    model = tiny_llama(smol_tokenizer).eval()
    model.config.use_cache = False  # as in training: with a KV cache transformers does not look for packing
    features = [tokenize_chat(smol_tokenizer, row["messages"], 128) for row in chat_rows(3)]
    features[1] = tokenize_chat(smol_tokenizer, [{"role": "user", "content": "A longer question about Kenya?"},
                                                 {"role": "assistant", "content": "Nairobi, as always."}], 128)
    padded = PadCollator(smol_tokenizer.pad_token_id)(features)
    packed = DataCollatorWithFlattening(return_position_ids=True)([{k: f[k] for k in ("input_ids", "labels")}
                                                                   for f in features])
    with torch.no_grad():
        loss_padded = model(**padded).loss
        loss_packed = model(input_ids=packed["input_ids"], labels=packed["labels"],
                            position_ids=packed["position_ids"]).loss
        # Without the position ids the examples would attend across boundaries, and the loss would differ.
        loss_leaky = model(input_ids=packed["input_ids"], labels=packed["labels"]).loss
    assert loss_packed.item() == pytest.approx(loss_padded.item(), abs=1e-4)
    assert abs(loss_leaky.item() - loss_padded.item()) > 1e-4


def test_packed_training_runs(chat_data, tmp_path):
    result = train(plan_for("lora", chat_data, packing="on", max_steps=6), tmp_path / "packed",
                   model_factory=tiny_llama)
    assert result["steps"] == 6 and result["final_loss"] < result["first_loss"]


def test_a_half_written_checkpoint_falls_back_to_the_previous_one(chat_data, tmp_path):
    plan = plan_for("lora", chat_data, lr_scheduler="linear", max_steps=10)
    straight = train(plan, tmp_path / "straight", model_factory=tiny_llama)
    train(plan, tmp_path / "crashed", model_factory=tiny_llama, stop_after_step=6)
    checkpoints = sorted((tmp_path / "crashed" / "checkpoints").glob("checkpoint-*"),
                         key=lambda p: int(p.name.split("-")[-1]))
    newest = checkpoints[-1]
    (newest / "trainer_state.json").write_text('{"global_step": 6, "log_hist')  # cut off mid-write
    resumed = train(plan, tmp_path / "crashed", model_factory=tiny_llama, resume=True)
    assert not newest.exists() or (newest / "trainer_state.json").read_text().startswith('{\n')
    assert any("incomplete" in note for note in resumed["notes"])
    assert resumed["steps"] == 10
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], rel=1e-4)
