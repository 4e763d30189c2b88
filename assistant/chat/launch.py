"""Approve & launch: the plan's editable hyperparameters, the run queue, and a run's live progress.

    recommendation plan + prepared data + edited settings -> TrainingPlan.with_overrides -> RunStore.submit
      -> events (status, progress, evaluation, result, error) folded into a RunView
      -> progress text (step/epoch, loss, eval loss, tokens/s, ETA) and a Plotly loss curve

Only the plan crosses into the executor; nothing here touches trainer internals.

Lazy imports: plotly is imported where the loss curve is drawn, so the chat serves its first page before it loads.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.chat.results import SYSTEM_NAMES
from executor.models import catalog
from executor.plan import ModelRef, PlanError, TrainingPlan
from executor.runs.events import read_event

CPU_DEMO_MAX_STEPS = 30   # a CPU demo run with the bundled 135M model: a few minutes, not hours
CPU_EVAL_LIMIT = 20       # test rows evaluated after a CPU run (greedy generation is ~15 tokens/s per system)
GPU_EVAL_LIMIT = 200
PILOT_LINES = 6           # a pilot's latest stages shown while it runs


@dataclass(frozen=True)
class Setting:
    key: str
    label: str
    kind: str          # "text" | "int" | "float"
    description: str
    path: str | None   # the plan field it edits (TrainingPlan.with_overrides); None: the base model (a catalog lookup)


SETTINGS = (
    Setting("base_model", "Base model", "text", "A catalog id (smollm2-135m-instruct, ...) or a local model folder",
            None),
    Setting("max_steps", "Max steps (0 = the whole plan)", "int",
            "Caps training; small on CPU so a demo takes minutes", "training.max_steps"),
    Setting("epochs", "Epochs", "float", "Passes over the training split", "training.epochs"),
    Setting("learning_rate", "Learning rate", "float", "e.g. 2e-4 for LoRA, 2e-5 for full fine-tuning",
            "training.learning_rate"),
    Setting("per_device_batch_size", "Batch size per device", "int", "Examples per step on each device",
            "training.per_device_batch_size"),
    Setting("gradient_accumulation_steps", "Gradient accumulation", "int", "Steps summed before each update",
            "training.gradient_accumulation_steps"),
    Setting("max_seq_length", "Max sequence length", "int", "Tokens per example (longer rows are truncated)",
            "training.max_seq_length"),
    Setting("lora_r", "LoRA rank", "int", "Adapter rank (LoRA / QLoRA / DPO plans)", "training.lora.r"),
    Setting("lora_alpha", "LoRA alpha", "int", "Adapter scaling, usually 2 x rank", "training.lora.alpha"),
    Setting("eval_limit", "Test rows to evaluate (0 = skip)", "int", "Evaluated after training against the baselines",
            "evaluation.max_rows"),
)
SETTING_KEYS = tuple(s.key for s in SETTINGS)


class LaunchError(ValueError):
    """A launch that cannot go ahead; the message names the setting and what to do."""


def runs_on_cpu(plan: TrainingPlan) -> bool:
    return plan.hardware.device == "cpu" or (plan.hardware.device == "auto" and not plan.hardware.gpu_count)


def plan_value(plan: TrainingPlan, path: str) -> Any:
    """The plan's value at a dotted path; None where a section on the way is absent (no LoRA section, ...)."""
    node: Any = plan
    for part in path.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def default_settings(plan: TrainingPlan) -> dict[str, Any]:
    """The panel's starting values, read from the plan by each setting's path. The step cap and the evaluation
    size that the recommended plan leaves open get the chat's demo-sized defaults (small on CPU)."""
    cpu = runs_on_cpu(plan)
    values: dict[str, Any] = {"base_model": plan.base_model.path or plan.base_model.id}
    for s in SETTINGS:
        if s.path is not None and plan_value(plan, s.path) is not None:
            values[s.key] = plan_value(plan, s.path)
    values.setdefault("max_steps", CPU_DEMO_MAX_STEPS if cpu else 0)
    if not plan.evaluation.after_training:
        values["eval_limit"] = CPU_EVAL_LIMIT if cpu else GPU_EVAL_LIMIT
    return values


