"""The TrainingPlan contract: validation, YAML round-trip, errors that name the field."""

from __future__ import annotations

import pytest
import yaml

from executor.plan import PlanError, TrainingPlan, dump_plan, load_plan


def lora_plan(**overrides):
    data = {
        "approach": "fine_tuning",
        "technique": "lora",
        "base_model": {"id": "smollm2-135m-instruct"},
        "training": {"method": "lora", "lora": {"r": 8, "alpha": 16}},
    }
    data.update(overrides)
    return TrainingPlan.model_validate(data)


def test_round_trip(tmp_path):
    plan = lora_plan()
    path = dump_plan(plan, tmp_path / "plan.yaml")
    assert load_plan(path) == plan
    assert path.read_text().startswith("# Tunewise training plan")


def test_recommendation_plans_round_trip(advisor, tmp_path):
    for text in ["We have 5,000 preference pairs and an H100.", "Prices change hourly; cite sources.",
                 "We must use the OpenAI API; 2,000 examples in our tone.", ""]:
        plan = advisor.recommend(text).plan
        assert load_plan(dump_plan(plan, tmp_path / "p.yaml")) == plan


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["training"].update(learning_rate=-1), "training.learning_rate"),
        (lambda d: d.update(technique="dpo"), "does not fit|differs"),
        (lambda d: d.update(approach="rag"), "does not fit approach 'rag'"),
        (lambda d: d["training"].pop("lora"), "needs the section(s): lora"),
        (lambda d: d.update(schema_version=99), "schema_version 99 is not supported"),
        (lambda d: d["training"].update(lora_rank=8), "training.lora_rank: Extra inputs"),
        (lambda d: d["data"]["split"].update(train=0.9), "split fractions must sum to 1.0"),
    ],
)
def test_invalid_plans_name_the_field(tmp_path, edit, message):
    data = lora_plan().model_dump(mode="json")
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert str(path) in str(err.value)
    assert any(part in str(err.value) for part in message.split("|")), str(err.value)


def test_missing_and_non_mapping_files(tmp_path):
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(PlanError, match="a plan is a YAML mapping"):
        load_plan(tmp_path / "list.yaml")


def test_rag_plans_need_retrieval():
    with pytest.raises(ValueError, match="needs a 'retrieval' section"):
        TrainingPlan.model_validate(
            {"approach": "rag", "technique": "none", "base_model": {"id": "smollm2-135m-instruct"}}
        )


def test_every_detected_layout_is_a_plan_data_format():
    from typing import get_args

    from executor.data.schema import FORMATS
    from executor.plan import DataFormat

    assert set(FORMATS) <= set(get_args(DataFormat))
