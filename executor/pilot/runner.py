"""`pilot`: the candidate approaches measured on a stratified sample of the team's own data, within a budget.

    plan + prepared data -> the model (planned, or the largest available proxy) -> test sample sized from the
      measured generation speed -> prompting baselines (zero-shot, few-shot; RAG when there are documents)
      -> short runs of the planned technique on nested train samples of growing size (sized from the measured
      speed of the first) -> learning curve to the full train split -> verdict -> pilot.json, pilot.md, pilot.png

Every system is scored like `tunewise eval` scores it (same prompts, greedy decoding, metrics, bootstrap
intervals), on the same test rows. Each finished stage is saved in pilot_state.json, so a pilot that is
cancelled or crashes resumes where it stopped, with the budget it had left. When the budget runs out the pilot
stops with what it has and says what it skipped.

Lazy imports: torch, transformers and the training and evaluation modules (which import them) are imported inside
`pilot`, so the CLI and the run queue import this module for nothing.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from executor.pilot.budget import DEFAULT_MINUTES, Budget
from executor.pilot.curve import fit_curve
from executor.pilot.evidence import verdict
from executor.plan import TrainingPlan, trains

STATE = "pilot_state.json"
# Largest proxy model (billions of parameters) a pilot trains when the planned one is not here.
PROXY_MAX_B = {"cpu": 0.5, "cuda": 8.0}
EVAL_SHARE = 0.4         # of the budget for generation (baselines and every curve point); the rest trains
MIN_TEST, MAX_TEST = 20, 500
PROBE_ROWS = 8
FIRST_SIZE = {"cpu": 64, "cuda": 512}  # train rows of the first (smallest) curve point, before speed is known
# A pilot samples: its largest curve point trains on at most this share of the train split, so the full run stays
# the thing it predicts (and costs a fraction of it).
MAX_TRAIN_SHARE = 0.5
# Passes over a curve point's rows at most: a CPU affords ~60 steps in a 15-minute pilot, a GPU the ~120 steps
# the advisor's `large_steps` rule gives a whole run.
MAX_PILOT_EPOCHS = {"cpu": 3, "cuda": 6}
MIN_ROWS_PER_STEP = 8
# How a step's time grows with its rows, until two measured row counts give the exponent: in proportion on a
# CPU; on a GPU a small model's step is bound by the host at first (SmolLM2-135M on the H200: 0.29 s a step at 16
# rows, 0.32 s at 256), so the square root is a cautious guess that a larger model's steps still respect.
STEP_TIME_EXPONENT = {"cpu": 1.0, "cuda": 0.5}
# knowledge/hyperparameters.yaml `large_steps`, where the file leaves a key out.
STEP_RULE = {"min_steps_per_epoch": 30, "lr_exponent": 0.77, "min_total_steps": 120}
RESERVE = 0.05           # of the budget kept for the curve fit and the report


class PilotError(ValueError):
    """A pilot that cannot run; the message says what is missing."""


class _BudgetSpent(Exception):
    """Raised from the trainer's progress callback when a short run would leave no time to evaluate it."""


Progress = Callable[[str], None]


def default_budget_seconds(device: str) -> float:
    return DEFAULT_MINUTES.get(device, DEFAULT_MINUTES["cpu"]) * 60


