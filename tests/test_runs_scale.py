"""The run queue beyond one process: launch decisions, GPUs per run, multi-process runs, self-evaluation, and
stores written by an older Tunewise."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from test_runs import data, plan_yaml  # noqa: F401 - module fixture reused

from executor.plan import TrainingPlan
from executor.runs.store import RunStore
from executor.runs.worker import Worker
from executor.train.distributed import choose_launch


def plan(technique: str = "lora", params_b: float | None = 1.0, gpu_count: int = 2, estimate: float | None = None):
    spec = {"method": technique}
    if technique in ("lora", "qlora"):
        spec["lora"] = {"r": 8}
    if technique == "qlora":
        spec["quantization"] = {"bits": 4}
    return TrainingPlan.model_validate({
        "approach": "fine_tuning", "technique": technique, "training": spec,
        "base_model": {"id": "m", "source": "local", "path": "/m", "params_b": params_b},
        "hardware": {"gpu_count": gpu_count}, "estimates": {"gpu_memory_gb": estimate}})


def test_one_process_without_several_gpus():
    assert choose_launch(plan(gpu_count=1), gpus=8, gpu_memory_gb=80).mode == "single"
    launch = choose_launch(plan(gpu_count=4), gpus=0, gpu_memory_gb=None)
    assert (launch.nproc, launch.mode) == (1, "single") and "asks for 4" in launch.why


def test_ddp_when_the_model_fits_one_gpu_fsdp_when_it_does_not():
    small = choose_launch(plan("full", params_b=1.0, gpu_count=4), gpus=8, gpu_memory_gb=80)
    assert (small.nproc, small.mode) == (4, "ddp")  # 16 GB of state on an 80 GB GPU
    big = choose_launch(plan("full", params_b=8.0, gpu_count=8), gpus=8, gpu_memory_gb=80)
    assert (big.nproc, big.mode) == (8, "fsdp") and "128.0 GB" in big.why  # 8 B x 16 bytes
    lora_8b = choose_launch(plan("lora", params_b=8.0, gpu_count=2), gpus=2, gpu_memory_gb=80)
    assert lora_8b.mode == "ddp"  # frozen bf16 weights, 17.6 GB
    capped = choose_launch(plan("full", params_b=1.0, gpu_count=8), gpus=2, gpu_memory_gb=80)
    assert capped.nproc == 2


def test_the_advisors_estimate_wins_and_qlora_is_never_sharded():
    assert choose_launch(plan("lora", params_b=1.0, estimate=70.0), gpus=2, gpu_memory_gb=80).mode == "fsdp"
    assert choose_launch(plan("qlora", params_b=70.0), gpus=2, gpu_memory_gb=24).mode == "ddp"


def test_old_store_files_gain_the_new_columns(tmp_path):
    path = tmp_path / "runs.sqlite"
    with sqlite3.connect(path) as db:  # the first release's table
        db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, owner TEXT, plan TEXT NOT NULL, plan_path TEXT, "
                   "data_dir TEXT, max_steps INTEGER, status TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0, "
                   "created_at REAL NOT NULL, started_at REAL, finished_at REAL, attempt INTEGER NOT NULL DEFAULT 0,"
                   " max_attempts INTEGER NOT NULL DEFAULT 3, run_dir TEXT NOT NULL, error TEXT, worker TEXT, "
                   "pid INTEGER, heartbeat_at REAL, cancel_requested INTEGER NOT NULL DEFAULT 0)")
        db.execute("INSERT INTO runs (id, plan, status, created_at, run_dir) VALUES ('old', 'x: 1', 'succeeded', 1, "
                   "'/r')")
    store = RunStore(path)
    old = store.get("old")
    assert (old["gpus"], old["backend"]) == (1, None) and old["plan"] == "x: 1"
    assert store.list(status="succeeded")[0]["id"] == "old"


def test_an_older_stores_run_settings_move_into_its_plans(tmp_path, tiny_model_dir):  # noqa: F811
    """data_dir, max_steps, evaluate and eval_limit were columns beside the plan; opening the store folds them into
    each run's plan (which then loads as the run it was) and drops the columns."""
    path = tmp_path / "runs.sqlite"
    with sqlite3.connect(path) as db:  # the store as the release before #16 wrote it
        db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, owner TEXT, plan TEXT NOT NULL, plan_path TEXT, "
                   "data_dir TEXT, max_steps INTEGER, status TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0, "
                   "created_at REAL NOT NULL, started_at REAL, finished_at REAL, attempt INTEGER NOT NULL DEFAULT 0,"
                   " max_attempts INTEGER NOT NULL DEFAULT 3, run_dir TEXT NOT NULL, error TEXT, worker TEXT, "
                   "pid INTEGER, heartbeat_at REAL, cancel_requested INTEGER NOT NULL DEFAULT 0, gpus INTEGER NOT "
                   "NULL DEFAULT 1, evaluate INTEGER NOT NULL DEFAULT 0, eval_limit INTEGER, backend TEXT, "
                   "external_id TEXT)")
        db.execute("INSERT INTO runs (id, plan, data_dir, max_steps, evaluate, eval_limit, status, created_at, "
                   "run_dir) VALUES ('queued', ?, '/data/prepared', 7, 1, 20, 'queued', 1, '/r')",
                   (plan_yaml(tiny_model_dir),))
        db.execute("INSERT INTO runs (id, plan, status, created_at, run_dir) VALUES ('odd', 'not: [a plan', "
                   "'failed', 2, '/r')")
    store = RunStore(path)
    run = store.get("queued")
    assert not {"data_dir", "max_steps", "evaluate", "eval_limit"} & set(run)
    plan = TrainingPlan.model_validate(yaml.safe_load(run["plan"]))
    assert (plan.data.path, plan.training.max_steps) == ("/data/prepared", 7)
    assert (plan.evaluation.after_training, plan.evaluation.max_rows) == (True, 20)
    assert store.get("odd")["plan"] == "not: [a plan"  # text that is no plan stays as it was
    assert RunStore(path).get("queued")["plan"] == run["plan"]  # opening again changes nothing


