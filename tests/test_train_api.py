"""Hosted fine-tuning (technique `api`) against a fake OpenAI fine-tuning service over real HTTP.

The fake is a FastAPI app served by uvicorn on 127.0.0.1 and driven by the official `openai` client, so the
requests the code sends are the ones OpenAI would receive. It checks what OpenAI documents (upload purpose,
JSONL layout per method, the job request's shape) and lists events the way OpenAI does: newest first, with
`after` paging towards older events. Its page size is capped at 3 so that paging is exercised.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import uvicorn
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from executor.plan import TrainingPlan
from executor.train.api import HostedFineTuneError, openai_method, run_hosted_finetune, write_openai_splits

# --- the fake service -----------------------------------------------------------------------------------------------

FINE_TUNABLE = {"gpt-4o-mini-2024-07-18", "gpt-4.1-mini-2025-04-14"}
SFT_KEYS = {"messages"}
DPO_KEYS = {"input", "preferred_output", "non_preferred_output"}
MESSAGE_KEYS = {"role", "content", "name", "weight"}
JOB_KEYS = {"model", "training_file", "validation_file", "method", "suffix", "seed", "metadata", "integrations",
            "hyperparameters"}
HYPERPARAMETERS = {"supervised": {"n_epochs", "batch_size", "learning_rate_multiplier"},
                   "dpo": {"n_epochs", "batch_size", "learning_rate_multiplier", "beta"}}
# The training run the fake plays back: (step, train_loss, valid_loss), two steps per poll once running.
STEPS = [(1, 2.31, 2.40), (2, 1.87, 2.02), (3, 1.42, 1.71), (4, 1.10, 1.55), (5, 0.93, 1.49)]
FAILURE = "Training file has 2 example(s), but must have at least 10 examples"


def _error(message: str, param: str | None = None, status: int = 400) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return JSONResponse(body, status_code=status)


class FakeOpenAI:
    def __init__(self) -> None:
        self.app = FastAPI()
        self.reset()
        app = self.app

        @app.middleware("http")
        async def record(request: Request, call_next):
            self.requests.append({"method": request.method, "path": request.url.path,
                                  "query": dict(request.query_params)})
            return await call_next(request)

        @app.post("/v1/files")
        async def upload(file: UploadFile = File(...), purpose: str = Form(...)):  # noqa: B008 - FastAPI idiom
            if purpose != "fine-tune":
                return _error(f"Invalid purpose {purpose!r} for a fine-tuning file", "purpose")
            if not (file.filename or "").endswith(".jsonl"):
                return _error("Fine-tuning files must be .jsonl", "file")
            rows = [json.loads(line) for line in (await file.read()).decode("utf-8").splitlines() if line.strip()]
            layouts = {frozenset(row) for row in rows}
            if layouts == {frozenset(SFT_KEYS)}:
                method, message_lists = "supervised", [row["messages"] for row in rows]
            elif layouts == {frozenset(DPO_KEYS)}:
                method = "dpo"
                message_lists = [m for row in rows
                                 for m in (row["input"]["messages"], row["preferred_output"],
                                           row["non_preferred_output"])]
            else:
                return _error(f"Rows have undocumented or mixed keys: {sorted(map(sorted, layouts))}", "file")
            if any(set(m) - MESSAGE_KEYS for messages in message_lists for m in messages):
                return _error("A message has undocumented keys", "file")
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = {"filename": file.filename, "purpose": purpose, "method": method, "rows": rows}
            return {"id": file_id, "object": "file", "bytes": 1, "created_at": 1_700_000_000,
                    "filename": file.filename, "purpose": purpose, "status": "processed"}

        @app.post("/v1/fine_tuning/jobs")
        async def create_job(request: Request):
            body = await request.json()
            self.job_requests.append(body)
            if set(body) - JOB_KEYS:
                return _error(f"Unrecognized request argument(s): {sorted(set(body) - JOB_KEYS)}")
            if not isinstance(body.get("model"), str):
                return _error("Missing required parameter: 'model'", "model")
            if body["model"] not in FINE_TUNABLE:
                return _error(f"Model {body['model']} is not available for fine-tuning or does not exist.", "model")
            for key in ("training_file", "validation_file"):
                if (key == "training_file" or key in body) and body.get(key) not in self.files:
                    return _error(f"Invalid file id {body.get(key)!r}", key)
            method = body.get("method")
            if not isinstance(method, dict) or method.get("type") not in HYPERPARAMETERS:
                return _error("method.type must be 'supervised' or 'dpo'", "method.type")
            kind = method["type"]
            if set(method) - {"type", kind} or set(method.get(kind, {})) - {"hyperparameters"}:
                return _error(f"Unexpected keys in method: {sorted(method)}", "method")
            hyper = method.get(kind, {}).get("hyperparameters", {})
            if set(hyper) - HYPERPARAMETERS[kind]:
                return _error(f"Unknown hyperparameters {sorted(set(hyper) - HYPERPARAMETERS[kind])}", "method")
            epochs = hyper.get("n_epochs", "auto")
            if epochs != "auto" and not (isinstance(epochs, int) and 1 <= epochs <= 50):
                return _error(f"n_epochs must be 'auto' or an integer 1-50, got {epochs!r}", "n_epochs")
            if not isinstance(body.get("suffix", ""), str) or len(body.get("suffix") or "") > 64:
                return _error("suffix must be a string of at most 64 characters", "suffix")
            if self.files[body["training_file"]]["method"] != kind:
                return _error(f"Training file layout does not match method {kind!r}", "training_file")
            job_id = f"ftjob-{len(self.jobs) + 1}"
            self.jobs[job_id] = {"id": job_id, "body": body, "status": "validating_files", "polls": 0, "events": []}
            self._event(job_id, f"Created fine-tuning job: {job_id}")
            return self._job(job_id)

        @app.get("/v1/fine_tuning/jobs/{job_id}")
        async def retrieve_job(job_id: str):
            if job_id not in self.jobs:
                return _error(f"No fine-tuning job {job_id}", status=404)
            self._advance(job_id)
            return self._job(job_id)

        @app.get("/v1/fine_tuning/jobs/{job_id}/events")
        async def list_events(job_id: str, after: str | None = None, limit: int = 20):
            newest_first = self.jobs[job_id]["events"][::-1]
            start = 0
            if after is not None:
                start = next(i for i, e in enumerate(newest_first) if e["id"] == after) + 1
            page = newest_first[start:start + min(limit, self.max_page)]
            return {"object": "list", "data": page, "has_more": start + len(page) < len(newest_first)}

    def reset(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.job_requests: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.outcome = "succeeded"
        self.max_page = 3
        self.clock = 1_700_000_000

    def _event(self, job_id: str, message: str, data: dict | None = None, level: str = "info") -> None:
        job = self.jobs[job_id]
        self.clock += 1
        job["events"].append({"object": "fine_tuning.job.event", "id": f"ftevent-{job_id}-{len(job['events'])}",
                              "created_at": self.clock, "level": level, "message": message,
                              "data": data or {}, "type": "metrics" if data else "message"})

    def _advance(self, job_id: str) -> None:
        """Each retrieve moves the job on: validating_files -> queued -> running (two steps a poll) -> done."""
        job = self.jobs[job_id]
        job["polls"] += 1
        if job["status"] == "validating_files":
            job["status"] = "queued"
            self._event(job_id, "Files validated, moving job to queued state")
        elif job["status"] == "queued":
            job["status"] = "running"
            self._event(job_id, "Fine-tuning job started")
        elif job["status"] == "running":
            done = sum(1 for e in job["events"] if e["type"] == "metrics")
            last = 2 if self.outcome == "failed" else len(STEPS)
            for step, train_loss, valid_loss in STEPS[done:min(done + 2, last)]:
                self._event(job_id, f"Step {step}/{len(STEPS)}: training loss={train_loss}",
                            {"step": step, "train_loss": train_loss, "valid_loss": valid_loss,
                             "total_steps": len(STEPS), "train_mean_token_accuracy": 0.5})
            if done + 2 >= last:
                if self.outcome == "failed":
                    job["status"] = "failed"
                    self._event(job_id, f"Fine-tuning job failed: {FAILURE}", level="error")
                else:
                    job["status"] = "succeeded"
                    self._event(job_id, "New fine-tuned model created")
                    self._event(job_id, "The job has successfully completed")

    def _job(self, job_id: str) -> dict[str, Any]:
        job, body = self.jobs[job_id], self.jobs[job_id]["body"]
        succeeded, failed = job["status"] == "succeeded", job["status"] == "failed"
        kind = body["method"]["type"]
        return {
            "id": job_id, "object": "fine_tuning.job", "created_at": 1_700_000_000, "model": body["model"],
            "organization_id": "org-test", "result_files": [], "seed": 42, "status": job["status"],
            "training_file": body["training_file"], "validation_file": body.get("validation_file"),
            "hyperparameters": body["method"][kind].get("hyperparameters", {}), "method": body["method"],
            "fine_tuned_model": f"ft:{body['model']}:org-test:{body.get('suffix')}:abc123" if succeeded else None,
            "trained_tokens": 12345 if succeeded else None,
            "finished_at": 1_700_000_100 if succeeded or failed else None,
            "error": {"code": "invalid_training_file", "message": FAILURE, "param": "training_file"} if failed
            else None,
        }


@pytest.fixture(scope="module")
def fake():
    service = FakeOpenAI()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(service.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the fake OpenAI server did not start"
        time.sleep(0.01)
    service.base_url = f"http://127.0.0.1:{port}/v1"
    yield service
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def client(fake):
    fake.reset()
    with openai.OpenAI(api_key="test", base_url=fake.base_url, max_retries=0, timeout=5) as client:
        yield client


# --- data and plans ---------------------------------------------------------------------------------------------------


def plan(model: str = "gpt-4o-mini-2024-07-18", **training: Any) -> TrainingPlan:
    raw: dict[str, Any] = {"approach": "fine_tuning", "technique": "api", "base_model": {"id": model, "source": "api"}}
    if training:
        raw["training"] = {"method": "api", **training}
    return TrainingPlan.model_validate(raw)


def chat_row(i: int) -> dict[str, Any]:
    messages = [{"role": "system", "content": "You answer billing questions."},
                {"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return {"messages": messages, "text": text, "label": "billing", "metadata": {"ticket": i},
            "source": {"file": "tickets.jsonl", "line": i}}


def preference_row(i: int) -> dict[str, Any]:
    return {"prompt": [{"role": "user", "content": f"Summarise ticket {i}."}],
            "chosen": [{"role": "assistant", "content": f"Short summary {i}."}],
            "rejected": [{"role": "assistant", "content": f"Rambling summary {i}..."}],
            "source": {"file": "prefs.jsonl", "line": i}}


def write_split(folder: Path, name: str, rows: list[Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- write_openai_splits --------------------------------------------------------------------------------------------


def test_chatml_rows_become_openai_rows_with_only_openai_keys(tmp_path):
    write_split(tmp_path / "data", "train", [chat_row(i) for i in range(3)])
    write_split(tmp_path / "data", "validation", [chat_row(9)])
    splits = write_openai_splits(tmp_path / "data", tmp_path / "out")
    assert splits == {"train": tmp_path / "out" / "openai_train.jsonl",
                      "validation": tmp_path / "out" / "openai_validation.jsonl"}
    rows = read_jsonl(splits["train"])
    assert rows[0] == {"messages": chat_row(0)["messages"]}
    assert openai_method(splits["train"]) == "supervised"


def test_preference_rows_become_openai_dpo_rows(tmp_path):
    already_openai = {"input": {"messages": [{"role": "user", "content": "Hi"}]},
                      "preferred_output": [{"role": "assistant", "content": "Hello!"}],
                      "non_preferred_output": [{"role": "assistant", "content": "What."}]}
    write_split(tmp_path / "data", "train", [preference_row(1), already_openai])
    write_split(tmp_path / "data", "validation", [])  # an empty validation split means no validation file
    splits = write_openai_splits(tmp_path / "data", tmp_path / "out")
    assert set(splits) == {"train"}
    rows = read_jsonl(splits["train"])
    assert rows[0] == {"input": {"messages": preference_row(1)["prompt"]},
                       "preferred_output": preference_row(1)["chosen"],
                       "non_preferred_output": preference_row(1)["rejected"]}
    assert rows[1] == already_openai
    assert openai_method(splits["train"]) == "dpo"


@pytest.mark.parametrize(("bad", "split", "field", "words"), [
    ({"messages": [{"role": "user", "content": "Only a question?"}]}, "train", "messages[0].role", "must end"),
    ({"messages": [{"role": "user", "content": "Q"}, {"role": "bot", "content": "A"}]}, "train", "messages[1].role",
     "'bot'"),
    ({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": 3}]}, "validation",
     "messages[1].content", "string"),
    (preference_row(5) | {"chosen": [{"role": "user", "content": "x"}]}, "train", "chosen[0].role", "assistant"),
    ({"text": "a plain document"}, "train", "text", "plain-text"),
    ("{not json", "train", None, "not valid JSON"),
])
def test_a_bad_row_is_named_by_file_line_and_field(tmp_path, bad, split, field, words):
    write_split(tmp_path / "data", "train", [chat_row(1), *([bad] if split == "train" else [])])
    write_split(tmp_path / "data", "validation", [chat_row(2), chat_row(3), *([bad] if split == "validation" else [])])
    with pytest.raises(HostedFineTuneError) as caught:
        write_openai_splits(tmp_path / "data", tmp_path / "out")
    message = str(caught.value)
    assert f"{tmp_path / 'data' / f'{split}.jsonl'}, line {2 if split == 'train' else 3}" in message
    if field:
        assert f"field '{field}'" in message
    assert words in message


def test_sft_and_preference_rows_do_not_mix(tmp_path):
    write_split(tmp_path / "data", "train", [chat_row(1), preference_row(2)])
    with pytest.raises(HostedFineTuneError, match=r"train\.jsonl, line 2.*separate datasets"):
        write_openai_splits(tmp_path / "data", tmp_path / "out")


# --- run_hosted_finetune against the fake service -------------------------------------------------------------------


def test_sft_run_end_to_end(tmp_path, fake, client):
    write_split(tmp_path / "data", "train", [chat_row(i) for i in range(12)])
    write_split(tmp_path / "data", "validation", [chat_row(i) for i in range(100, 103)])
    seen: list[dict[str, Any]] = []
    result = run_hosted_finetune(plan(epochs=2), tmp_path / "data", tmp_path / "run", client=client,
                                 poll_seconds=0.01, on_event=seen.append)

    uploads = list(fake.files.values())
    assert [(f["filename"], f["purpose"], f["method"], len(f["rows"])) for f in uploads] == [
        ("openai_train.jsonl", "fine-tune", "supervised", 12),
        ("openai_validation.jsonl", "fine-tune", "supervised", 3),
    ]
    assert fake.job_requests == [{
        "model": "gpt-4o-mini-2024-07-18", "training_file": "file-1", "validation_file": "file-2", "suffix": "tunewise",
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}}]
    # Events are read newest first in pages of 3, each poll paging back with `after` only as far as needed.
    event_calls = [r for r in fake.requests if r["path"].endswith("/events")]
    assert any("after" in r["query"] for r in event_calls)

    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert metrics == seen
    losses = [(m["step"], m["loss"], m["eval_loss"]) for m in metrics if m["step"] is not None]
    assert losses == STEPS
    assert metrics[0]["event"] == "Created fine-tuning job: ftjob-1"
    assert metrics[-1]["event"] == "The job has successfully completed"
    assert len({m["event"] for m in metrics}) == len(metrics) == len(fake.jobs["ftjob-1"]["events"])
    assert all(m["source"] == "openai" and m["learning_rate"] is None and m["memory_gb"] is None for m in metrics)
    assert [m["time"] for m in metrics] == sorted(m["time"] for m in metrics)
    assert metrics[0]["time"].startswith("2023-11-14T22:13:21")

    on_disk = json.loads((tmp_path / "run" / "hosted_job.json").read_text())
    assert on_disk == result
    assert result["status"] == "succeeded"
    assert result["fine_tuned_model"] == "ft:gpt-4o-mini-2024-07-18:org-test:tunewise:abc123"
    assert result["trained_tokens"] == 12345
    assert result["files"]["train"] == {"path": str(tmp_path / "run" / "openai_train.jsonl"), "id": "file-1"}


def test_dpo_data_runs_a_dpo_job(tmp_path, fake, client):
    write_split(tmp_path / "data", "train", [preference_row(i) for i in range(10)])
    result = run_hosted_finetune(plan(), tmp_path / "data", tmp_path / "run", client=client, poll_seconds=0.01)
    assert fake.files["file-1"]["method"] == "dpo"
    assert set(fake.files["file-1"]["rows"][0]) == {"input", "preferred_output", "non_preferred_output"}
    request = fake.job_requests[0]
    assert "validation_file" not in request
    assert request["method"] == {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": "auto"}}}
    assert result["method"] == "dpo" and result["status"] == "succeeded"


def test_a_failed_job_raises_with_the_services_message(tmp_path, fake, client):
    fake.outcome = "failed"
    write_split(tmp_path / "data", "train", [chat_row(i) for i in range(12)])
    with pytest.raises(HostedFineTuneError, match=re.escape(f"ftjob-1 failed: {FAILURE}")):
        run_hosted_finetune(plan(), tmp_path / "data", tmp_path / "run", client=client, poll_seconds=0.01)
    job = json.loads((tmp_path / "run" / "hosted_job.json").read_text())
    assert job["status"] == "failed" and job["error"]["message"] == FAILURE
    losses = [m["loss"] for m in read_jsonl(tmp_path / "run" / "metrics.jsonl") if m["loss"] is not None]
    assert losses == [2.31, 1.87]


def test_a_refused_job_request_raises_with_the_services_message(tmp_path, fake, client):
    write_split(tmp_path / "data", "train", [chat_row(i) for i in range(12)])
    with pytest.raises(HostedFineTuneError, match=r"Model gpt-9-nano is not available.*parameter model.*HTTP 400"):
        run_hosted_finetune(plan("gpt-9-nano"), tmp_path / "data", tmp_path / "run", client=client, poll_seconds=0.01)
    assert not (tmp_path / "run" / "hosted_job.json").exists()


def test_a_timeout_leaves_the_job_running_and_says_so(tmp_path, fake, client):
    write_split(tmp_path / "data", "train", [chat_row(i) for i in range(12)])
    with pytest.raises(HostedFineTuneError, match="ftjob-1 is still .* keeps running"):
        run_hosted_finetune(plan(), tmp_path / "data", tmp_path / "run", client=client, poll_seconds=0.01,
                            timeout_seconds=0)
    assert json.loads((tmp_path / "run" / "hosted_job.json").read_text())["status"] == "queued"


def test_missing_api_key_says_where_the_splits_are(tmp_path, monkeypatch, fake, client):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    write_split(tmp_path / "data", "train", [chat_row(i) for i in range(12)])
    with pytest.raises(HostedFineTuneError) as caught:
        run_hosted_finetune(plan(), tmp_path / "data", tmp_path / "run", poll_seconds=0.01)
    message = str(caught.value)
    assert "OPENAI_API_KEY" in message and str(tmp_path / "run" / "openai_train.jsonl") in message
    assert "by hand" in message
    assert (tmp_path / "run" / "openai_train.jsonl").is_file()
    assert fake.requests == []


@pytest.mark.parametrize("bad", [
    {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]},
    {"messages": [{"role": "user", "content": "Q"}, {"role": "bot", "content": "A"}]},
])
def test_a_bad_row_stops_the_run_before_any_upload(tmp_path, fake, client, bad):
    write_split(tmp_path / "data", "train", [chat_row(1), chat_row(2), bad])
    with pytest.raises(HostedFineTuneError, match=r"train\.jsonl, line 3, field 'messages\[1\]\.role'"):
        run_hosted_finetune(plan(), tmp_path / "data", tmp_path / "run", client=client, poll_seconds=0.01)
    assert fake.requests == []
    assert not (tmp_path / "run" / "openai_train.jsonl").exists()


def test_fractional_epochs_are_refused_before_any_upload(tmp_path, fake, client):
    write_split(tmp_path / "data", "train", [chat_row(i) for i in range(12)])
    with pytest.raises(HostedFineTuneError, match=r"training\.epochs = 1\.5.*whole epochs"):
        run_hosted_finetune(plan(epochs=1.5), tmp_path / "data", tmp_path / "run", client=client, poll_seconds=0.01)
    assert fake.requests == []


def test_tunewise_train_runs_a_hosted_plan(tmp_path, fake, monkeypatch, tunewise_home):
    """The same path `tunewise train` takes: preflight, the recipe, result.json in the run directory."""
    from executor.train.runner import train

    monkeypatch.setenv("OPENAI_API_KEY", "test")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("TUNEWISE_API_POLL_SECONDS", "0.01")
    write_split(tmp_path / "data", "train", [chat_row(i) for i in range(5)])
    result = train(plan(epochs=1).with_overrides({"data.path": str(tmp_path / "data")}), tmp_path / "run")
    assert result["technique"] == "api" and result["status"] == "succeeded"
    assert result["fine_tuned_model"].startswith("ft:gpt-4o-mini")
    assert json.loads((tmp_path / "run" / "result.json").read_text())["job_id"] == result["job_id"]
