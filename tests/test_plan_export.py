"""Plans as Axolotl and LLaMA-Factory configs: every key is one the tool documents, values carry over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from executor.export.plan_configs import PlanExportError, export_plan, to_axolotl, to_llamafactory
from executor.plan import TrainingPlan, dump_plan

# Keys of axolotl's config schema (axolotl-ai-cloud/axolotl, src/axolotl/utils/schemas/: config.py
# AxolotlInputConfig, peft.py LoraConfig, training.py HyperparametersConfig, model.py ModelInputConfig /
# ModelOutputConfig) that an export may use.
AXOLOTL_KEYS = {
    "base_model", "tokenizer_type", "chat_template", "rl", "rl_beta", "adapter", "load_in_4bit", "load_in_8bit",
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_linear", "lora_target_modules", "bnb_config_kwargs",
    "datasets", "test_datasets", "val_set_size", "dataset_prepared_path", "output_dir", "sequence_len",
    "sample_packing", "train_on_inputs", "micro_batch_size", "gradient_accumulation_steps", "num_epochs",
    "learning_rate", "lr_scheduler", "warmup_ratio", "weight_decay", "optimizer", "bf16", "gradient_checkpointing",
    "seed", "logging_steps", "early_stopping_patience", "load_best_model_at_end", "metric_for_best_model",
    "greater_is_better",
}
# datasets.py: SFTDataset and DPODataset fields.
AXOLOTL_SFT_DATASET_KEYS = {"path", "split", "type", "ds_type", "data_files", "field_messages",
                            "message_property_mappings", "roles_to_train", "chat_template", "field"}
AXOLOTL_DPO_DATASET_KEYS = {"path", "split", "type", "data_files", "revision", "field_messages"}
# LLaMA-Factory (hiyouga/LLaMA-Factory, src/llamafactory/hparams/): model_args.py, data_args.py,
# finetuning_args.py.
LLAMAFACTORY_OWN_KEYS = {
    "model_name_or_path", "quantization_bit", "quantization_method", "quantization_type", "double_quantization",
    "disable_gradient_checkpointing", "template", "dataset", "eval_dataset", "dataset_dir", "cutoff_len",
    "train_on_prompt", "packing", "val_size", "stage", "finetuning_type", "lora_rank", "lora_alpha", "lora_dropout",
    "lora_target", "pref_beta", "pref_loss", "plot_loss",
}
# The rest go to transformers' Seq2SeqTrainingArguments. LLaMA-Factory pins transformers <= 4.57.1 (its
# pyproject.toml), whose TrainingArguments still has warmup_ratio (transformers 5 folded it into warmup_steps),
# so these are 4.57's documented fields, not the installed version's.
TRAINING_ARGUMENT_KEYS = {
    "do_train", "output_dir", "per_device_train_batch_size", "per_device_eval_batch_size",
    "gradient_accumulation_steps", "num_train_epochs", "learning_rate", "lr_scheduler_type", "warmup_ratio",
    "weight_decay", "bf16", "seed", "logging_steps", "save_steps", "eval_strategy", "eval_steps",
}
# data/README.md of LLaMA-Factory: the keys of a dataset_info.json entry.
LLAMAFACTORY_DATASET_KEYS = {"file_name", "formatting", "ranking", "columns", "tags"}
LLAMAFACTORY_COLUMNS = {"prompt", "query", "response", "history", "messages", "system", "tools", "chosen",
                        "rejected"}
LLAMAFACTORY_TAGS = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag",
                     "system_tag"}


def write_rows(folder: Path, rows: list[dict], validation: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if validation:
        (folder / "validation.jsonl").write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    return folder


CHAT = {"messages": [{"role": "user", "content": "Capital of Peru?"}, {"role": "assistant", "content": "Lima."}]}
PAIR_CHATML = {"prompt": [{"role": "user", "content": "Capital of Peru?"}],
               "chosen": [{"role": "assistant", "content": "Lima."}],
               "rejected": [{"role": "assistant", "content": "Cusco."}]}
PAIR_SHAREGPT = {"conversations": [{"from": "human", "value": "Capital of Peru?"}],
                 "chosen": {"from": "gpt", "value": "Lima."}, "rejected": {"from": "gpt", "value": "Cusco."}}
ALPACA = {"instruction": "Capital of Peru?", "input": "", "output": "Lima."}


def plan(technique: str, data: Path | None, **training) -> TrainingPlan:
    spec = {"method": technique, "epochs": 2, "learning_rate": 1e-4, "per_device_batch_size": 8,
            "gradient_accumulation_steps": 2, "max_seq_length": 512, "packing": "on"}
    if technique in ("lora", "qlora", "dpo"):
        spec["lora"] = {"r": 8, "alpha": 16, "dropout": 0.1}
    if technique == "qlora":
        spec["quantization"] = {"bits": 4, "quant_type": "nf4"}
    if technique == "dpo":
        spec["preference"] = {"beta": 0.2}
    if technique == "prompt_tuning":
        spec["prompt_tuning"] = {"num_virtual_tokens": 8}
    if technique == "rlhf":
        spec["rlhf"] = {}
    spec.update(training)
    return TrainingPlan.model_validate({
        "approach": "fine_tuning", "technique": technique, "base_model": {"id": "smollm2-135m-instruct"},
        "data": {"path": str(data) if data else None}, "training": spec, "hardware": {"precision": "bf16"}})


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory) -> Path:
    return write_rows(tmp_path_factory.mktemp("chat"), [CHAT, CHAT])


@pytest.mark.parametrize("technique", ["lora", "qlora", "full"])
def test_axolotl_config_uses_documented_keys_and_carries_the_plan(technique, chat_dir):
    config = to_axolotl(plan(technique, chat_dir))
    assert set(config) <= AXOLOTL_KEYS, set(config) - AXOLOTL_KEYS
    for dataset in config["datasets"] + config["test_datasets"]:
        assert set(dataset) <= AXOLOTL_SFT_DATASET_KEYS, set(dataset) - AXOLOTL_SFT_DATASET_KEYS
    assert config["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert config["datasets"][0] == {"path": str(chat_dir.resolve() / "train.jsonl"), "ds_type": "json",
                                     "split": "train", "type": "chat_template", "field_messages": "messages",
                                     "roles_to_train": ["assistant"]}
    assert config["test_datasets"][0]["path"].endswith("validation.jsonl")
    assert (config["micro_batch_size"], config["gradient_accumulation_steps"], config["num_epochs"]) == (8, 2, 2)
    assert (config["learning_rate"], config["sequence_len"], config["sample_packing"]) == (1e-4, 512, True)
    assert config["train_on_inputs"] is False and config["bf16"] is True
    if technique == "full":
        assert "adapter" not in config and "lora_r" not in config
    else:
        assert config["adapter"] == technique
        assert (config["lora_r"], config["lora_alpha"], config["lora_dropout"]) == (8, 16, 0.1)
        assert config["lora_target_linear"] is True
    assert config.get("load_in_4bit", False) is (technique == "qlora")


@pytest.mark.parametrize("technique", ["lora", "qlora", "full"])
def test_llamafactory_config_uses_documented_keys_and_carries_the_plan(technique, chat_dir, tmp_path):
    config, info = to_llamafactory(plan(technique, chat_dir, lora=None if technique == "full" else
                                        {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}),
                                   dataset_dir=tmp_path)
    allowed = LLAMAFACTORY_OWN_KEYS | TRAINING_ARGUMENT_KEYS
    assert set(config) <= allowed, set(config) - allowed
    assert config["stage"] == "sft" and config["model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert config["finetuning_type"] == ("full" if technique == "full" else "lora")
    assert (config["per_device_train_batch_size"], config["gradient_accumulation_steps"]) == (8, 2)
    assert (config["num_train_epochs"], config["learning_rate"], config["cutoff_len"]) == (2.0, 1e-4, 512)
    if technique != "full":
        assert (config["lora_rank"], config["lora_alpha"], config["lora_target"]) == (4, 8, "q_proj,v_proj")
    if technique == "qlora":
        assert (config["quantization_bit"], config["quantization_type"]) == (4, "nf4")
    assert "template" not in config  # LLaMA-Factory then parses the tokenizer's own chat template
    assert set(info) == {config["dataset"], config["eval_dataset"]}
    for entry in info.values():
        assert set(entry) <= LLAMAFACTORY_DATASET_KEYS and set(entry["columns"]) <= LLAMAFACTORY_COLUMNS
        assert set(entry["tags"]) <= LLAMAFACTORY_TAGS and Path(entry["file_name"]).is_file()
    assert info["tunewise_train"]["formatting"] == "sharegpt"
    assert info["tunewise_train"]["tags"]["role_tag"] == "role"


def test_dpo_exports_per_tool_data_layout(tmp_path):
    chatml_pairs = write_rows(tmp_path / "chatml", [PAIR_CHATML])
    config = to_axolotl(plan("dpo", chatml_pairs))
    assert config["rl"] == "dpo" and config["rl_beta"] == 0.2 and config["adapter"] == "lora"
    assert set(config["datasets"][0]) <= AXOLOTL_DPO_DATASET_KEYS
    assert config["datasets"][0]["type"] == "chat_template.default"
    assert config["datasets"][0]["field_messages"] == "prompt"
    # LLaMA-Factory reads chosen/rejected as single messages, not TRL's message lists: refused, with the fix.
    with pytest.raises(PlanExportError, match="--format sharegpt"):
        to_llamafactory(plan("dpo", chatml_pairs))
    sharegpt_pairs = write_rows(tmp_path / "sharegpt", [PAIR_SHAREGPT])
    config, info = to_llamafactory(plan("dpo", sharegpt_pairs))
    assert config["stage"] == "dpo" and config["pref_beta"] == 0.2 and config["pref_loss"] == "sigmoid"
    assert info["tunewise_train"]["ranking"] is True
    assert info["tunewise_train"]["columns"] == {"messages": "conversations", "chosen": "chosen",
                                                 "rejected": "rejected"}


def test_alpaca_rows_map_only_the_columns_they_have(tmp_path):
    config, info = to_llamafactory(plan("lora", write_rows(tmp_path, [ALPACA], validation=False)))
    assert info["tunewise_train"]["columns"] == {"prompt": "instruction", "query": "input", "response": "output"}
    assert "eval_dataset" not in config
    assert to_axolotl(plan("lora", tmp_path))["datasets"][0]["type"] == "alpaca"


@pytest.mark.parametrize("technique,reason", [("prompt_tuning", "no equivalent"), ("rlhf", "reward model"),
                                              ("api", "hosted")])
def test_methods_without_an_equivalent_are_refused(technique, reason, chat_dir):
    for export in (to_axolotl, to_llamafactory):
        with pytest.raises(PlanExportError, match=reason):
            export(plan(technique, chat_dir))


def test_data_problems_name_the_field(tmp_path, chat_dir):
    with pytest.raises(PlanExportError, match="data.path: empty"):
        to_axolotl(plan("lora", None))
    with pytest.raises(PlanExportError, match="train.jsonl: missing"):
        to_axolotl(plan("lora", tmp_path))
    pairs = write_rows(tmp_path / "pairs", [PAIR_CHATML])
    with pytest.raises(PlanExportError, match="DPO needs preference pairs"):
        to_axolotl(plan("lora", pairs))


def test_cli_writes_yaml_and_dataset_info(tmp_path, chat_dir):
    from typer.testing import CliRunner

    from assistant.cli import app

    plan_file = dump_plan(plan("lora", chat_dir), tmp_path / "plan.yaml")
    runner = CliRunner()
    result = runner.invoke(app, ["plan", "export", str(plan_file), "--to", "llamafactory", "--out",
                                 str(tmp_path / "lf")])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "lf" / "llamafactory.yaml").read_text())
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert config["dataset_dir"] == str((tmp_path / "lf").resolve()) and config["dataset"] in info
    assert (tmp_path / "lf" / "llamafactory.yaml").read_text().startswith("# llamafactory config written by")
    result = runner.invoke(app, ["plan", "export", str(plan_file), "--to", "axolotl"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "plan-axolotl" / "axolotl.yaml").read_text())["lora_r"] == 8
    bad = runner.invoke(app, ["plan", "export", str(plan_file), "--to", "unsloth"])
    assert bad.exit_code == 2 and "--to 'unsloth'" in bad.output


def test_export_plan_reports_an_invalid_plan_file(tmp_path):
    broken = tmp_path / "plan.yaml"
    broken.write_text("approach: fine_tuning\ntechnique: lora\n", encoding="utf-8")
    with pytest.raises(PlanExportError, match="plan.yaml: invalid plan"):
        export_plan(broken, "axolotl")
