"""Preference recipes: DPO, and RLHF (a reward model, then GRPO against its score). Built on trl.

Supports: conversational preference pairs (prompt / chosen / rejected, as `tunewise data prepare`
writes them), LoRA adapters on the policy (the adapter-disabled base is then DPO's frozen reference,
so no second copy of the model is held), evaluation on the validation split, resume, metrics.jsonl.
RLHF runs in two stages in one run directory: `reward/` (a sequence-classification head trained with
trl's RewardTrainer on the pairs) and the policy, optimized with trl's GRPOTrainer where the reward
model's score is the reward. Refuses up front: non-preference data (preflight).

    setup -> pairs -> [reward model ->] policy (DPO | GRPO) -> save adapter -> merge

Lazy imports: datasets, trl, torch, peft, transformers and the project modules that pull them in are imported inside
the functions that use them, so importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

from typing import Any

from executor.models.registry import load_tokenizer
from executor.train.common import RunContext, resume_point, standard_callbacks, trainer_arguments
from executor.train.sft import _tokenizer_name, build_model, load_rows, save_outputs


def _pairs_dataset(rows: list[dict[str, Any]]):
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["chosen"]}],
         "rejected": [{"role": "assistant", "content": r["rejected"]}]}
        for r in rows
    ])


def _common_args(ctx: RunContext, rows: dict[str, list], **overrides) -> dict[str, Any]:
    has_validation = bool(rows.get("validation"))
    args = trainer_arguments(ctx, len(rows["train"]), has_validation, **overrides)
    args.pop("include_num_input_tokens_seen", None)  # trl's collators do not expose it in every trainer
    return args


def train_preference(ctx: RunContext) -> dict[str, Any]:
    tokenizer = load_tokenizer(_tokenizer_name(ctx.plan))
    rows = load_rows(ctx)
    if ctx.plan.technique == "dpo":
        return train_dpo(ctx, tokenizer, rows)
    return train_rlhf(ctx, tokenizer, rows)


def train_dpo(ctx: RunContext, tokenizer, rows) -> dict[str, Any]:
    from trl import DPOConfig, DPOTrainer

    t = ctx.plan.training
    args = DPOConfig(**_common_args(ctx, rows), beta=t.preference.beta, loss_type=[t.preference.loss_type],
                     max_length=t.max_seq_length)
    # With a LoRA adapter the adapter-disabled base is the frozen reference; without one trl copies the model.
    model = build_model(ctx, tokenizer)
    callbacks, stop = standard_callbacks(ctx, bool(rows.get("validation")))
    trainer = DPOTrainer(
        model=model, ref_model=None, args=args, train_dataset=_pairs_dataset(rows["train"]),
        eval_dataset=_pairs_dataset(rows["validation"]) if rows.get("validation") else None,
        processing_class=tokenizer, callbacks=callbacks,
    )
    output = trainer.train(resume_from_checkpoint=resume_point(ctx))
    if stop is not None and stop.triggered:
        return {"stopped_at_step": trainer.state.global_step}
    return save_outputs(ctx, trainer, tokenizer, output, rows)


def train_reward_model(ctx: RunContext, tokenizer, rows) -> tuple[Any, dict[str, Any]]:
    """Stage 1 of RLHF: a scalar reward head trained on the pairs (chosen should score above rejected)."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from trl import RewardConfig, RewardTrainer

    t, r = ctx.plan.training, ctx.plan.training.rlhf
    reward_dir = ctx.run_dir / "reward"
    if ctx.model_factory is not None:
        from transformers import LlamaForSequenceClassification

        base = ctx.model_factory(tokenizer)
        settings = {k: v for k, v in base.config.to_dict().items() if k not in ("id2label", "label2id")}
        model = LlamaForSequenceClassification(base.config.__class__(**settings, num_labels=1))
        model.model.load_state_dict(base.model.state_dict())
    else:
        from transformers import AutoModelForSequenceClassification

        from executor.models.loader import model_location

        model = AutoModelForSequenceClassification.from_pretrained(
            model_location(_tokenizer_name(ctx.plan)), num_labels=1, dtype=ctx.placement.dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    if t.lora is not None:
        model = get_peft_model(model, LoraConfig(r=t.lora.r, lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout,
                                                 target_modules=t.lora.target_modules, task_type=TaskType.SEQ_CLS))
    stage = RunContext(**{**ctx.__dict__, "run_dir": ctx.run_dir, "stop_after_step": None})
    args = RewardConfig(**_common_args(stage, rows, output_dir=str(reward_dir / "checkpoints"),
                                       learning_rate=r.reward_learning_rate, num_train_epochs=r.reward_epochs,
                                       load_best_model_at_end=False, eval_strategy="no", eval_steps=None,
                                       metric_for_best_model=None, greater_is_better=None),
                        max_length=t.max_seq_length)
    callbacks, _ = standard_callbacks(stage, False, stage="reward")
    trainer = RewardTrainer(model=model, args=args, train_dataset=_pairs_dataset(rows["train"]),
                            processing_class=tokenizer, callbacks=callbacks)
    output = trainer.train()
    model = trainer.model.merge_and_unload() if hasattr(trainer.model, "merge_and_unload") else trainer.model
    model.save_pretrained(reward_dir / "model")
    tokenizer.save_pretrained(reward_dir / "model")
    accuracy = _pairwise_accuracy(model, tokenizer, rows.get("validation") or rows["train"], t.max_seq_length)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(torch.float32 if ctx.placement.device == "cpu" else ctx.placement.dtype), {
        "reward_steps": trainer.state.global_step,
        "reward_runtime_s": round(output.metrics.get("train_runtime", 0.0), 2),
        "reward_pairwise_accuracy": accuracy,
        "reward_model": "reward/model",
    }


def _pairwise_accuracy(model, tokenizer, rows, max_length: int) -> float:
    """Share of pairs where the reward model scores the chosen reply above the rejected one."""
    import torch

    wins = 0
    model.eval()
    with torch.no_grad():
        for r in rows:
            scores = []
            for reply in (r["chosen"], r["rejected"]):
                text = tokenizer.apply_chat_template([*r["prompt"], {"role": "assistant", "content": reply}],
                                                     tokenize=False)
                enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length,
                                add_special_tokens=False).to(model.device)
                scores.append(model(**enc).logits[0, 0].item())
            wins += scores[0] > scores[1]
    return round(wins / max(len(rows), 1), 4)


