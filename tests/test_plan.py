"""The TrainingPlan contract: validation, YAML round-trip, errors that name the field."""

from __future__ import annotations

from pathlib import Path

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


def test_with_overrides_sets_dotted_paths_and_validates_the_whole_plan():
    plan = lora_plan()
    edited = plan.with_overrides({"training.lora.r": 32, "training.learning_rate": "3e-4", "training.max_steps": 5,
                                  "data.path": "/data/prepared", "evaluation.after_training": True})
    assert (edited.training.lora.r, edited.training.learning_rate, edited.training.max_steps) == (32, 3e-4, 5)
    assert (edited.data.path, edited.evaluation.after_training) == ("/data/prepared", True)
    assert plan.training.lora.r == 8  # a new plan; the original stays as it was
    # The paths knowledge/hyperparameters.yaml uses, under training.
    table = Path(__file__).parents[1] / "knowledge" / "hyperparameters.yaml"
    tuned = yaml.safe_load(table.read_text(encoding="utf-8"))["techniques"]["lora"]["base"]
    assert plan.with_overrides({f"training.{k}": v for k, v in tuned.items()}).training.lora.alpha == 32


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"training.lora.rank": 4}, r"training\.lora\.rank: unknown field; training\.lora has: r, alpha"),
        ({"trainin.epochs": 1}, r"trainin: unknown field; the plan has: schema_version"),
        ({"training.lora.r": 0}, r"invalid plan: training\.lora\.r: Input should be greater than or equal to 1"),
        ({"training.epochs": "many"}, r"invalid plan: training\.epochs: Input should be a valid number"),
        ({"training.quantization.bits": 4}, r"training\.quantization: this plan has no quantization section"),
        ({"training.epochs.x": 1}, r"training\.epochs: is a value, not a section"),
        ({"technique": "dpo"}, r"invalid plan: <plan>: .*differs from technique 'dpo'"),
    ],
)
def test_with_overrides_errors_are_the_plans_own(overrides, message):
    with pytest.raises(PlanError, match=message):
        lora_plan().with_overrides(overrides)