def parse_setting(key: str, raw: Any) -> Any:
    setting = next((s for s in SETTINGS if s.key == key), None)
    if setting is None:
        raise LaunchError(f"unknown setting {key!r}; editable: {', '.join(SETTING_KEYS)}")
    if raw is None or raw == "":
        raise LaunchError(f"{key}: a value is needed")
    try:
        if setting.kind == "int":
            value = float(str(raw).replace(",", "").replace("_", ""))
            if not value.is_integer():
                raise ValueError
            return int(value)
        if setting.kind == "float":
            return float(str(raw).replace(",", "").replace("_", ""))
    except ValueError:
        raise LaunchError(f"{key}: expected {'a whole number' if setting.kind == 'int' else 'a number'}, "
                          f"got {raw!r}") from None
    return str(raw).strip()


def changed_settings(current: dict[str, Any], panel: dict[str, Any]) -> dict[str, Any]:
    """The settings panel sends every field back (numbers as floats): the ones whose value differs from `current`.
    A value that does not parse counts as changed, so that `set` says what is wrong with it."""
    edits = {}
    for key, value in panel.items():
        if key not in SETTING_KEYS or value in (None, ""):
            continue
        try:
            changed = parse_setting(key, value) != current.get(key)
        except LaunchError:
            changed = True
        if changed:
            edits[key] = value
    return edits


