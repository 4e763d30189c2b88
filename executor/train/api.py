"""Hosted fine-tuning on OpenAI (technique `api`), for teams whose tuned model must stay on OpenAI.

    write_openai_splits   the prepared splits (chatml or OpenAI layout) -> openai_train.jsonl (+ validation),
                          every row checked against OpenAI's documented rules before anything leaves the machine
    run_hosted_finetune   upload the splits, create the job, follow it to the end while mirroring its events into
                          metrics.jsonl (the record local trainers write), then write hosted_job.json

Refused up front, before any upload: a plan whose technique is not `api`, a fractional `training.epochs`
(OpenAI trains whole epochs), plain-text rows (OpenAI only tunes chat and preference data), and any row that
breaks OpenAI's rules. `training.learning_rate` is not sent: OpenAI takes a multiplier of its own default
rate, so an absolute rate chosen for a local run would mean something else there.

Lazy imports: openai is imported inside the functions that use it, so importing this module (from the CLI, the
chat or a run process) stays cheap.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor.plan import TrainingPlan

ROLES = ("system", "user", "assistant")
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
SUFFIX = "tunewise"
OUTPUT_FILES = {"train": "openai_train.jsonl", "validation": "openai_validation.jsonl"}
_EVENTS_PAGE = 100  # the largest page OpenAI serves; fewer round trips per poll


class HostedFineTuneError(RuntimeError):
    """The hosted run cannot go on; the message says where (file, line, field or job) and what to do."""


class _BadRow(ValueError):
    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field = field
        self.problem = problem


# --- data: prepared splits -> OpenAI's upload layout -------------------------------------------------------------


def _content(message: dict[str, Any], field: str) -> str:
    content = message.get("content")
    if not isinstance(content, str):
        raise _BadRow(f"{field}.content", f"content must be a string, got {type(content).__name__}")
    if not content.strip():
        raise _BadRow(f"{field}.content", "content is empty")
    return content


def _messages(value: Any, field: str, *, keep_weight: bool) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise _BadRow(field, "must be a non-empty list of {\"role\", \"content\"} messages")
    out = []
    for i, message in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise _BadRow(where, f"a message is an object, got {type(message).__name__}")
        role = message.get("role")
        if role not in ROLES:
            raise _BadRow(f"{where}.role", f"role {role!r} is not one of {', '.join(ROLES)}")
        clean: dict[str, Any] = {"role": role, "content": _content(message, where)}
        # `weight` (0/1 on assistant turns) is OpenAI's own key for "do not train on this reply"; dropping it
        # would silently train on replies the data owner excluded.
        if keep_weight and "weight" in message:
            if role != "assistant" or message["weight"] not in (0, 1) or isinstance(message["weight"], bool):
                raise _BadRow(f"{where}.weight", "weight is 0 or 1, and only on assistant messages")
            clean["weight"] = message["weight"]
        out.append(clean)
    return out


def _output(value: Any, field: str) -> list[dict[str, str]]:
    # TRL's standard layout carries the reply as a plain string; OpenAI wants one assistant message.
    if isinstance(value, str):
        value = [{"role": "assistant", "content": value}]
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        raise _BadRow(field, "must be exactly one assistant message [{\"role\": \"assistant\", \"content\": ...}]")
    if value[0].get("role") != "assistant":
        raise _BadRow(f"{field}[0].role", f"role {value[0].get('role')!r} must be 'assistant'")
    return [{"role": "assistant", "content": _content(value[0], f"{field}[0]")}]


def _convert_row(row: Any) -> tuple[str, dict[str, Any]]:
    """One prepared row -> (method, row with only OpenAI's keys). Raises _BadRow naming the field."""
    if not isinstance(row, dict):
        raise _BadRow("<row>", f"a row is a JSON object, got {type(row).__name__}")
    if "input" in row or "preferred_output" in row:  # already OpenAI's DPO layout
        if not isinstance(row.get("input"), dict):
            raise _BadRow("input", "must be an object {\"messages\": [...]}")
        prompt = _messages(row["input"].get("messages"), "input.messages", keep_weight=False)
        prompt_field = "input.messages"
        chosen = _output(row.get("preferred_output"), "preferred_output")
        rejected = _output(row.get("non_preferred_output"), "non_preferred_output")
    elif "chosen" in row or "rejected" in row:  # Tunewise's chatml preference layout (TRL conversational)
        prompt_field = "prompt" if "prompt" in row else "messages"
        prompt = _messages(row.get(prompt_field), prompt_field, keep_weight=False)
        chosen = _output(row.get("chosen"), "chosen")
        rejected = _output(row.get("rejected"), "rejected")
    elif "messages" in row:
        messages = _messages(row["messages"], "messages", keep_weight=True)
        if messages[-1]["role"] != "assistant":
            raise _BadRow(f"messages[{len(messages) - 1}].role",
                          f"the last message is the {messages[-1]['role']}'s; an SFT row must end with the "
                          "assistant reply OpenAI trains on")
        return "supervised", {"messages": messages}
    elif "text" in row:
        raise _BadRow("text", "plain-text rows cannot be fine-tuned on OpenAI, which tunes chat and preference "
                              "data only; use a local technique for document corpora")
    else:
        raise _BadRow("<row>", f"no 'messages' or preference fields (found {', '.join(sorted(row)) or 'none'}); "
                               "prepare the data with --format chatml or --format openai")
    if prompt[-1]["role"] != "user":
        raise _BadRow(f"{prompt_field}[{len(prompt) - 1}].role",
                      f"the prompt ends with the {prompt[-1]['role']}'s message; the preferred and non-preferred "
                      "outputs answer the user's last message")
    return "dpo", {"input": {"messages": prompt}, "preferred_output": chosen, "non_preferred_output": rejected}


def _convert_file(src: Path, dst: Path, method: str | None) -> tuple[str | None, int]:
    """Convert SRC into DST; every row must have METHOD (the first row's when None). Returns (method, rows)."""
    tmp = dst.with_name(dst.name + ".tmp")
    count = 0
    try:
        with src.open(encoding="utf-8") as lines, tmp.open("w", encoding="utf-8") as out:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise HostedFineTuneError(f"{src}, line {number}: not valid JSON ({exc.msg}); fix or drop the "
                                              "line, or re-run data preparation") from None
                try:
                    row_method, converted = _convert_row(row)
                    if method is not None and row_method != method:
                        raise _BadRow("<row>", f"a {row_method} row among {method} rows; one OpenAI job trains one "
                                               "method, so keep SFT and preference data in separate datasets")
                except _BadRow as bad:
                    raise HostedFineTuneError(f"{src}, line {number}, field '{bad.field}': {bad.problem}. Fix or drop "
                                              "the row (or re-run data preparation) and try again") from None
                method = row_method
                out.write(json.dumps(converted, ensure_ascii=False) + "\n")
                count += 1
        # Written under a temporary name and renamed only when every row passed, so a half-converted file
        # is never left where someone might upload it by hand.
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return method, count


def _write_splits(data_dir: Path, out_dir: Path) -> tuple[dict[str, Path], str]:
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    train = data_dir / "train.jsonl"
    if not train.is_file():
        raise HostedFineTuneError(f"{train}: no training split here; prepare the data first "
                                  f"(tunewise data prepare INPUT --out {data_dir})")
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {"train": out_dir / OUTPUT_FILES["train"]}
    method, count = _convert_file(train, splits["train"], None)
    if method is None or count == 0:
        splits["train"].unlink(missing_ok=True)
        raise HostedFineTuneError(f"{train}: the training split has no rows; prepare the data again with more "
                                  "examples (OpenAI needs at least 10)")
    validation = data_dir / "validation.jsonl"
    target = out_dir / OUTPUT_FILES["validation"]
    target.unlink(missing_ok=True)  # a stale file from an earlier run must not pass for this run's split
    if validation.is_file():
        _, count = _convert_file(validation, target, method)
        if count:
            splits["validation"] = target
        else:
            target.unlink(missing_ok=True)  # an empty validation split (fraction 0) means: no validation
    return splits, method


def write_openai_splits(data_dir: Path, out_dir: Path) -> dict[str, Path]:
    """Write OUT_DIR/openai_train.jsonl (+ openai_validation.jsonl when DATA_DIR has validation rows).

    Rows may be Tunewise's chatml layout or OpenAI's; only OpenAI's keys are written. The first row that breaks
    OpenAI's rules raises HostedFineTuneError naming the file, line and field. `openai_method` tells which
    method ("supervised" or "dpo") the written files are for.
    """
    return _write_splits(data_dir, out_dir)[0]


def openai_method(path: Path) -> str:
    """ "dpo" or "supervised": the fine-tuning method a file written by write_openai_splits is for."""
    with Path(path).open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                return "dpo" if "input" in json.loads(line) else "supervised"
    raise HostedFineTuneError(f"{path}: empty file; run write_openai_splits on the prepared data first")


# --- the job ------------------------------------------------------------------------------------------------------


def _epochs(plan: TrainingPlan) -> int | str:
    if plan.training is None:
        return "auto"  # OpenAI picks the epoch count from the dataset size
    epochs = plan.training.epochs
    if epochs != int(epochs):
        raise HostedFineTuneError(f"plan field training.epochs = {epochs}: OpenAI trains whole epochs; set it to "
                                  f"{max(1, round(epochs))} (or remove the training section to let OpenAI choose)")
    return int(epochs)


def _method_spec(plan: TrainingPlan, method: str) -> dict[str, Any]:
    hyperparameters: dict[str, Any] = {"n_epochs": _epochs(plan)}
    if method == "dpo" and plan.training is not None and plan.training.preference is not None:
        hyperparameters["beta"] = plan.training.preference.beta
    return {"type": method, method: {"hyperparameters": hyperparameters}}


def _default_client(splits: dict[str, Path], run_dir: Path):
    written = ", ".join(str(path) for path in splits.values())
    if not os.environ.get("OPENAI_API_KEY"):
        raise HostedFineTuneError(f"OPENAI_API_KEY is not set, so nothing was uploaded. The splits were written to "
                                  f"{run_dir} ({written}): set OPENAI_API_KEY and run again, or upload them by hand "
                                  "on the OpenAI dashboard (purpose fine-tune)")
    import openai  # imported here: the rest of the executor runs without the OpenAI SDK configured

    try:
        return openai.OpenAI()
    except openai.OpenAIError as exc:
        raise HostedFineTuneError(f"cannot create the OpenAI client ({exc}); the splits were written to {run_dir} "
                                  f"({written}) and can be uploaded by hand") from None


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    import openai

    try:
        return fn(*args, **kwargs)
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") or exc.message
        param = f" (parameter {body['param']})" if body.get("param") else ""
        raise HostedFineTuneError(f"OpenAI refused to {what}: {message}{param} [HTTP {exc.status_code}]") from None
    except openai.APIError as exc:
        raise HostedFineTuneError(f"could not reach OpenAI to {what}: {exc}; check the network and try again") from None


def _upload(client: Any, path: Path) -> str:
    with path.open("rb") as handle:
        uploaded = _call(f"accept {path.name}", client.files.create, file=(path.name, handle), purpose="fine-tune")
    return uploaded.id


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _number(value: Any, kind: type) -> Any:
    return kind(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def metric_record(event: Any) -> dict[str, Any]:
    """One OpenAI job event as a metrics.jsonl record (the keys local trainers write; None where OpenAI is silent)."""
    data = _field(event, "data")
    if data is not None and not isinstance(data, dict):
        data = data.model_dump() if hasattr(data, "model_dump") else {}
    data = data or {}
    metrics = _field(event, "type") == "metrics"
    valid_loss = data.get("valid_loss", data.get("full_valid_loss"))
    created = _field(event, "created_at")
    when = datetime.fromtimestamp(created, UTC) if isinstance(created, int | float) else datetime.now(UTC)
    return {
        "step": _number(data.get("step"), int) if metrics else None,
        "loss": _number(data.get("train_loss"), float) if metrics else None,
        "eval_loss": _number(valid_loss, float) if metrics else None,
        "learning_rate": None,
        "tokens_per_second": None,
        "memory_gb": None,
        "event": _field(event, "message"),
        "source": "openai",
        "time": when.isoformat(),
    }


def _new_events(client: Any, job_id: str, seen: set[str]) -> list[Any]:
    """The job's events not in SEEN, oldest first.

    OpenAI lists events newest first and `after` pages towards older ones, so each poll reads from the newest
    event back to the first one already seen.
    """
    fresh: list[Any] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": _EVENTS_PAGE}
        if after is not None:
            params["after"] = after
        page = _call("list the job's events", client.fine_tuning.jobs.list_events, job_id, **params)
        reached_seen = False
        for event in page.data:
            if event.id in seen:
                reached_seen = True
                break
            fresh.append(event)
        if reached_seen or not page.data or not page.has_more:
            break
        after = page.data[-1].id
    seen.update(event.id for event in fresh)
    return fresh[::-1]


def _follow(client: Any, job: Any, metrics_path: Path, poll_seconds: float, timeout_seconds: float | None,
            on_event: Callable[[dict[str, Any]], None] | None) -> Any:
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    seen: set[str] = set()
    with metrics_path.open("w", encoding="utf-8") as out:
        while True:
            # Status first, events second: the poll that sees the final status then also collects every event
            # OpenAI wrote before it.
            job = _call("report on the fine-tuning job", client.fine_tuning.jobs.retrieve, job.id)
            for event in _new_events(client, job.id, seen):
                record = metric_record(event)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()  # a dashboard tailing metrics.jsonl sees each event as it arrives
                if on_event is not None:
                    on_event(record)
            if job.status in TERMINAL_STATUSES or (deadline is not None and time.monotonic() >= deadline):
                return job
            time.sleep(poll_seconds)


def _job_record(job: Any, method: str, files: dict[str, dict[str, str]]) -> dict[str, Any]:
    error = getattr(job, "error", None)
    return {
        "job_id": job.id,
        "model": job.model,
        "method": method,
        "fine_tuned_model": job.fine_tuned_model,
        "status": job.status,
        "trained_tokens": job.trained_tokens,
        "files": files,
        "error": None if error is None else {"code": error.code, "message": error.message, "param": error.param},
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def run_hosted_finetune(plan: TrainingPlan, data_dir: Path, run_dir: Path, *, client: Any = None,
                        poll_seconds: float = 10.0, timeout_seconds: float | None = None,
                        on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Fine-tune plan.base_model on OpenAI with the prepared splits in DATA_DIR; record everything in RUN_DIR.

    Writes RUN_DIR/openai_train.jsonl (+ openai_validation.jsonl), RUN_DIR/metrics.jsonl (one record per job
    event, also passed to ON_EVENT) and RUN_DIR/hosted_job.json, which it returns. CLIENT defaults to
    openai.OpenAI() (needs OPENAI_API_KEY). Raises HostedFineTuneError for bad data, a refused request, a failed
    or cancelled job, and a job still running after TIMEOUT_SECONDS (which keeps running on OpenAI).
    """
    if plan.technique != "api":
        raise HostedFineTuneError(f"plan field technique = {plan.technique!r}: hosted fine-tuning runs plans with "
                                  "technique 'api'; use the local trainer for this plan")
    run_dir = Path(run_dir)
    splits, method = _write_splits(Path(data_dir), run_dir)
    method_spec = _method_spec(plan, method)
    client = client if client is not None else _default_client(splits, run_dir)

    files = {name: {"path": str(path), "id": _upload(client, path)} for name, path in splits.items()}
    optional = {"validation_file": files["validation"]["id"]} if "validation" in files else {}
    job = _call("create the fine-tuning job", client.fine_tuning.jobs.create, model=plan.base_model.id,
                training_file=files["train"]["id"], method=method_spec, suffix=SUFFIX, **optional)
    job_file = run_dir / "hosted_job.json"
    _write_json(job_file, _job_record(job, method, files))  # now, so a crash while following still leaves the id

    job = _follow(client, job, run_dir / "metrics.jsonl", poll_seconds, timeout_seconds, on_event)
    record = _job_record(job, method, files)
    _write_json(job_file, record)
    if job.status == "failed":
        reason = record["error"]["message"] if record["error"] else "no reason given"
        raise HostedFineTuneError(f"OpenAI fine-tuning job {job.id} failed: {reason}. Details in {job_file}; fix "
                                  "the cause and start a new run")
    if job.status == "cancelled":
        raise HostedFineTuneError(f"OpenAI fine-tuning job {job.id} was cancelled, so no model was made; start a "
                                  f"new run to train one (details in {job_file})")
    if job.status != "succeeded":
        raise HostedFineTuneError(f"OpenAI fine-tuning job {job.id} is still {job.status} after {timeout_seconds}s; "
                                  "it keeps running (and billing) on OpenAI. Follow it on the dashboard or with "
                                  f"client.fine_tuning.jobs.retrieve({job.id!r}), or cancel it there")
    return record
