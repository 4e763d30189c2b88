"""The technique table (executor/plan.py) is the one definition of each technique's properties."""

from typing import get_args

from assistant.profile import TechniqueName
from executor.plan import COMPATIBLE_TECHNIQUES, TECHNIQUES, TRAINING_TECHNIQUES, LoraSpec, Technique, trains, uses_lora


def test_the_table_names_every_technique_of_the_plan_in_its_order():
    assert tuple(TECHNIQUES) == get_args(Technique)
    assert {t for ts in COMPATIBLE_TECHNIQUES.values() for t in ts} <= set(TECHNIQUES)
    # A user may ask for any technique that does something ("none" is the advisor's answer, never a request).
    assert set(get_args(TechniqueName)) == set(TECHNIQUES) - {"none"}


def test_properties_of_each_technique():
    assert TRAINING_TECHNIQUES == ("full", "lora", "qlora", "prompt_tuning", "dpo", "rlhf")
    assert not trains("none") and not trains("api") and TECHNIQUES["api"].hosted
    assert [t for t, i in TECHNIQUES.items() if i.needs_preference_data] == ["dpo", "rlhf"]
    assert [t for t, i in TECHNIQUES.items() if i.adapters] == ["lora", "qlora", "prompt_tuning"]
    assert [t for t, i in TECHNIQUES.items() if i.quantized] == ["qlora"]
    assert TECHNIQUES["qlora"].sections == ("lora", "quantization")


def test_lora_is_used_always_by_lora_and_qlora_and_by_preference_methods_when_the_plan_says():
    assert uses_lora("lora", None) and uses_lora("qlora", None)
    assert not uses_lora("dpo", None) and uses_lora("dpo", LoraSpec()) and uses_lora("rlhf", LoraSpec())
    assert not uses_lora("full", LoraSpec()) and not uses_lora("prompt_tuning", LoraSpec())


def test_per_technique_numbers_cover_exactly_the_training_techniques():
    # Numbers that belong to one model each (the advisor's FLOPs factors, the launcher's bytes per parameter)
    # stay with their formulas, keyed by the table's names.
    from assistant.estimates import FLOPS_PER_PARAM_TOKEN
    from executor.train.distributed import BYTES_PER_PARAM

    assert set(FLOPS_PER_PARAM_TOKEN) == set(TRAINING_TECHNIQUES)
    assert set(BYTES_PER_PARAM) == set(TRAINING_TECHNIQUES)
