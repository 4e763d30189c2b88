"""The run queue with real child processes and a tiny local model: succeed, fail, FIFO, cancel, kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from tiny import counting_chats, lora_plan

from executor.plan import TrainingPlan
from executor.runs.store import RunStore
from executor.runs.worker import Worker


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return counting_chats(tmp_path_factory.mktemp("runs-data"), 24)


def plan_yaml(model_dir: Path, data: Path | None = None, max_steps: int | None = None) -> str:
    """The tiny LoRA plan; `data` and `max_steps` are fields of the plan, as in every run."""
    return lora_plan(model_dir, {"data.path": str(data) if data else None, "training.max_steps": max_steps}).to_yaml()


def launch_output(done: subprocess.CompletedProcess) -> str:
    """What a failed launch said: the ranks' own lines (their tracebacks), then the launcher's last words."""
    text = done.stdout + done.stderr
    ranks = [line for line in text.splitlines() if line.startswith("[rank")]
    return "\n".join(ranks)[-5000:] + "\n...\n" + text[-1500:]


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


def submit(store, tiny_model_dir, data, tmp_path, max_steps=None, **kw) -> str:
    return store.submit(plan_yaml(tiny_model_dir, data, max_steps), runs_root=tmp_path / "runs", **kw)


def test_submit_then_succeed(store, tiny_model_dir, data, tmp_path):
    run_id = submit(store, tiny_model_dir, data, tmp_path, max_steps=4)
    Worker(store, heartbeat_seconds=0.2).run(once=True, timeout=300)
    run = store.get(run_id)
    assert run["status"] == "succeeded" and run["attempt"] == 1, run
    kinds = [e["kind"] for e in store.events(run_id)]
    assert kinds[0] == "status" and "progress" in kinds and "result" in kinds
    assert [e["data"]["status"] for e in store.events(run_id) if e["kind"] == "status"] == [
        "queued", "running", "succeeded"]
    assert "adapter" in store.artifacts(run_id) and Path(run["run_dir"], "result.json").exists()


def test_failing_plan_fails_with_its_reason(store, tiny_model_dir, tmp_path):
    run_id = store.submit(plan_yaml(tiny_model_dir, tmp_path / "missing"), runs_root=tmp_path / "runs")
    Worker(store, heartbeat_seconds=0.2).run(once=True, timeout=300)
    run = store.get(run_id)
    assert run["status"] == "failed" and "data.path" in run["error"] and run["attempt"] == 1


def test_one_slot_runs_in_order(store, tiny_model_dir, data, tmp_path):
    first = submit(store, tiny_model_dir, data, tmp_path, max_steps=2)
    second = submit(store, tiny_model_dir, data, tmp_path, max_steps=2)
    urgent = submit(store, tiny_model_dir, data, tmp_path, max_steps=2, priority=5)
    Worker(store, slots=1, heartbeat_seconds=0.2).run(once=True, timeout=300)
    runs = {r["id"]: r for r in store.list()}
    assert all(runs[r]["status"] == "succeeded" for r in (first, second, urgent))
    order = sorted(runs, key=lambda r: runs[r]["started_at"])
    assert order == [urgent, first, second]
    assert runs[first]["finished_at"] <= runs[second]["started_at"]


def test_cancel_while_running(store, tiny_model_dir, data, tmp_path):
    run_id = submit(store, tiny_model_dir, data, tmp_path, max_steps=100000)
    worker = Worker(store, heartbeat_seconds=0.2)
    thread = threading.Thread(target=worker.run, kwargs={"once": True, "timeout": 300})
    thread.start()
    deadline = time.time() + 120
    while not any(e["kind"] == "progress" for e in store.events(run_id)):
        assert time.time() < deadline, "the run never made progress"
        time.sleep(0.2)
    assert store.request_cancel(run_id) == "cancelling"
    thread.join(timeout=60)
    assert store.get(run_id)["status"] == "cancelled"
    assert store.request_cancel(run_id) == "cancelled"


def test_queued_runs_cancel_at_once(store, tiny_model_dir, data, tmp_path):
    run_id = submit(store, tiny_model_dir, data, tmp_path)
    assert store.request_cancel(run_id) == "cancelled" and store.get(run_id)["status"] == "cancelled"


@pytest.mark.slow
def test_kill_9_of_the_worker_resumes_to_the_same_step_count(store, tiny_model_dir, data, tmp_path):
    steps = 24
    run_id = submit(store, tiny_model_dir, data, tmp_path, max_steps=steps)
    worker = subprocess.Popen([sys.executable, "-m", "executor.runs.worker", "--once", "--store", str(store.path),
                               "--heartbeat", "0.2", "--orphan-after", "2"], start_new_session=True)
    run_dir = Path(store.get(run_id)["run_dir"])
    deadline = time.time() + 180
    while len(list((run_dir / "checkpoints").glob("checkpoint-*"))) < 2:
        assert time.time() < deadline and worker.poll() is None, "no checkpoint before the deadline"
        time.sleep(0.2)
    child = store.get(run_id)["pid"]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    for _ in range(100):  # the run process dies with its worker (PR_SET_PDEATHSIG)
        try:
            os.kill(child, 0)
            time.sleep(0.1)
        except ProcessLookupError:
            break
    else:
        pytest.fail("the run process outlived its worker")
    before = [e for e in store.events(run_id) if e["kind"] == "progress"]
    assert store.get(run_id)["status"] == "running"  # as the crash left it
    # The kill may land while a checkpoint is half written: the newest one is removed (a half-written one is
    # passed over the same way), so the run resumes from the one before and trains logged steps again (#17).
    newest = max((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    shutil.rmtree(newest)
    time.sleep(2.5)  # past orphan_after: the heartbeat is stale
    Worker(store, heartbeat_seconds=0.2, orphan_after=2).run(once=True, timeout=300)
    run = store.get(run_id)
    assert run["status"] == "succeeded" and run["attempt"] == 2, run
    events = store.events(run_id)
    assert [e for e in events if e["kind"] == "progress"][: len(before)] == before  # nothing recorded was lost
    assert any(e["kind"] == "status" and e["data"]["status"] == "orphaned" for e in events)
    result = next(e["data"] for e in events if e["kind"] == "result")
    assert result["steps"] == steps
    # Each step is logged once, the ones trained twice included.
    keys = [(e["data"]["step"], "eval_loss" in e["data"], "loss" in e["data"]) for e in events
            if e["kind"] == "progress"]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_runs_cli_submit_prints_the_id_last(tiny_model_dir, data, tmp_path, monkeypatch, tunewise_home):
    from typer.testing import CliRunner

    from assistant.cli import app

    plan = tmp_path / "plan.yaml"
    plan.write_text(plan_yaml(tiny_model_dir))
    result = CliRunner().invoke(app, ["runs", "submit", str(plan), "--data", str(data), "--max-steps", "2"])
    assert result.exit_code == 0
    run_id = result.stdout.strip().splitlines()[-1]
    stored = TrainingPlan.model_validate(yaml.safe_load(RunStore().get(run_id)["plan"]))
    assert (stored.data.path, stored.training.max_steps) == (str(data.resolve()), 2)  # the flags became plan fields
    shown = CliRunner().invoke(app, ["runs", "show", run_id, "--json"])
    assert json.loads(shown.stdout)["status"] == "queued"
    assert CliRunner().invoke(app, ["runs", "cancel", run_id]).stdout.strip() == "cancelled"
    assert "cancelled" in CliRunner().invoke(app, ["runs", "list"]).stdout


def test_follow_streams_events_until_the_run_ends(store, tiny_model_dir, data, tmp_path):
    run_id = submit(store, tiny_model_dir, data, tmp_path, max_steps=3)
    thread = threading.Thread(target=Worker(store, heartbeat_seconds=0.2).run, kwargs={"once": True, "timeout": 300})
    thread.start()
    seen = list(store.follow(run_id, interval=0.1, timeout=300))
    thread.join()
    assert [e["id"] for e in seen] == sorted({e["id"] for e in seen})  # in order, each once
    assert seen[-1]["kind"] == "status" and seen[-1]["data"]["status"] == "succeeded"
    assert any(e["kind"] == "progress" for e in seen)


@pytest.mark.slow
def test_two_processes_train_one_plan_with_gloo(tiny_model_dir, data, tmp_path, tunewise_home):
    """The multi-GPU launch path, on 2 CPU processes (DDP over gloo): one writer, the plan's step count."""

    from executor.train.distributed import free_port, launch_command

    plan = tmp_path / "plan.yaml"
    plan.write_text(plan_yaml(tiny_model_dir, data, max_steps=4))
    done = subprocess.run(launch_command(plan, tmp_path / "ddp", nproc=2, port=free_port()),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, launch_output(done)
    result = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert result["steps"] == 4
    logged = [json.loads(line)["step"] for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
              if json.loads(line).get("loss") is not None]
    assert logged == sorted(set(logged))  # written by one process only
    assert (tmp_path / "ddp" / "adapter" / "adapter_config.json").exists()


@pytest.mark.slow
def test_packed_path_under_ddp_matches_one_process(tiny_model_dir, tmp_path, tunewise_home):
    """The packed fast path on 2 CPU processes (DDP over gloo) against 1 process with the same rows per step:
    the same per-step losses, because each rank divides by the whole step's label tokens and the gradients
    are summed across ranks (rows of very different lengths, so a per-rank mean would show)."""
    from executor.train.distributed import free_port, launch_command

    data = tmp_path / "data"
    data.mkdir()
    rows = [{"messages": [{"role": "user", "content": f"Count to {i}"},
                          {"role": "assistant", "content": " ".join(str(k) for k in range(1 + (i * 7) % 23))}]}
            for i in range(40)]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:32]))
    (data / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[32:]))

    def run(nproc: int, per_device: int) -> tuple[dict, list[float], int]:
        plan = TrainingPlan.model_validate({
            "approach": "fine_tuning", "technique": "lora",
            "base_model": {"id": str(tiny_model_dir), "source": "local", "path": str(tiny_model_dir)},
            "training": {"method": "lora", "epochs": 1, "learning_rate": 5e-2, "per_device_batch_size": per_device,
                         "gradient_accumulation_steps": 1, "max_seq_length": 128, "packing": "on", "max_steps": 4,
                         "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
            "data": {"path": str(data)}, "hardware": {"device": "cpu"}})
        out = tmp_path / f"np{nproc}"
        out.mkdir()
        (out / "plan.yaml").write_text(plan.to_yaml())
        done = subprocess.run(launch_command(out / "plan.yaml", out / "run", nproc=nproc, port=free_port()),
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, launch_output(done)
        result = json.loads((out / "run" / "result.json").read_text())
        logged = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
        result["eval_losses"] = [m["eval_loss"] for m in logged if m.get("eval_loss") is not None]
        return result, [m["loss"] for m in logged if m.get("loss") is not None], logged[-1]["tokens_seen"]

    one, one_losses, one_tokens = run(1, 4)
    two, two_losses, two_tokens = run(2, 2)
    assert one["speed"]["packed"] and two["speed"]["packed"]
    assert one["steps"] == two["steps"] == 4 and len(one_losses) == len(two_losses) == 4
    assert one_losses[-1] < one_losses[0] - 0.05  # it learns, so later steps depend on the gradients
    assert two_losses == pytest.approx(one_losses, abs=1e-4), (one_losses, two_losses)
    assert two_tokens == one_tokens  # every rank's tokens counted, as one process counts the same rows
    # Evaluation runs through the packed step under DDP too; each rank averages its own share of the validation
    # rows, so the logged eval loss is close to one process's, not identical.
    assert len(two["eval_losses"]) == 4 and two["eval_losses"] == pytest.approx(one["eval_losses"], abs=0.01)