def update_settings(current: dict[str, Any], edits: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Apply the editable keys among `edits`; returns (new settings, problems). Unknown keys are ignored."""
    new, problems = dict(current), []
    for key, raw in edits.items():
        if key not in SETTING_KEYS:
            continue
        try:
            new[key] = parse_setting(key, raw)
        except LaunchError as exc:
            problems.append(str(exc))
    return new, problems


MODEL_DIRS_ENV = "TUNEWISE_MODEL_DIRS"  # folders (os.pathsep-separated) whose models every chat user may train


def admin_model_dirs() -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(MODEL_DIRS_ENV, "").split(os.pathsep) if p.strip()]


def model_ref(name: str, knowledge, roots: list[Path] | None = None) -> ModelRef:
    """A catalog id (or alias) or an existing local folder as the plan's base model. With `roots` (the chat: the
    user's uploads and runs and the folders an admin lists), a folder must lie inside one of them: a chat user
    may not train on any folder of the server that holds a config.json."""
    entry = knowledge.models.get(name) if knowledge is not None else None
    if entry is None and knowledge is not None:
        entry = next((m for m in knowledge.models.values() if name.lower() in [a.lower() for a in m.aliases]), None)
    if entry is not None:
        return catalog.model_ref(entry)  # the same reference the advisor's plans carry
    path = Path(name).expanduser()
    if roots is not None and not any(path.resolve().is_relative_to(r.resolve()) for r in roots):
        raise LaunchError(f"base_model: {name!r} is not a catalog model, and local folders are limited to your "
                          f"uploads, your runs and the folders an admin lists in {MODEL_DIRS_ENV}")
    if path.is_dir() and (path / "config.json").exists():
        return ModelRef(id=str(path), source="local", path=str(path.resolve()))
    raise LaunchError(f"base_model: {name!r} is neither a catalog model nor a local model folder (with config.json)")


def plan_overrides(plan: TrainingPlan, settings: dict[str, Any], knowledge,
                   model_roots: list[Path] | None = None) -> dict[str, Any]:
    """The settings as the plan fields they set (dotted paths). 0 steps is the whole plan and 0 test rows no
    evaluation; a setting for a section the plan lacks (LoRA rank on a full fine-tune) has nothing to edit."""
    overrides: dict[str, Any] = {}
    model = settings.get("base_model")
    if model and model not in (plan.base_model.id, plan.base_model.path):
        overrides["base_model"] = model_ref(model, knowledge, model_roots).model_dump(mode="json")
    for s in SETTINGS:
        value = settings.get(s.key)
        parent = s.path.rpartition(".")[0] if s.path else ""
        if s.path is None or value is None or (parent and plan_value(plan, parent) is None):
            continue
        overrides[s.path] = (value or None) if s.key in ("max_steps", "eval_limit") else value
    if "evaluation.max_rows" in overrides:
        overrides["evaluation.after_training"] = overrides["evaluation.max_rows"] is not None
    return overrides


def plan_with_settings(plan: TrainingPlan, settings: dict[str, Any], knowledge, data_dir: str | Path | None,
                       model_roots: list[Path] | None = None, kind: str = "train") -> TrainingPlan:
    """The recommended plan with the user's edits and the prepared data: the plan of the run, validated whole.
    `model_roots`: where a local base model may be (model_ref). A pilot may run a plan that trains nothing: it
    measures the plan's prompting against a short tuned run (executor/pilot)."""
    if plan.training is None and kind != "pilot":
        raise LaunchError(f"technique {plan.technique!r} trains nothing here: there is no run to launch "
                          "(prompting and RAG are evaluated as baselines, hosted fine-tuning needs an API key)")
    overrides = plan_overrides(plan, settings, knowledge, model_roots)
    if data_dir is not None:
        overrides["data.path"] = str(data_dir)
    try:
        return plan.with_overrides(overrides)
    except PlanError as exc:  # the plan's own words: field path and what is wrong
        raise LaunchError(str(exc)) from None


def settings_markdown(settings: dict[str, Any]) -> str:
    rows = ["| setting | value |", "|---|---|"]
    for s in SETTINGS:
        if s.key in settings:
            value = settings[s.key]
            shown = "whole plan" if s.key == "max_steps" and not value else value
            rows.append(f"| {s.label} `{s.key}` | {shown} |")
    return "\n".join(rows)


def submit_run(store, plan: TrainingPlan, owner: str, kind: str = "train") -> str:
    """Queue the run of a plan from `plan_with_settings` (the plan holds its data, step cap and evaluation); a
    `pilot` run measures the candidates on a sample of that data within the device's default budget."""
    return store.submit(plan.to_yaml(), owner=owner, kind=kind)


# ---------------------------------------------------------------------- following a run


@dataclass
class RunView:
    """What the chat shows about a run, folded from its event log (so it can be rebuilt on resume)."""

    run_id: str
    status: str = "queued"
    step: int = 0
    total: int | None = None
    epoch: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    tokens_per_second: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    error: str | None = None
    stage: str = "train"      # "train" | "evaluate"
    eval_progress: dict[str, Any] | None = None  # {system, done, total} of the evaluation under way
    evaluation: dict[str, Any] | None = None
    evaluation_error: str | None = None
    result: dict[str, Any] | None = None
    pilot: dict[str, Any] | None = None  # a pilot run's outcome event: verdict, reason, each system's value
    first_progress: tuple[float, int] | None = None
    last_progress: tuple[float, int] | None = None
    last_event: int = 0

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")

    def fold(self, row: dict[str, Any]) -> None:
        event = read_event(row)  # the declared contract (executor/runs/events.py): an unknown kind is an error
        self.last_event = max(self.last_event, event.id)
        kind, data = event.kind, event.data
        if kind == "status":
            self.status = data["status"] if data["status"] != "orphaned" else self.status
            if data.get("error"):
                self.error = data["error"]
        elif kind == "progress":
            self.step = data.get("step", self.step)
            self.total = data.get("total") or self.total
            self.epoch = data.get("epoch", self.epoch)
            if data.get("loss") is not None:
                self.loss = data["loss"]
                self.losses.append((self.step, data["loss"]))
            if data.get("eval_loss") is not None:
                self.eval_loss = data["eval_loss"]
                self.eval_losses.append((self.step, data["eval_loss"]))
            if data.get("tokens_per_second") is not None:
                self.tokens_per_second = data["tokens_per_second"]
            now = event.time or time.time()
            if self.first_progress is None:
                self.first_progress = (now, self.step)
            self.last_progress = (now, self.step)
        elif kind == "message":
            self.messages.append(str(data.get("text", "")))
        elif kind == "error":
            self.error = data.get("error")
        elif kind == "stage":
            self.stage = data.get("stage", self.stage)
        elif kind == "eval_progress":
            self.stage, self.eval_progress = "evaluate", data
        elif kind == "evaluation":
            self.evaluation = data
        elif kind == "evaluation_error":
            self.evaluation_error = data.get("error")
        elif kind == "result":
            self.result = data
        elif kind == "pilot":
            self.pilot = data

    def eta_seconds(self) -> float | None:
        if not (self.first_progress and self.last_progress and self.total):
            return None
        (t0, s0), (t1, s1) = self.first_progress, self.last_progress
        if s1 <= s0 or t1 <= t0:
            return None
        return (self.total - s1) * (t1 - t0) / (s1 - s0)

    def markdown(self) -> str:
        if self.status == "queued" and not self.step:
            return f"Run `{self.run_id}` is queued; it starts when a worker is free."
        parts = [f"**{self.status}**"]
        if self.total:
            parts.append(f"step {self.step}/{self.total}")
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch:.2f}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.eval_loss is not None:
            parts.append(f"eval loss {self.eval_loss:.4f}")
        if self.tokens_per_second is not None:
            parts.append(f"{self.tokens_per_second:,.0f} tokens/s")
        eta = self.eta_seconds()
        if eta is not None and not self.finished:
            parts.append(f"ETA {format_duration(eta)}")
        text = " · ".join(parts)
        if self.stage == "evaluate" and not self.finished:
            p = self.eval_progress
            where = f": {SYSTEM_NAMES.get(p['system'], p['system'])} {p['done']}/{p['total']}" if p else " (loading)"
            text += "\n\nEvaluating on the test split" + where
        if self.stage == "pilot":
            # A pilot reports its stages as messages ("measuring few_shot on 120 test rows", "tuning lora on 512
            # train rows (192 steps)", "skipped ..."): the last few show where it is.
            done = "\n".join(f"- {m}" for m in self.messages[-PILOT_LINES:])
            text += "\n\nPilot" + (f":\n{done}" if done else ": starting")
            if self.pilot:
                text += f"\n\nVerdict: **{self.pilot['verdict']}**. {self.pilot['reason']}"
        if self.evaluation_error:
            text += f"\n\nEvaluation failed: {self.evaluation_error}"
        if self.error:
            text += f"\n\nError: {self.error}"
        return text

    def figure(self):
        """The loss curve as a Plotly figure (training loss and, when there is one, validation loss)."""
        import plotly.graph_objects as go

        fig = go.Figure()
        if self.losses:
            fig.add_trace(go.Scatter(x=[s for s, _ in self.losses], y=[v for _, v in self.losses],
                                     mode="lines+markers", name="training loss"))
        if self.eval_losses:
            fig.add_trace(go.Scatter(x=[s for s, _ in self.eval_losses], y=[v for _, v in self.eval_losses],
                                     mode="lines+markers", name="validation loss"))
        fig.update_layout(title=f"Loss, run {self.run_id}", xaxis_title="step", yaxis_title="loss",
                          margin={"l": 40, "r": 10, "t": 40, "b": 40}, height=320)
        return fig


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def view_from_store(store, run_id: str) -> RunView:
    view = RunView(run_id)
    for event in store.events(run_id):
        view.fold(event)
    view.status = store.get(run_id)["status"]
    return view


async def follow_batches(store, run_id: str, interval: float = 0.5) -> AsyncIterator[list[dict[str, Any]]]:
    """`RunStore.follow` for an event loop: the blocking poll runs in a thread, and the events that arrived
    together come as one batch (one redraw per batch, however many events a poll found). Ends with the run."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def pump() -> None:
        try:
            for event in store.follow(run_id, interval=interval):
                loop.call_soon_threadsafe(queue.put_nowait, event)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name=f"follow-{run_id}", daemon=True).start()
    while True:
        batch = [await queue.get()]
        while not queue.empty():
            batch.append(queue.get_nowait())
        events = [e for e in batch if e is not None]
        if events:
            yield events
        if len(events) < len(batch):
            return