def train_rlhf(ctx: RunContext, tokenizer, rows) -> dict[str, Any]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    t, r = ctx.plan.training, ctx.plan.training.rlhf
    reward_model, reward_result = train_reward_model(ctx, tokenizer, rows)
    prompts = Dataset.from_list([{"prompt": row["prompt"]} for row in rows["train"]])
    batch = max(t.per_device_batch_size, r.num_generations)
    batch -= batch % r.num_generations  # GRPO groups: each prompt's generations sit in one batch
    args = GRPOConfig(**_common_args(ctx, {"train": rows["train"]}, learning_rate=r.policy_learning_rate,
                                     per_device_train_batch_size=batch),
                      num_generations=r.num_generations, max_completion_length=min(128, t.max_seq_length // 2),
                      beta=r.kl_beta, temperature=1.0)
    policy = build_model(ctx, tokenizer)
    callbacks, stop = standard_callbacks(ctx, False, stage="policy")
    trainer = GRPOTrainer(model=policy, reward_funcs=reward_model, args=args, train_dataset=prompts,
                          processing_class=tokenizer, reward_processing_classes=tokenizer, callbacks=callbacks)
    output = trainer.train(resume_from_checkpoint=resume_point(ctx))
    if stop is not None and stop.triggered:
        return {"stopped_at_step": trainer.state.global_step}
    result = save_outputs(ctx, trainer, tokenizer, output, rows)
    return {**result, **reward_result}

