"""A TrainingPlan as an Axolotl or LLaMA-Factory config, for teams that already run those trainers.

Carried over: method (full / LoRA / QLoRA / DPO), base model (its hub id), LoRA r / alpha / dropout /
targets, 4-bit settings, the prepared dataset (path and row format, read from its first line),
sequence length, batch size, gradient accumulation, epochs, learning rate, scheduler, warmup, weight decay,
packing, early stopping, seed and precision. Both tools apply the model's own chat template (as Tunewise
does) and train on the assistant turns only.

Refused, with the reason: techniques the tool has no equivalent for (prompt tuning; Tunewise's RLHF, which
trains its own reward model first; hosted API tuning; no training) and data rows the tool cannot read.
Key names follow the tools' config schemas: axolotl `src/axolotl/utils/schemas/` (config.py, peft.py,
training.py, datasets.py) and LLaMA-Factory `src/llamafactory/hparams/` (model_args.py, data_args.py,
finetuning_args.py) plus the transformers TrainingArguments LLaMA-Factory passes through.

Lazy imports: the modules that do the work (registry, plan) are imported inside the functions that use them, so
importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from executor.plan import TECHNIQUES, TrainingPlan

TOOLS = ("axolotl", "llamafactory")
UNSUPPORTED = {
    "prompt_tuning": "prompt / prefix tuning has no equivalent in {tool}; use lora",
    "rlhf": "Tunewise's RLHF trains a reward model on the pairs and then runs GRPO against it; {tool} has no "
            "single config for that pipeline (use dpo on the same pairs)",
    "api": "technique 'api' tunes a hosted model; there is nothing to run in {tool}",
    "none": "technique 'none' trains nothing",
}


class PlanExportError(ValueError):
    """A plan that has no faithful config in the other tool; the message names the field and why."""


def _row_shape(data_dir: Path) -> tuple[Path, Path | None, str, set[str]]:
    """(train file, validation file or None, row shape, keys of the first row) of a prepared data folder."""
    train = data_dir / "train.jsonl"
    if not train.is_file():
        raise PlanExportError(f"{train}: missing; point data.path (or --data) at a folder from `tunewise data "
                              "prepare`")
    with train.open(encoding="utf-8") as handle:
        first = handle.readline()
    try:
        row = json.loads(first)
    except ValueError:
        raise PlanExportError(f"{train}:1: not a JSON object") from None
    if not isinstance(row, dict):
        raise PlanExportError(f"{train}:1: not a JSON object")
    if "prompt" in row and "chosen" in row:
        shape = "preference_messages" if isinstance(row["prompt"], list) else "preference_text"
    elif "input" in row and "preferred_output" in row:
        shape = "preference_openai"
    elif "conversations" in row:
        shape = "sharegpt_preference" if "chosen" in row else "sharegpt"
    elif "messages" in row:
        shape = "messages"
    elif "instruction" in row:
        shape = "alpaca_preference" if "chosen" in row else "alpaca"
    elif "text" in row:
        shape = "text"
    else:
        raise PlanExportError(f"{train}:1: unrecognized row (keys: {', '.join(sorted(row))})")
    validation = data_dir / "validation.jsonl"
    return train, validation if validation.is_file() else None, shape, set(row)


def _hub_id(plan: TrainingPlan) -> str:
    from executor.models.registry import ModelError, resolve

    base = plan.base_model
    if base.hf_id:
        return base.hf_id
    if base.source == "local" and base.path:
        return base.path
    try:
        spec = resolve(base.id)
    except ModelError as exc:
        raise PlanExportError(f"base_model.id: {exc}") from None
    return (spec.catalog or {}).get("hf_id") or spec.location


def _check(plan: TrainingPlan, tool: str, data: str | Path | None) -> Path:
    if plan.technique in UNSUPPORTED or plan.training is None:
        raise PlanExportError(f"technique: {UNSUPPORTED.get(plan.technique, 'no training section').format(tool=tool)}")
    folder = data or plan.data.path
    if not folder:
        raise PlanExportError("data.path: empty; prepare the data with `tunewise data prepare` and pass --data DIR")
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise PlanExportError(f"data.path: {folder} is not a folder of prepared splits")
    return folder


def _bf16(plan: TrainingPlan) -> bool | str:
    precision = plan.hardware.precision
    return "auto" if precision == "auto" else precision == "bf16"


def _lora_targets(targets: str | list[str]) -> tuple[bool, list[str] | None]:
    if targets == "all-linear":
        return True, None
    return False, [targets] if isinstance(targets, str) else list(targets)


# --- Axolotl -------------------------------------------------------------------------------------------
def _axolotl_dataset(path: Path, shape: str) -> dict[str, Any]:
    if shape == "preference_messages":
        # axolotl's chat_template.default reads the prompt messages and the last message of chosen/rejected
        return {"path": str(path), "split": "train", "type": "chat_template.default", "field_messages": "prompt"}
    base = {"path": str(path), "ds_type": "json", "split": "train"}
    if shape == "messages":
        return base | {"type": "chat_template", "field_messages": "messages", "roles_to_train": ["assistant"]}
    if shape == "sharegpt":
        return base | {"type": "chat_template", "field_messages": "conversations",
                       "message_property_mappings": {"role": "from", "content": "value"},
                       "roles_to_train": ["assistant"]}
    if shape == "alpaca":
        return base | {"type": "alpaca"}
    if shape == "text":
        return base | {"type": "completion"}
    raise PlanExportError(f"{path}: rows of shape {shape!r} have no axolotl dataset type here; prepare the data "
                          "with `tunewise data prepare --format chatml`")


def _checked_rows(plan: TrainingPlan, tool: str, data: str | Path | None):
    """The prepared splits and their row shape, refused when the rows do not fit the method."""
    folder = _check(plan, tool, data)
    train, validation, shape, keys = _row_shape(folder)
    if (plan.technique == "dpo") != ("preference" in shape):
        raise PlanExportError(f"data.path: technique {plan.technique!r} with {shape} rows in {train}; DPO needs "
                              "preference pairs and supervised methods need chat or text rows")
    return train, validation, shape, keys


def to_axolotl(plan: TrainingPlan, data: str | Path | None = None, output_dir: str = "./outputs/tunewise"
               ) -> dict[str, Any]:
    train, validation, shape, _ = _checked_rows(plan, "axolotl", data)
    t = plan.training
    config: dict[str, Any] = {"base_model": _hub_id(plan), "tokenizer_type": "AutoTokenizer",
                              "chat_template": "tokenizer_default"}
    if plan.technique == "dpo":
        config |= {"rl": "dpo", "rl_beta": plan.training.preference.beta}
    # Axolotl trains DPO with or without LoRA, and has no RLHF of ours (refused above).
    info = TECHNIQUES[plan.technique]
    lora = t.lora if info.lora == "always" or (plan.technique == "dpo" and t.lora) else None
    if info.quantized:
        config |= {"adapter": "qlora", "load_in_4bit": True}
    elif lora is not None:
        config |= {"adapter": "lora"}
    if lora is not None:
        linear, modules = _lora_targets(lora.target_modules)
        config |= {"lora_r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout}
        config |= {"lora_target_linear": True} if linear else {"lora_target_modules": modules}
    config["datasets"] = [_axolotl_dataset(train, shape)]
    if validation is not None:
        config["test_datasets"] = [_axolotl_dataset(validation, shape)]
    else:
        config["val_set_size"] = 0.0
    config |= {
        "dataset_prepared_path": f"{output_dir}/prepared",
        "output_dir": output_dir,
        "sequence_len": t.max_seq_length,
        "sample_packing": t.packing == "on",
        "train_on_inputs": not t.completion_only_loss,
        "micro_batch_size": t.per_device_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "num_epochs": t.epochs,
        "learning_rate": t.learning_rate,
        "lr_scheduler": t.lr_scheduler,
        "warmup_ratio": t.warmup_ratio,
        "weight_decay": t.weight_decay,
        "optimizer": "adamw_torch",
        "bf16": _bf16(plan),
        "gradient_checkpointing": t.gradient_checkpointing == "on",
        "seed": t.seed,
        "logging_steps": 10,
    }
    if validation is not None and t.early_stopping_patience:
        config |= {"early_stopping_patience": t.early_stopping_patience, "load_best_model_at_end": True,
                   "metric_for_best_model": "eval_loss", "greater_is_better": False}
    if t.quantization is not None and TECHNIQUES[plan.technique].quantized:
        config["bnb_config_kwargs"] = {"bnb_4bit_quant_type": t.quantization.quant_type,
                                       "bnb_4bit_use_double_quant": t.quantization.double_quant}
    return config


# --- LLaMA-Factory -------------------------------------------------------------------------------------
def _llamafactory_dataset(path: Path, shape: str, keys: set[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"file_name": str(path)}
    if shape == "messages":
        return entry | {"formatting": "sharegpt", "columns": {"messages": "messages"},
                        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                 "assistant_tag": "assistant", "system_tag": "system"}}
    if shape == "sharegpt":
        return entry | {"formatting": "sharegpt", "columns": {"messages": "conversations"}}
    if shape == "sharegpt_preference":
        return entry | {"formatting": "sharegpt", "ranking": True,
                        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}
    if shape.startswith("alpaca"):
        # Only columns the rows have: LLaMA-Factory indexes every column it is given.
        columns = {"prompt": "instruction", "query": "input", "system": "system", "history": "history"}
        columns = {role: name for role, name in columns.items() if name in keys}
        if shape == "alpaca":
            return entry | {"columns": columns | {"response": "output"}}
        return entry | {"ranking": True, "columns": columns | {"chosen": "chosen", "rejected": "rejected"}}
    if shape == "text":
        return entry | {"columns": {"prompt": "text"}}
    raise PlanExportError(f"{path}: LLaMA-Factory reads preference pairs as ShareGPT or Alpaca rows, not "
                          f"{shape!r}; prepare the data with `tunewise data prepare --format sharegpt` (or alpaca)")


def to_llamafactory(plan: TrainingPlan, data: str | Path | None = None, output_dir: str = "./outputs/tunewise",
                    dataset_dir: str | Path = ".") -> tuple[dict[str, Any], dict[str, Any]]:
    """(training config, dataset_info.json); the config names the datasets registered in dataset_info."""
    train, validation, shape, keys = _checked_rows(plan, "llamafactory", data)
    t = plan.training
    info = {"tunewise_train": _llamafactory_dataset(train, shape, keys)}
    stage = "dpo" if plan.technique == "dpo" else "pt" if shape == "text" else "sft"
    config: dict[str, Any] = {
        # No `template`: LLaMA-Factory then parses the tokenizer's own chat template, the one Tunewise uses.
        "model_name_or_path": _hub_id(plan),
        "stage": stage,
        "do_train": True,
        "finetuning_type": "full" if plan.technique == "full" else "lora",
    }
    lora = t.lora if TECHNIQUES[plan.technique].lora == "always" or plan.technique == "dpo" else None
    if lora is not None:
        linear, modules = _lora_targets(lora.target_modules)
        config |= {"lora_rank": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
                   "lora_target": "all" if linear else ",".join(modules)}
    elif plan.technique == "dpo":
        config["finetuning_type"] = "full"
    if TECHNIQUES[plan.technique].quantized:
        q = t.quantization
        config |= {"quantization_bit": q.bits, "quantization_method": "bnb", "quantization_type": q.quant_type,
                   "double_quantization": q.double_quant}
    if plan.technique == "dpo":
        config |= {"pref_beta": t.preference.beta, "pref_loss": t.preference.loss_type}
    config |= {"dataset": "tunewise_train", "dataset_dir": str(dataset_dir), "cutoff_len": t.max_seq_length,
               "packing": t.packing == "on", "train_on_prompt": not t.completion_only_loss}
    if validation is not None:
        info["tunewise_validation"] = _llamafactory_dataset(validation, shape, keys)
        config |= {"eval_dataset": "tunewise_validation", "eval_strategy": "steps", "eval_steps": 100,
                   "per_device_eval_batch_size": t.per_device_batch_size}
    config |= {
        "output_dir": output_dir,
        "per_device_train_batch_size": t.per_device_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "num_train_epochs": float(t.epochs),
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler,
        "warmup_ratio": t.warmup_ratio,
        "weight_decay": t.weight_decay,
        "bf16": plan.hardware.precision in ("auto", "bf16"),
        "seed": t.seed,
        "logging_steps": 10,
        "save_steps": 100,
        "plot_loss": True,
        "disable_gradient_checkpointing": t.gradient_checkpointing == "off",
    }
    return config, info


def export_plan(plan_path: str | Path, tool: str, out: str | Path | None = None, data: str | Path | None = None
                ) -> list[Path]:
    """`tunewise plan export PLAN.yaml --to axolotl|llamafactory`; returns the files written."""
    from executor.plan import PlanError, load_plan

    if tool not in TOOLS:
        raise PlanExportError(f"--to {tool!r}: choose one of {', '.join(TOOLS)}")
    plan_path = Path(plan_path)
    try:
        plan = load_plan(plan_path)
    except PlanError as exc:
        raise PlanExportError(str(exc)) from None
    out_dir = Path(out) if out else plan_path.parent / f"{plan_path.stem}-{tool}"
    out_dir.mkdir(parents=True, exist_ok=True)
    header = (f"# {tool} config written by `tunewise plan export {plan_path.name} --to {tool}` from a Tunewise "
              f"plan ({plan.technique} on {plan.base_model.id}).\n")
    written = []
    if tool == "axolotl":
        config = to_axolotl(plan, data)
        target = out_dir / "axolotl.yaml"
        target.write_text(header + f"# Run: axolotl train {target.name}\n" + yaml.safe_dump(config, sort_keys=False),
                          encoding="utf-8")
        written.append(target)
    else:
        config, info = to_llamafactory(plan, data, dataset_dir=out_dir.resolve())
        target = out_dir / "llamafactory.yaml"
        target.write_text(header + f"# Run: llamafactory-cli train {target.name}\n"
                          + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        info_file = out_dir / "dataset_info.json"
        info_file.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        written += [target, info_file]
    return written