def choose_model(plan: TrainingPlan, device: str, have_factory: bool = False) -> tuple[str, str | None]:
    """The model the pilot runs: the planned one when it is here, else the largest catalog model that is here
    and small enough for a pilot on this device. Returns (name for the loaders, a note when it is a proxy)."""
    from executor.models.registry import catalog
    from executor.train.runner import _hub_copy_exists

    ref = plan.base_model
    if have_factory:  # tests build the model from a factory: the planned name only gives the tokenizer
        return (ref.path if ref.source == "local" else ref.id), None
    if ref.source == "local" and ref.path and Path(ref.path).exists():
        return ref.path, None
    entry = catalog().get(ref.id)
    if entry is not None and entry["source"] == "bundled":
        return ref.id, None
    if entry is not None and entry["source"] == "hub" and _hub_copy_exists(entry["hf_id"]):
        return ref.id, None
    if entry is None and ref.source == "hub" and _hub_copy_exists(ref.hf_id or ref.id):
        return ref.id, None
    limit = PROXY_MAX_B.get(device, PROXY_MAX_B["cpu"])
    here = [(mid, e) for mid, e in catalog().items()
            if e["source"] == "bundled" or (e["source"] == "hub" and _hub_copy_exists(e["hf_id"]))]
    fitting = [(mid, e) for mid, e in here if (e.get("params_b") or 0) <= limit] or here
    if not fitting:
        raise PilotError(f"no model to run the pilot on: {ref.id} is not on this machine and no catalog model is")
    proxy, info = max(fitting, key=lambda m: m[1].get("params_b") or 0)
    why = "a hosted model cannot be trained here" if ref.source == "api" or (entry or {}).get("source") == "api" \
        else "its weights are not on this machine"
    return proxy, (f"measured on a proxy: {proxy} ({info.get('params_b')}B) instead of the planned {ref.id}, "
                   f"because {why}; a larger model usually scores higher, so read the tuned figures as a floor")


def _tuning_plan(plan: TrainingPlan, model: str, proxy: bool) -> tuple[TrainingPlan, str | None]:
    """The plan of the pilot's short runs: the planned technique where it trains here, else LoRA."""
    from executor.models.registry import catalog

    note = None
    raw = plan.model_dump(mode="json")
    if proxy:
        entry = catalog().get(model)
        raw["base_model"] = ({"id": model, "source": entry["source"], "hf_id": entry.get("hf_id")} if entry
                             else {"id": model, "source": "local", "path": model})
    technique = plan.technique
    if not trains(technique) or technique == "api" or (proxy and technique == "qlora"):
        note = (f"the short runs use LoRA: the plan's technique {technique!r} " +
                ("trains nothing, so the pilot measures what tuning would add" if not trains(technique)
                 else "is not run locally in a pilot"))
        technique = "lora"
    if technique == "lora" and (raw.get("training") or {}).get("method") != "lora":
        raw["training"] = {"method": "lora", "lora": {"r": 16, "alpha": 32}}
    raw["technique"] = technique
    raw["approach"] = "rag_fine_tuning" if plan.approach in ("rag", "rag_fine_tuning") else "fine_tuning"
    if raw["approach"] == "rag_fine_tuning" and not raw.get("retrieval"):
        raw["retrieval"] = {}
    training = raw["training"]
    training["early_stopping_patience"] = None  # a pilot's runs are short: every step counts
    raw["evaluation"] = {**raw.get("evaluation", {}), "after_training": False}
    return TrainingPlan.model_validate(raw), note


def step_rule() -> dict[str, float]:
    """The advisor's `large_steps` rule (knowledge/hyperparameters.yaml): how rows per step, learning rate and the
    number of steps go together. The pilot sizes its short runs with the same rule, so a curve point is the plan
    as the advisor would write it for that many rows, and the curve extrapolates to the plan itself."""
    from executor.knowledge_files import default_knowledge_dir, read_yaml

    rule = (read_yaml(default_knowledge_dir() / "hyperparameters.yaml") or {}).get("large_steps") or {}
    return {key: float(rule.get(key, default)) for key, default in STEP_RULE.items()}


