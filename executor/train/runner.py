"""Run a TrainingPlan: preflight checks (before any weights load), then the method's recipe.

    preflight -> run directory -> recipe (sft | preference | hosted api) -> result.json

A plan that cannot run fails in preflight with a message that names the field, what is available
instead and what to do: unknown model, a hub model with no network and no local copy, a method the
model or the hardware cannot do, missing data splits, data of the wrong kind, bad hyperparameters.

Lazy imports: huggingface_hub, transformers and the project modules that pull them in are imported inside the
functions that use them, so importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor.models.loader import Placement, choose_placement, tiny_llama
from executor.models.registry import ModelError, catalog, resolve
from executor.plan import TECHNIQUES, TrainingPlan, dump_plan
from executor.train.common import RunContext, write_result
from executor.train.data import DataDirError, find_splits, read_split
from executor.train.distributed import is_main_process

SFT_TECHNIQUES = tuple(n for n, i in TECHNIQUES.items() if i.family == "sft")
PREFERENCE_TECHNIQUES = tuple(n for n, i in TECHNIQUES.items() if i.family == "preference")
DRY_RUN_STEPS = 3


class PlanCannotRun(ValueError):
    """Preflight failure: the message says which field, what exists instead, and what to do."""


@dataclass
class Preflight:
    placement: Placement
    notes: list[str]


def _network_available(host: str = "huggingface.co", timeout: float = 1.5) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_copy_exists(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:
        return False


def preflight(plan: TrainingPlan, data_dir: Path | None, dry_run: bool = False) -> Preflight:
    notes: list[str] = []
    if plan.technique == "none":
        raise PlanCannotRun(f"technique: 'none' (approach {plan.approach!r}) trains nothing; evaluate the "
                            "prompting / RAG baseline instead, or pick a training technique")
    if plan.technique == "api":
        if data_dir is None:
            raise PlanCannotRun("data: no data folder; pass --data DIR (from `tunewise data prepare`)")
        find_splits(data_dir)
        return Preflight(Placement("cpu", "float32"), notes)

    # The model: resolvable, able to do the method, reachable.
    model_name = plan.base_model.path if plan.base_model.source == "local" else plan.base_model.id
    try:
        spec = resolve(model_name)
    except ModelError as exc:
        raise PlanCannotRun(f"base_model.id: {exc}") from None
    if spec.source == "api":
        raise PlanCannotRun(f"base_model.id: {spec.id} is an API model; it can only be tuned with technique 'api' "
                            f"(or pick an open model: {', '.join(_open_models())})")
    methods = (spec.catalog or {}).get("methods")
    if methods is not None and plan.technique not in methods:
        raise PlanCannotRun(f"technique: {plan.technique!r} is not supported for {spec.id} (supported: "
                            f"{', '.join(methods)})")
    if spec.source == "hub" and not dry_run and not _hub_copy_exists(spec.location):
        if not _network_available():
            raise PlanCannotRun(
                f"base_model.id: {spec.id} ({spec.location}) must be downloaded from the Hugging Face hub, but there "
                "is no network and no local copy. Use the bundled 'smollm2-135m-instruct', or download the model "
                "elsewhere and set base_model.source: local with base_model.path: /path/to/folder")

    # The hardware.
    try:
        placement = choose_placement(plan.hardware.device, plan.hardware.precision)
    except ModelError as exc:
        raise PlanCannotRun(f"hardware.device: {exc}") from None
    if plan.technique == "qlora":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise PlanCannotRun("technique: 'qlora' needs bitsandbytes (pip install bitsandbytes>=0.50); or use "
                                "'lora'") from None
        if placement.device == "cpu":
            notes.append("QLoRA on CPU: bitsandbytes runs 4-bit here and saves memory, but it is slower than LoRA "
                         "on CPU")
    params_b = plan.base_model.params_b or (spec.catalog or {}).get("params_b")
    if plan.technique == "full" and params_b and placement.device == "cpu" and not dry_run:
        ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
        if params_b * 16 > ram_gb:
            raise PlanCannotRun(f"technique: full fine-tuning of {params_b:g}B parameters needs about "
                                f"{params_b * 16:.0f} GB (16 bytes per parameter); this machine has {ram_gb:.0f} GB. "
                                "Use 'lora' or 'qlora', or a GPU")

    # Hyperparameters the schema cannot judge alone.
    t = plan.training
    context = (spec.catalog or {}).get("context_length")
    if context and t.max_seq_length > context:
        raise PlanCannotRun(f"training.max_seq_length: {t.max_seq_length} exceeds {spec.id}'s context of {context}")
    if t.learning_rate >= 1.0:
        raise PlanCannotRun(f"training.learning_rate: {t.learning_rate} is not a learning rate (use e.g. 2e-4)")

    # The data.
    if data_dir is None:
        raise PlanCannotRun("data.path: no data folder; pass --data DIR (from `tunewise data prepare`)")
    try:
        splits = find_splits(data_dir)
        first = read_split(splits["train"])[:1]
    except DataDirError as exc:
        raise PlanCannotRun(f"data.path: {exc}") from None
    if "validation" not in splits:
        notes.append("no validation.jsonl: no evaluation during training, no early stopping, last checkpoint kept")
    is_preference = bool(first) and "chosen" in first[0]
    if plan.technique in PREFERENCE_TECHNIQUES and not is_preference:
        raise PlanCannotRun(f"technique: {plan.technique!r} needs preference pairs (prompt/chosen/rejected) but "
                            f"{splits['train']} holds chat/text rows; use 'lora' or prepare preference data")
    if plan.technique in SFT_TECHNIQUES and is_preference:
        raise PlanCannotRun(f"technique: {plan.technique!r} is supervised, but {splits['train']} holds preference "
                            "pairs; use 'dpo' or 'rlhf'")
    return Preflight(placement, notes)


def _open_models() -> list[str]:
    return [m for m, entry in catalog().items() if entry["source"] != "api"][:5]


def train(
    plan: TrainingPlan,
    run_dir: Path,
    resume: bool = False,
    *,
    dry_run: bool = False,
    progress=None,
    model_factory=None,
    stop_after_step: int | None = None,
) -> dict[str, Any]:
    """Run the plan into `run_dir`. The plan is the whole run (its data.path, training.max_steps, ...), so the
    plan.yaml written here reproduces it; the keywords are for the caller's display and for tests."""
    data_dir = Path(plan.data.path) if plan.data.path else None
    checked = preflight(plan, data_dir, dry_run)
    run_dir = Path(run_dir)
    if resume and not any((run_dir / "checkpoints").glob("checkpoint-*")):
        raise PlanCannotRun(f"--resume: {run_dir} has no checkpoints to resume from")
    if dry_run and plan.training is not None:
        # Written into the plan, so the run directory says what ran: a few steps (of a tiny model).
        steps = min(plan.training.max_steps or DRY_RUN_STEPS, DRY_RUN_STEPS)
        plan = plan.with_overrides({"training.max_steps": steps})
        model_factory = model_factory or tiny_llama
    run_dir.mkdir(parents=True, exist_ok=True)
    main = is_main_process()  # under torchrun only rank 0 writes the run directory
    if main and not resume and (run_dir / "metrics.jsonl").exists():
        (run_dir / "metrics.jsonl").unlink()  # a fresh run starts a fresh log; a resumed one appends
    if main:
        dump_plan(plan, run_dir / "plan.yaml")
    ctx = RunContext(plan=plan, run_dir=run_dir, placement=checked.placement, resume=resume, dry_run=dry_run,
                     model_factory=model_factory, progress=progress, stop_after_step=stop_after_step,
                     notes=list(checked.notes))
    if plan.technique == "api":
        from executor.train.api import run_hosted_finetune

        # The job runs on OpenAI's side; we poll it (TUNEWISE_API_POLL_SECONDS, default 10 s).
        poll = float(os.environ.get("TUNEWISE_API_POLL_SECONDS", "10"))
        return write_result(ctx, run_hosted_finetune(plan, data_dir, run_dir, poll_seconds=poll))
    from transformers import set_seed

    # Adapters (LoRA's A, prompt embeddings, value heads) are drawn from the global RNG before the Trainer seeds
    # it: seed here, so the same plan starts from the same weights in every run and in every process of a launch.
    set_seed(plan.training.seed)
    if plan.technique in SFT_TECHNIQUES:
        from executor.train.sft import train_sft

        result = train_sft(ctx)
    else:
        from executor.train.preference import train_preference

        result = train_preference(ctx)
    if "stopped_at_step" in result or not main:
        return result
    return write_result(ctx, result)
