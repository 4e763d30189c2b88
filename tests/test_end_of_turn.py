"""Issue #15.1: the end of turn comes from the chat template, and every stop setting agrees with it."""

from __future__ import annotations

import json

import pytest

from executor.models.end_of_turn import end_of_turn_token, set_generation_stop, stop_token_ids, with_end_of_turn


def test_the_bundled_tokenizer_ends_a_turn_with_im_end(smol_tokenizer):
    assert end_of_turn_token(smol_tokenizer) == "<|im_end|>"
    assert smol_tokenizer.eos_token == "<|im_end|>"
    assert smol_tokenizer.pad_token not in (None, "<|im_end|>")


def test_a_library_eos_that_disagrees_is_replaced(smol_tokenizer):
    # transformers 5.17's GGUF conversion gave eos = <|im_start|> for the bundled SmolLM2 (issue #15).
    import copy

    tokenizer = copy.deepcopy(smol_tokenizer)
    tokenizer.eos_token = "<|im_start|>"
    assert with_end_of_turn(tokenizer).eos_token == "<|im_end|>"
    assert stop_token_ids(tokenizer)[0] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_the_template_decides_for_other_models(smol_tokenizer):
    import copy

    tokenizer = copy.deepcopy(smol_tokenizer)
    # A Llama-3-like template whose turn ends with a different special token.
    tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                               "<|endoftext|>{% endfor %}")
    assert end_of_turn_token(tokenizer) == "<|endoftext|>"
    assert with_end_of_turn(tokenizer).eos_token == "<|endoftext|>"


def test_model_configs_carry_the_stop_ids(smol_tokenizer):
    from executor.models.loader import tiny_llama

    model = tiny_llama(smol_tokenizer)
    model.config.eos_token_id = 1  # what a mis-converted config says
    model.generation_config.eos_token_id = 1
    set_generation_stop(model, smol_tokenizer)
    im_end = smol_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.config.eos_token_id == im_end
    assert model.generation_config.eos_token_id[0] == im_end and 1 in model.generation_config.eos_token_id


SHORT = [("red", "Red."), ("sky", "Blue."), ("grass", "Green."), ("snow", "White."), ("coal", "Black.")]


@pytest.mark.slow
def test_a_tuned_model_stops_after_its_answer(tmp_path, smol_tokenizer):
    """Full fine-tuning of a tiny model on short answers: generation ends at the end of turn, not at the limit,
    and the saved model and tokenizer say so."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from executor.evaluate.generate import generate
    from executor.models.loader import tiny_llama
    from executor.plan import TrainingPlan
    from executor.train.runner import train

    data = tmp_path / "data"
    data.mkdir()
    rows = [{"messages": [{"role": "user", "content": f"Color of {q}?"}, {"role": "assistant", "content": a}]}
            for q, a in SHORT] * 8
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = TrainingPlan.model_validate({
        "approach": "fine_tuning", "technique": "full", "base_model": {"id": "smollm2-135m-instruct"},
        "hardware": {"device": "cpu"},
        "training": {"method": "full", "epochs": 1, "learning_rate": 3e-3, "per_device_batch_size": 8,
                     "gradient_accumulation_steps": 1, "max_seq_length": 64, "warmup_ratio": 0.0,
                     "lr_scheduler": "constant", "early_stopping_patience": None},
    })
    run = tmp_path / "run"
    plan = plan.with_overrides({"data.path": str(data), "training.max_steps": 60})
    train(plan, run, model_factory=lambda tok: tiny_llama(tok, hidden=128, layers=2))
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == "<|im_end|>"
    assert im_end in [model.generation_config.eos_token_id] + list(
        model.generation_config.eos_token_id if isinstance(model.generation_config.eos_token_id, list) else [])
    answers = generate(model, tokenizer, [[{"role": "user", "content": f"Color of {q}?"}] for q, _ in SHORT],
                       max_new_tokens=24)
    # Each generation is one trained answer and nothing after it: it stopped at the end of turn, 20 tokens
    # before the limit (which a model still mapping colors would reach with run-on text).
    assert set(answers) <= {a for _, a in SHORT}, answers


def test_a_weights_only_folder_still_loads(tmp_path, smol_tokenizer):
    from executor.models.loader import Placement, load_causal_lm, tiny_llama

    tiny_llama(smol_tokenizer).save_pretrained(tmp_path / "weights-only")  # no tokenizer files beside it
    model = load_causal_lm(str(tmp_path / "weights-only"), Placement("cpu", "float32"))
    assert model.config.eos_token_id == smol_tokenizer.eos_token_id


def test_a_folder_with_its_tokenizer_gets_the_end_of_turn(tmp_path, smol_tokenizer):
    import copy

    from executor.models.loader import Placement, load_causal_lm, tiny_llama

    folder = tmp_path / "with-tokenizer"
    model = tiny_llama(smol_tokenizer)
    model.config.eos_token_id = 1
    model.save_pretrained(folder)
    old = copy.deepcopy(smol_tokenizer)
    old.eos_token = "<|im_start|>"  # as a library version mis-converted it
    old.save_pretrained(folder)
    loaded = load_causal_lm(str(folder), Placement("cpu", "float32"))
    assert loaded.config.eos_token_id == smol_tokenizer.convert_tokens_to_ids("<|im_end|>")