def recipe(training, size: int, device: str, rule: dict[str, float]) -> dict[str, Any]:
    """Rows per step, learning rate and epochs of a short run on `size` rows: the plan's rows per step halved
    (down to MIN_ROWS_PER_STEP) until an epoch has `min_steps_per_epoch` steps, the learning rate scaled with the
    rows as the advisor scales it up (x (rows ratio)^lr_exponent), and epochs raised towards `min_total_steps`
    steps, at most MAX_PILOT_EPOCHS. A plan sized for 8,000 rows at 256 rows a step would otherwise give a
    512-row sample two updates an epoch at a learning rate meant for steps 16 times larger."""
    micro = max(1, int(training.per_device_batch_size))
    plan_rows = micro * max(1, int(training.gradient_accumulation_steps))
    rows = plan_rows
    while rows // 2 >= MIN_ROWS_PER_STEP and size / rows < rule["min_steps_per_epoch"]:
        rows //= 2
    micro = min(micro, rows)
    accumulation = max(1, rows // micro)
    rows = micro * accumulation
    per_epoch = math.ceil(size / rows)
    cap = MAX_PILOT_EPOCHS.get(device, MAX_PILOT_EPOCHS["cpu"])
    epochs = min(cap, max(min(math.ceil(training.epochs), cap), math.ceil(rule["min_total_steps"] / per_epoch)))
    learning_rate = training.learning_rate * (rows / plan_rows) ** rule["lr_exponent"]
    return {"training.per_device_batch_size": micro, "training.gradient_accumulation_steps": accumulation,
            "training.epochs": float(epochs), "training.learning_rate": float(f"{learning_rate:.3g}"),
            "rows_per_step": rows, "steps": per_epoch * epochs}


def step_seconds(measured: list[list[float]], rows: int, device: str) -> float:
    """Seconds a step of `rows` rows is expected to take, from the (rows, seconds a step) of the runs so far:
    scaled from the nearest measurement by rows^b, b fitted from the two most distant row counts (kept within
    [0, 1]) once there are two, else STEP_TIME_EXPONENT."""
    distinct = sorted({int(r): s for r, s in measured}.items())
    exponent = STEP_TIME_EXPONENT.get(device, 1.0)
    if len(distinct) >= 2:
        (r0, s0), (r1, s1) = distinct[0], distinct[-1]
        exponent = min(1.0, max(0.0, math.log(s1 / s0) / math.log(r1 / r0)))
    near_rows, near_seconds = min(distinct, key=lambda m: abs(math.log(m[0] / rows)))
    return near_seconds * (rows / near_rows) ** exponent


def _load_state(out_dir: Path) -> dict[str, Any]:
    path = out_dir / STATE
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"systems": {}, "points": [], "skipped": [], "spent": 0.0}


