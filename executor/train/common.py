"""What every training method shares: the run directory, metrics, the loss curve, Trainer arguments.

A run directory holds:
    plan.yaml          the plan as run: its data.path and training.max_steps included, so it alone
                       reproduces the run (`tunewise train RUN_DIR/plan.yaml`)
    metrics.jsonl      one line per log: step, epoch, loss, eval_loss, learning_rate, tokens_per_second, memory_gb
    checkpoints/       Trainer checkpoints (resume from the last one)
    adapter/ | model/  the trained adapter (LoRA, QLoRA, prompt tuning, DPO) or full weights, with the tokenizer
    merged/            LoRA merged into the 16-bit base (LoRA, QLoRA, DPO-with-LoRA runs)
    loss_curve.png     training and validation loss
    tensorboard/       TensorBoard logs (MLflow too when MLFLOW_TRACKING_URI is set)
    result.json        what was trained, final metrics, timings, artefact paths

Lazy imports: torch, transformers, matplotlib are imported inside the functions that use them, so importing this
module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from executor.models.loader import Placement
from executor.plan import TrainingPlan


@dataclass
class RunContext:
    plan: TrainingPlan
    run_dir: Path
    placement: Placement
    resume: bool = False
    dry_run: bool = False
    model_factory: Any = None  # tokenizer -> model; replaces the base model (dry runs, tests)
    progress: Any = None       # callable(step, total, logs) for the CLI's progress bar
    stop_after_step: int | None = None  # stop as a crash would, leaving checkpoints (resume tests)
    notes: list[str] = field(default_factory=list)

    # What the run trains on and for how long come from the plan alone (no second channel beside it).
    @property
    def data_dir(self) -> Path:
        return Path(self.plan.data.path)

    @property
    def max_steps(self) -> int | None:
        return self.plan.training.max_steps if self.plan.training else None

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"


def memory_gb(device: str) -> float:
    if device == "cuda":
        import torch

        return round(torch.cuda.max_memory_allocated() / 1e9, 3)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)  # kB -> GB, peak RSS


class MetricsCallback(TrainerCallback):
    """Appends every Trainer log to metrics.jsonl (resumed runs keep appending) and reports progress."""

    def __init__(self, ctx: RunContext, stage: str | None = None):
        self.ctx = ctx
        self.stage = stage
        self.last_time: float | None = None
        self.last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.last_time = time.perf_counter()
        self.last_tokens = state.num_input_tokens_seen or 0
        self.eval_seconds = 0.0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return  # one writer per run, however many processes train it
        logs = dict(logs or {})
        now = time.perf_counter()
        tokens = state.num_input_tokens_seen or 0
        rate = None
        if "eval_runtime" in logs:
            self.eval_seconds += float(logs["eval_runtime"])  # training throughput excludes evaluation time
        if "loss" in logs and self.last_time is not None:
            busy = now - self.last_time - self.eval_seconds
            if busy > 0:
                rate = round((tokens - self.last_tokens) / busy, 1)
            self.last_time, self.last_tokens, self.eval_seconds = now, tokens, 0.0
        record = {
            "step": state.global_step,
            "epoch": round(state.epoch, 4) if state.epoch is not None else None,
            "loss": logs.get("loss"),
            "eval_loss": logs.get("eval_loss"),
            "learning_rate": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"),
            "tokens_per_second": rate,
            "tokens_seen": tokens,
            "memory_gb": memory_gb(self.ctx.placement.device),
            "time": round(time.time(), 3),
        }
        if self.stage:
            record["stage"] = self.stage
        record.update({k: v for k, v in logs.items() if k not in record and isinstance(v, int | float)})
        with self.ctx.metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.ctx.progress:
            self.ctx.progress(state.global_step, state.max_steps, record)


class StopAfter(TrainerCallback):
    """Stops training at a given step, as a crash would (tests of resume use it)."""

    def __init__(self, step: int):
        self.step = step
        self.triggered = False

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_save = True
            control.should_training_stop = True
            self.triggered = True


def standard_callbacks(ctx: RunContext, has_validation: bool, stage: str | None = None
                       ) -> tuple[list, StopAfter | None]:
    from transformers import EarlyStoppingCallback

    callbacks: list = [MetricsCallback(ctx, stage)]
    patience = ctx.plan.training.early_stopping_patience
    if has_validation and patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    stop = StopAfter(ctx.stop_after_step) if ctx.stop_after_step else None
    if stop:
        callbacks.append(stop)
    return callbacks, stop


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_loss_curve(metrics: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(m["step"], m["loss"]) for m in metrics if m.get("loss") is not None]
    evals = [(m["step"], m["eval_loss"]) for m in metrics if m.get("eval_loss") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), marker="o", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_to() -> list[str]:
    # TensorBoard logs when a writer is installed (tensorboardX is a dependency; a host without either, such as a
    # bare GPU image, still trains instead of failing in the Trainer's callback set-up).
    targets = ["tensorboard"] if any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")) else []
    if os.environ.get("MLFLOW_TRACKING_URI"):
        targets.append("mlflow")
    return targets


def steps_per_epoch(rows: int, batch: int, accumulation: int) -> int:
    return max(1, math.ceil(rows / batch / accumulation))


def trainer_arguments(ctx: RunContext, train_rows: int, has_validation: bool, **overrides) -> dict[str, Any]:
    """TrainingArguments keyword arguments from the plan (shared by SFT, DPO, reward and GRPO configs)."""
    t = ctx.plan.training
    per_epoch = steps_per_epoch(train_rows, t.per_device_batch_size, t.gradient_accumulation_steps)
    total = ctx.max_steps or math.ceil(per_epoch * t.epochs)
    interval = max(1, total // 10)  # ~10 evaluations / checkpoints per run
    on_gpu = ctx.placement.device == "cuda"
    checkpointing = {"on": True, "off": False}.get(t.gradient_checkpointing, False)  # auto: off (CPU: costs time)
    if t.gradient_checkpointing == "auto" and on_gpu:
        checkpointing = (ctx.plan.base_model.params_b or 0) >= 1.0
    # The Trainer reads this when training starts; set it for every run (several can run in one process).
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(ctx.run_dir / "tensorboard")
    args: dict[str, Any] = {
        "output_dir": str(ctx.checkpoints),
        "num_train_epochs": t.epochs,
        "max_steps": ctx.max_steps or -1,
        "per_device_train_batch_size": t.per_device_batch_size,
        "per_device_eval_batch_size": t.per_device_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "weight_decay": t.weight_decay,
        "warmup_steps": t.warmup_ratio,  # a float below 1 is a ratio of the total steps
        "lr_scheduler_type": t.lr_scheduler,
        "logging_steps": max(1, min(10, interval)),
        "save_strategy": "steps",
        "save_steps": interval,
        "save_total_limit": 3,
        "eval_strategy": "steps" if has_validation else "no",
        "eval_steps": interval if has_validation else None,
        "load_best_model_at_end": has_validation,
        "metric_for_best_model": "eval_loss" if has_validation else None,
        "greater_is_better": False if has_validation else None,
        "seed": t.seed,
        "data_seed": t.seed,
        "bf16": ctx.placement.dtype_name == "bfloat16",
        "fp16": ctx.placement.dtype_name == "float16",
        "use_cpu": not on_gpu,
        "gradient_checkpointing": checkpointing,
        # Non-reentrant: the frozen embeddings' output needs no requires_grad hook for the adapters inside a
        # checkpointed layer to get gradients (reentrant checkpointing, older transformers' default, needs one).
        "gradient_checkpointing_kwargs": {"use_reentrant": False} if checkpointing else None,
        "report_to": report_to(),
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_pin_memory": on_gpu,
        "remove_unused_columns": False,
        "disable_tqdm": True,
        "save_only_model": False,
    }
    args.update(overrides)
    return args


def write_result(ctx: RunContext, result: dict[str, Any]) -> dict[str, Any]:
    metrics = read_metrics(ctx.metrics_path)
    losses = [m["loss"] for m in metrics if m.get("loss") is not None]
    evals = [m["eval_loss"] for m in metrics if m.get("eval_loss") is not None]
    result = {
        "technique": ctx.plan.technique,
        "base_model": ctx.plan.base_model.id,
        "device": ctx.placement.device,
        "dtype": ctx.placement.dtype_name,
        "dry_run": ctx.dry_run,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "best_eval_loss": min(evals) if evals else None,
        "notes": ctx.notes,
        **result,
    }
    if metrics:
        plot_loss_curve(metrics, ctx.run_dir / "loss_curve.png",
                        f"{ctx.plan.technique} on {ctx.plan.base_model.id}")
        result["loss_curve"] = "loss_curve.png"
    (ctx.run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def drop_broken_checkpoints(checkpoints: Path) -> list[str]:
    """Remove checkpoints a crash left half-written (no readable trainer state or no weights), newest first,
    so that resuming falls back to the previous good one. Returns the names removed."""
    removed = []
    found = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for folder in found:
        try:
            json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
            has_weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
        except (OSError, ValueError):
            has_weights = False
        if has_weights:
            break
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def resume_point(ctx: RunContext) -> bool | None:
    """What Trainer.train(resume_from_checkpoint=...) gets: True to continue from the last good checkpoint
    (half-written ones removed first, and said so), None to start fresh."""
    if not ctx.resume:
        return None
    for name in drop_broken_checkpoints(ctx.checkpoints):
        ctx.notes.append(f"{name} was incomplete (a crash while saving); resumed from the one before")
    return True if any(ctx.checkpoints.glob("checkpoint-*")) else None