class RecordingLauncher:
    """Stands in for the process launcher to observe the worker's GPU bookkeeping; runs 'finish' on demand."""

    name = "local"

    def __init__(self):
        self.started: dict[str, str] = {}
        self.exit: dict[str, int] = {}

    def start(self, run, env):
        self.started[run["id"]] = env["CUDA_VISIBLE_DEVICES"]
        return run["id"]

    def poll(self, handle):
        return self.exit.get(handle)

    def stop(self, handle):
        self.exit[handle] = -15


def submit_asking(store, gpus: int, tmp_path) -> str:
    plan_text = plan_yaml(Path("/m")).replace("gpu_count: 0", f"gpu_count: {gpus}")
    return store.submit(plan_text, runs_root=tmp_path / "runs")


def test_each_run_gets_its_gpus_and_the_head_of_the_queue_waits_for_them(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    small = submit_asking(store, 1, tmp_path)
    big = submit_asking(store, 4, tmp_path)  # capped at the worker's 3 GPUs
    later = submit_asking(store, 1, tmp_path)
    launcher = RecordingLauncher()
    worker = Worker(store, gpus=[0, 1, 2], slots=3, launcher=launcher, heartbeat_seconds=0)
    worker.tick()
    # `big` needs all 3 GPUs; 2 are free, so it waits, and `later` may not overtake it.
    assert launcher.started == {small: "0"}
    assert store.get(big)["status"] == store.get(later)["status"] == "queued"
    launcher.exit[small] = 0
    worker.tick()
    assert launcher.started[big] == "0,1,2" and later not in launcher.started
    assert store.get(small)["status"] == "succeeded"
    launcher.exit[big] = 0
    worker.tick()
    assert launcher.started[later] == "0"


@pytest.mark.slow
def test_a_plan_asking_for_two_devices_trains_in_two_processes(tiny_model_dir, data, tmp_path, monkeypatch):  # noqa: F811
    """On a CPU-only machine TUNEWISE_CPU_PROCESSES stands in for GPUs: the worker's child launches the
    accelerate DDP path (gloo), rank 0 alone reports progress and the result."""
    monkeypatch.setenv("TUNEWISE_CPU_PROCESSES", "2")
    store = RunStore(tmp_path / "runs.sqlite")
    plan_text = plan_yaml(tiny_model_dir, data, max_steps=4).replace("gpu_count: 0", "gpu_count: 2")
    run_id = store.submit(plan_text, runs_root=tmp_path / "runs")
    Worker(store, heartbeat_seconds=0.2).run(once=True, timeout=400)
    run = store.get(run_id)
    assert run["status"] == "succeeded", (run, store.events(run_id)[-3:])
    events = store.events(run_id)
    stage = next(e["data"] for e in events if e["kind"] == "stage")
    assert (stage["processes"], stage["mode"]) == (2, "ddp")
    steps = [e["data"]["step"] for e in events if e["kind"] == "progress" and "loss" in e["data"]]
    assert steps and steps == sorted(set(steps))  # one reporter, no duplicates
    assert [e["data"]["steps"] for e in events if e["kind"] == "result"] == [4]
    assert "adapter" in store.artifacts(run_id)


@pytest.mark.slow
def test_a_run_asked_to_evaluate_reports_before_vs_after(tiny_model_dir, tmp_path):  # noqa: F811
    folder = tmp_path / "data"
    folder.mkdir()
    for split, n in (("train", 16), ("test", 4)):
        rows = [{"messages": [{"role": "user", "content": f"Say the number {i}"},
                              {"role": "assistant", "content": f"The number is {i}."}]} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = RunStore(tmp_path / "runs.sqlite")
    plan = TrainingPlan.model_validate(yaml.safe_load(plan_yaml(tiny_model_dir, folder, max_steps=3)))
    plan = plan.with_overrides({"evaluation.after_training": True, "evaluation.max_rows": 3})
    run_id = store.submit(plan.to_yaml(), runs_root=tmp_path / "runs")
    Worker(store, heartbeat_seconds=0.2).run(once=True, timeout=400)
    assert store.get(run_id)["status"] == "succeeded"
    events = store.events(run_id)
    stages = [e["data"]["stage"] for e in events if e["kind"] == "stage"]
    assert stages == ["train", "evaluate"]
    evaluation = next(e["data"] for e in events if e["kind"] == "evaluation")
    assert evaluation["n"] == 3 and {"base", "tuned"} <= set(evaluation["systems"])
    report = json.loads(Path(store.artifacts(run_id)["report.json"]).read_text())
    assert report["n"] == 3 and report["headline_metric"] == evaluation["headline_metric"]
    assert {"report.md", "eval_comparison.png", "eval_examples.jsonl"} <= set(store.artifacts(run_id))


def _ranks_of(run_dir: Path) -> list[int]:
    """Pids of live processes training `run_dir` (the launcher and its ranks)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            state = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if "executor.runs.rank" in cmdline and str(run_dir) in cmdline and "zombie" not in state:
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_a_killed_run_process_takes_its_ranks_with_it(tiny_model_dir, data, tmp_path, monkeypatch):  # noqa: F811
    """kill -9 of a multi-process run's process (as when its worker dies): no rank keeps training the run that
    the next worker is about to resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    monkeypatch.setenv("TUNEWISE_CPU_PROCESSES", "2")
    store = RunStore(tmp_path / "runs.sqlite")
    plan_text = plan_yaml(tiny_model_dir, data, max_steps=100000).replace("gpu_count: 0", "gpu_count: 2")
    run_id = store.submit(plan_text, runs_root=tmp_path / "runs")
    run = store.claim("test", orphan_after=30)
    child = subprocess.Popen([sys.executable, "-m", "executor.runs.child", run_id, str(store.path)],
                             start_new_session=True)
    deadline = time.monotonic() + 240
    while not any(e["kind"] == "progress" for e in store.events(run_id)):
        assert child.poll() is None and time.monotonic() < deadline, store.events(run_id)[-3:]
        time.sleep(0.5)
    assert len(_ranks_of(Path(run["run_dir"]))) >= 2
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 60
    while _ranks_of(Path(run["run_dir"])):
        assert time.monotonic() < deadline, f"ranks still training: {_ranks_of(Path(run['run_dir']))}"
        time.sleep(0.5)