def _save_state(out_dir: Path, state: dict[str, Any], budget: Budget, spent_before: float) -> None:
    state["spent"] = round(spent_before + budget.spent(), 2)
    tmp = out_dir / (STATE + ".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    tmp.replace(out_dir / STATE)


def _nested_subsets(n_total: int, seed: int) -> list[int]:
    """One shuffled order of the train rows: every curve size takes a prefix, so each smaller sample is inside
    the larger (the curve then measures more data, not other data)."""
    order = list(range(n_total))
    random.Random(seed).shuffle(order)
    return order


def _write_subset(lines: list[str], order: list[int], size: int, data_dir: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(lines[i] for i in sorted(order[:size])), encoding="utf-8")
    validation = data_dir / "validation.jsonl"
    if validation.exists():  # the trainer's eval loss; a few rows are enough for a pilot
        with validation.open(encoding="utf-8") as handle:
            head = [line for _, line in zip(range(64), handle, strict=False)]
        (folder / "validation.jsonl").write_text("".join(head), encoding="utf-8")
    return folder


def pilot(
    plan: TrainingPlan,
    data_dir: Path,
    out_dir: Path,
    *,
    budget_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    model_factory: Callable | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    from executor.evaluate import prompts as P
    from executor.evaluate.generate import generate
    from executor.evaluate.runner import (
        TASKS,
        corpus_passages,
        detect_task,
        headline_metric,
        load_rows,
        sample_rows,
        score_outputs,
        tuned_model,
    )
    from executor.models.loader import choose_placement, load_causal_lm
    from executor.models.registry import load_tokenizer
    from executor.pilot.report import write_pilot_reports
    from executor.train.data import find_splits
    from executor.train.runner import train

    say = progress or (lambda text: None)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    placement = choose_placement(plan.hardware.device, "auto")
    state = _load_state(out_dir)
    total = float(budget_seconds or default_budget_seconds(placement.device))
    spent_before = float(state.get("spent") or 0.0)
    if total - spent_before <= 0:
        raise PilotError(f"the pilot in {out_dir} already used its {total:.0f} s budget; give it a larger budget "
                         "or a new folder")
    budget = Budget(total - spent_before, clock)

    splits = find_splits(data_dir)
    test_path = splits.get("test") or splits.get("validation")
    if test_path is None:
        raise PilotError(f"{data_dir}: no test.jsonl or validation.jsonl to measure on; run `tunewise data prepare`")
    rows, labels = load_rows(test_path, None)
    if not rows:
        raise PilotError(f"{test_path}: no chat rows with a reference reply to measure on")
    train_lines = [line for line in splits["train"].read_text(encoding="utf-8").splitlines(keepends=True)
                   if line.strip()]
    train_rows = load_rows(splits["train"], None)[0]
    references_all = [P.split_prompt(r)[1] for r in rows]
    task = plan.evaluation.task if plan.evaluation.task != "auto" else detect_task(references_all, labels)
    if task not in TASKS:
        raise PilotError(f"evaluation.task {task!r}: use one of {', '.join(TASKS)}")
    label_set = sorted({lab for lab in labels if lab} | {r[-1]["content"] for r in train_rows}) if any(labels) else []
    headline = headline_metric(task)

    model_name, proxy_note = choose_model(plan, placement.device, model_factory is not None)
    tokenizer = load_tokenizer(model_name)
    notes = [proxy_note] if proxy_note else []
    tuning_plan, technique_note = _tuning_plan(plan, model_name, proxy_note is not None)
    if technique_note:
        notes.append(technique_note)

    def base_loader():
        if model_factory is not None:
            return model_factory(tokenizer).to(placement.device).eval()
        return load_causal_lm(model_name, placement).eval()

    k = plan.evaluation.few_shot_k
    shots = P.pick_shots(train_rows, k) if train_rows else []
    passages = corpus_passages(plan)
    use_rag = bool(passages) or plan.approach in ("rag", "rag_fine_tuning")
    # The candidates only: the untuned model with a bare prompt is no option a team would ship (`tunewise eval`
    # reports it after a full run); leaving it out buys the budget a larger test sample.
    systems_wanted = ["zero_shot"] + (["few_shot"] if shots else []) + (["rag"] if use_rag else [])
    max_new = max(8, min({"classification": 16, "exact_match": 320, "json": 256}.get(
        task, plan.evaluation.max_new_tokens), max((len(tokenizer(r, add_special_tokens=False)["input_ids"])
                                                    for r in references_all[:200]), default=16) + 16))

    retriever = P.Retriever(passages or [P.as_passage(r) for r in train_rows]) if use_rag else None

    def inputs_for(name: str, prompts: list) -> list:
        """The prompts each system sees, as `tunewise eval` builds them; "tuned" sees the plain prompt."""
        if name == "zero_shot":
            return [P.zero_shot(p, task, label_set) for p in prompts]
        if name == "few_shot":
            return [P.few_shot(p, task, label_set, shots) for p in prompts]
        if name == "rag":
            found = retriever.search_many([" ".join(m["content"] for m in p if m["role"] == "user")
                                           for p in prompts], k)
            return [P.rag(p, task, label_set, hits) for p, hits in zip(prompts, found, strict=True)]
        return list(prompts)

    def tokens_of(conversations: list) -> int:
        texts = [tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True)
                 for c in conversations]
        return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]) + max_new * len(texts)

    say(f"pilot on {model_name} ({placement.device}), {budget.left():.0f} s budget")
    model = None
    if "test_size" not in state:
        # The speed of generation, per token of prompt and answer, on the longest prompts (few-shot): a row of
        # each system then costs its own length (77 labels in a few-shot prompt cost ten times a bare question).
        model = base_loader()
        heads = [P.split_prompt(r)[0] for r in rows[:PROBE_ROWS]]
        probe = inputs_for(systems_wanted[-1] if "few_shot" not in systems_wanted else "few_shot", heads)
        started = clock()
        generate(model, tokenizer, probe, max_new)
        per_token = max(1e-7, (clock() - started) / tokens_of(probe))
        row_seconds = {name: per_token * tokens_of(inputs_for(name, heads)) / len(heads)
                       for name in [*systems_wanted, "tuned"]}
        per_sample_row = sum(row_seconds[name] for name in systems_wanted) + 3 * row_seconds["tuned"]
        size = int(EVAL_SHARE * budget.left() / per_sample_row)
        state["test_size"] = max(min(MIN_TEST, len(rows)), min(size, MAX_TEST, len(rows)))
        state["row_seconds"] = row_seconds
        _save_state(out_dir, state, budget, spent_before)
    row_seconds = state["row_seconds"]
    sample, sample_labels, sample_note = sample_rows(rows, labels, state["test_size"])
    if sample_note:
        notes.append(sample_note.replace("Evaluated", "Measured"))
    prompts = [P.split_prompt(r)[0] for r in sample]
    references = [P.split_prompt(r)[1] for r in sample]

    skipped: list[str] = list(state.get("skipped") or [])

    def skip(what: str, why: str) -> None:
        line = f"{what}: {why}"
        if line not in skipped:
            skipped.append(line)
            state["skipped"] = skipped
        say(f"skipped {line}")

    # ------------------------------------------------------------------ prompting baselines (and RAG)
    for name in systems_wanted:
        if name in state["systems"]:
            continue
        needed = row_seconds[name] * len(sample)
        if not budget.affords(needed):
            skip(name, f"~{needed:.0f} s of generation, {budget.left():.0f} s left")
            continue
        inputs = inputs_for(name, prompts)
        say(f"measuring {name} on {len(sample)} test rows")
        model = model or base_loader()
        started = clock()
        outputs = generate(model, tokenizer, inputs, max_new)
        metrics, per_example = score_outputs(task, outputs, references, label_set)
        state["systems"][name] = {"metrics": metrics, "per_example": per_example,
                                  "seconds": round(clock() - started, 2)}
        _save_state(out_dir, state, budget, spent_before)
    del model

    # ------------------------------------------------------------------ short tuned runs: the learning curve
    n_train = len(train_lines)
    order = _nested_subsets(n_train, tuning_plan.training.seed)
    eval_cost = row_seconds["tuned"] * len(sample)
    rule = step_rule()
    device = placement.device
    cap = max(1, int(n_train * MAX_TRAIN_SHARE)) if n_train >= 2 * MIN_ROWS_PER_STEP else n_train
    measured: list[list[float]] = state.setdefault("step_seconds", [])  # [rows a step, seconds a step] per run

    def run_of(size: int) -> dict[str, Any]:
        return recipe(tuning_plan.training, size, device, rule)

    def cost(size: int) -> float:
        run = run_of(size)
        return run["steps"] * step_seconds(measured, run["rows_per_step"], device)

    done_sizes = [p["size"] for p in state["points"]]
    first = min(cap, max(MIN_ROWS_PER_STEP, min(FIRST_SIZE.get(device, 64), n_train // 4 or n_train)))
    planned: list[int] = [first] if not done_sizes else []
    for _ in range(6):  # three points at most; a skipped size is retried smaller once the speed is known
        if len(state["points"]) >= 3:
            break
        if not planned:
            if not measured:
                break
            # The remaining points, from the measured speed: the largest m (at most MAX_TRAIN_SHARE of the train
            # split) such that runs at sizes spaced evenly in log scale from the largest done to m fit in what is
            # left, each followed by its evaluation. Only the next one runs; the rest are planned again after it,
            # from the speed it measured.
            left_points = 3 - len(state["points"])
            room = budget.left() - RESERVE * budget.seconds - left_points * eval_cost
            largest = max(done_sizes)
            best = None
            m = cap
            while m > largest:
                sizes = sorted({round(largest * (m / largest) ** (i / left_points))
                                for i in range(1, left_points + 1)} - {largest})
                if sizes and sum(cost(size) for size in sizes) <= room:
                    best = sizes
                    break
                m = int(m / 1.5)
            if not best:
                skip("larger curve points", f"the next size would need more than the {max(0.0, room):.0f} s left"
                     if cap > largest else f"the curve stops at {MAX_TRAIN_SHARE:.0%} of the "
                     "train split, so the full run stays a prediction")
                break
            planned = best[:1]
        size = planned.pop(0)
        run = run_of(size)
        steps = run["steps"]
        estimate = cost(size) + eval_cost if measured else None
        if estimate is not None and not budget.affords(estimate):
            skip(f"tuned run on {size:,} rows", f"~{estimate:.0f} s needed, {budget.left():.0f} s left")
            continue
        if estimate is None and budget.left() < eval_cost:
            skip("tuned runs", f"{budget.left():.0f} s left after the baselines")
            break
        folder = out_dir / "curve" / f"n{size}"
        subset = _write_subset(train_lines, order, size, data_dir, folder / "data")
        say(f"tuning {tuning_plan.technique} on {size:,} train rows ({steps} steps)")
        point_plan = tuning_plan.with_overrides({
            "data.path": str(subset), "training.max_steps": steps,
            **{key: value for key, value in run.items() if key.startswith("training.")}})
        started = clock()

        def within_budget(step: int, total: int, record: dict, size: int = size) -> None:
            if not budget.affords(eval_cost):
                raise _BudgetSpent(size)

        try:
            trained = train(point_plan, folder / "run", model_factory=model_factory, progress=within_budget)
        except _BudgetSpent:
            shutil.rmtree(folder, ignore_errors=True)
            skip(f"tuned run on {size:,} rows", "stopped before it finished: finishing it would have left no time "
                 f"to evaluate it ({budget.left():.0f} s left)")
            break
        trained_seconds = clock() - started
        # Load and save included in the step's time: conservative.
        measured.append([run["rows_per_step"], max(trained_seconds / steps, 1e-4)])
        tuned = tuned_model(folder / "run", base_loader, placement.device)
        outputs = generate(tuned, tokenizer, prompts, max_new)
        del tuned
        metrics, per_example = score_outputs(task, outputs, references, label_set)
        state["points"].append({"size": size, "steps": steps, "rows_per_step": run["rows_per_step"],
                                "learning_rate": run["training.learning_rate"],
                                "train_seconds": round(trained_seconds, 2),
                                "first_loss": trained.get("first_loss"), "final_loss": trained.get("final_loss"),
                                "metrics": metrics, "per_example": per_example})
        done_sizes.append(size)
        # Keep the adapter (small) of each point, not the merged weights and checkpoints (the model's size each).
        for heavy in ("merged", "model", "checkpoints"):
            shutil.rmtree(folder / "run" / heavy, ignore_errors=True)
        _save_state(out_dir, state, budget, spent_before)

    # ------------------------------------------------------------------ the curve, the verdict, the reports
    points = sorted(state["points"], key=lambda p: p["size"])
    curve = fit_curve([p["size"] for p in points], [p["per_example"] for p in points], n_train)
    if len(points) < 2:
        notes.append("No learning curve: fewer than two tuned sizes finished within the budget.")
    systems = {name: s["metrics"] for name, s in state["systems"].items()}
    if points:
        systems["tuned"] = points[-1]["metrics"]
    headline_of = {name: m[headline] for name, m in systems.items() if isinstance(m.get(headline), dict)}
    losses = (points[-1].get("first_loss"), points[-1].get("final_loss")) if points else (None, None)
    decided = verdict(headline_of, curve.to_dict() if curve else None, losses)
    _save_state(out_dir, state, budget, spent_before)
    report = {
        "kind": "pilot", "task": task, "headline_metric": headline, "n": len(sample), "test_rows": len(rows),
        "train_rows": n_train, "model": model_name, "planned_model": plan.base_model.id,
        "proxy": proxy_note is not None, "technique": tuning_plan.technique, "planned_approach": plan.approach,
        "planned_technique": plan.technique, "device": placement.device,
        "budget_seconds": round(total, 1), "spent_seconds": state["spent"],
        "systems": systems,
        "curve": {"points": [{"size": p["size"], "steps": p["steps"], "rows_per_step": p.get("rows_per_step"),
                              "learning_rate": p.get("learning_rate"), "train_seconds": p["train_seconds"],
                              "first_loss": p.get("first_loss"), "final_loss": p.get("final_loss"),
                              headline: p["metrics"][headline]} for p in points],
                  "fit": curve.to_dict() if curve else None},
        "verdict": decided["verdict"], "reason": decided["reason"],
        "skipped": skipped, "notes": notes,
    }
    return write_pilot_reports(out_dir, report)
