"""Read what a training run left behind (see executor/train/common.py for the layout).

    plan.yaml   the plan as run          adapter/  PEFT adapter (LoRA, QLoRA, prompt tuning, DPO with LoRA)
    result.json what was trained         model/    full weights (full fine-tuning)
                                         merged/   LoRA merged into the 16-bit base

Every export and the server start here, so a folder that is not a finished run is refused once, naming
the file that is missing and what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor.plan import PlanError, TrainingPlan, load_plan


class ExportError(ValueError):
    """An export that cannot be made; the message names the file or field and what to do."""


@dataclass(frozen=True)
class Run:
    path: Path
    plan: TrainingPlan
    result: dict[str, Any]

    @property
    def adapter_dir(self) -> Path | None:
        return _weights(self.path / "adapter", "adapter_config.json")

    @property
    def model_dir(self) -> Path | None:
        return _weights(self.path / "model", "config.json")

    @property
    def merged_dir(self) -> Path | None:
        return _weights(self.path / "merged", "config.json")

    @property
    def adapter_type(self) -> str | None:
        """PEFT's name for the adapter: LORA, PROMPT_TUNING, PREFIX_TUNING, ..."""
        if self.adapter_dir is None:
            return None
        config = json.loads((self.adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
        return config.get("peft_type")

    @property
    def base_model_name(self) -> str:
        """What executor.models resolves to the base: the local path for local models, else the catalog id."""
        base = self.plan.base_model
        return base.path if base.source == "local" and base.path else base.id


def _weights(folder: Path, marker: str) -> Path | None:
    return folder if (folder / marker).is_file() else None


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "plan.yaml").is_file()


def open_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"{path}: no such run directory")
    plan_file = path / "plan.yaml"
    if not plan_file.is_file():
        raise ExportError(f"{plan_file}: missing; {path} is not a run directory written by `tunewise train`")
    try:
        plan = load_plan(plan_file)
    except PlanError as exc:
        raise ExportError(str(exc)) from None
    result_file = path / "result.json"
    if not result_file.is_file():
        raise ExportError(f"{result_file}: missing; the run has not finished (resume it with `tunewise train "
                          f"{plan_file} --out {path} --resume`)")
    try:
        result = json.loads(result_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ExportError(f"{result_file}: not valid JSON ({exc})") from None
    run = Run(path, plan, result)
    if run.adapter_dir is None and run.model_dir is None:
        raise ExportError(f"{path}: neither adapter/adapter_config.json nor model/config.json is there; "
                          f"technique {plan.technique!r} left no local weights to export")
    return run
