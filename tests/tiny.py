"""The tiny run of the queue, worker, CLI and evaluation tests: one LoRA plan and one small chat dataset, written
once here (`from tiny import lora_plan, counting_chats`; pytest puts tests/ on the import path)."""

from __future__ import annotations

import json
from pathlib import Path

from executor.plan import TrainingPlan


def lora_plan(model: str | Path, overrides: dict | None = None) -> TrainingPlan:
    """A 1-epoch LoRA r4 plan on the CPU for a local model folder or a catalog id, with dotted overrides as
    `TrainingPlan.with_overrides` takes them (`{"training.max_steps": 3, "data.path": ...}`)."""
    model = str(model)
    base = {"id": model, "source": "local", "path": model} if Path(model).exists() else {"id": model}
    return TrainingPlan.model_validate({
        "approach": "fine_tuning", "technique": "lora", "base_model": base,
        "training": {"method": "lora", "epochs": 1, "learning_rate": 1e-2, "per_device_batch_size": 4,
                     "gradient_accumulation_steps": 1, "max_seq_length": 64, "lora": {"r": 4, "alpha": 8}},
        "hardware": {"device": "cpu"}}).with_overrides(overrides or {})


def counting_chats(folder: Path, n: int, splits: tuple[str, ...] = ("train",)) -> Path:
    """`n` one-turn chats ("Say the number i" -> "The number is i.") as FOLDER/<split>.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"messages": [{"role": "user", "content": f"Say the number {i}"},
                          {"role": "assistant", "content": f"The number is {i}."}]} for i in range(n)]
    for split in splits:
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder
