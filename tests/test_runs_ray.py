"""The Ray backend against a real local Ray head started here on the CPU: runs become Ray jobs, the run store
records their state, a restarted worker adopts a job instead of starting it twice, and cancel stops the job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from test_runs import data, plan_yaml  # noqa: F401 - module fixture reused

from executor.runs.store import RunStore
from executor.runs.worker import Worker, make_launcher
from executor.train.distributed import free_port

pytest.importorskip("ray.job_submission")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_address():
    """`ray start --head --block` in its own process group: stopping it stops the cluster it started."""
    temp = tempfile.mkdtemp(prefix="twray-", dir="/tmp")  # Ray's socket paths must stay short
    dashboard = free_port()
    ray = Path(sys.executable).with_name("ray")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--port", str(free_port()), "--num-cpus", "2",
         "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
         "--temp-dir", temp, "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(address + "/api/version", timeout=2).read()
            break
        except OSError:
            if head.poll() is not None or time.monotonic() > deadline:
                os.killpg(head.pid, signal.SIGKILL)
                pytest.fail("the local Ray head did not start")
            time.sleep(1)
    yield address
    # A graceful `ray stop` of the head takes ~30 s here; the cluster holds nothing the tests need any more, so
    # its process group gets a few seconds and is then killed.
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=3)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def ray_store(tmp_path, monkeypatch, ray_address) -> RunStore:
    monkeypatch.setenv("TUNEWISE_RAY_ADDRESS", ray_address)
    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path / "home"))
    return RunStore(tmp_path / "runs.sqlite")


def ray_worker(store, **kw) -> Worker:
    return Worker(store, gpus=[], slots=2, launcher=make_launcher(store), heartbeat_seconds=0.3, **kw)


def jobs_of(launcher, run_id: str) -> list:
    return [j for j in launcher.client.list_jobs() if (j.metadata or {}).get("tunewise_run") == run_id]


def test_a_run_becomes_a_ray_job_and_the_store_records_it(ray_store, tiny_model_dir, data, tmp_path):  # noqa: F811
    run_id = ray_store.submit(plan_yaml(tiny_model_dir, data, max_steps=4), runs_root=tmp_path / "runs")
    worker = ray_worker(ray_store)
    assert worker.launcher.name == "ray"
    worker.run(once=True, timeout=300)
    run = ray_store.get(run_id)
    assert run["status"] == "succeeded", ray_store.events(run_id)[-3:]
    assert run["backend"] == "ray" and run["external_id"] == f"tunewise-{run_id}-1"
    [job] = jobs_of(worker.launcher, run_id)
    assert job.status == "SUCCEEDED" and job.submission_id == run["external_id"]
    events = ray_store.events(run_id)
    assert any(e["kind"] == "progress" for e in events)  # written by the job itself into the same store
    assert [e["data"]["steps"] for e in events if e["kind"] == "result"] == [4]
    assert "adapter" in ray_store.artifacts(run_id)


def test_a_restarted_worker_adopts_the_job_instead_of_running_it_twice(ray_store, tiny_model_dir, data,  # noqa: F811
                                                                       tmp_path):
    run_id = ray_store.submit(plan_yaml(tiny_model_dir, data, max_steps=6), runs_root=tmp_path / "runs")
    first = ray_worker(ray_store, orphan_after=1.0)
    first.tick()  # submits the job, then this worker "dies": nobody heartbeats the run any more
    assert ray_store.get(run_id)["status"] == "running"
    time.sleep(1.5)
    second = ray_worker(ray_store, orphan_after=1.0)
    second.run(once=True, timeout=300)
    run = ray_store.get(run_id)
    assert run["status"] == "succeeded" and run["attempt"] == 1 and run["worker"] == second.name
    assert len(jobs_of(second.launcher, run_id)) == 1
    assert any(e["data"].get("adopted") for e in ray_store.events(run_id) if e["kind"] == "status")


def test_cancel_stops_the_ray_job(ray_store, tiny_model_dir, data, tmp_path):  # noqa: F811
    run_id = ray_store.submit(plan_yaml(tiny_model_dir, data, max_steps=2000), runs_root=tmp_path / "runs")
    worker = ray_worker(ray_store)
    deadline = time.monotonic() + 180
    while not any(e["kind"] == "progress" for e in ray_store.events(run_id)):
        assert time.monotonic() < deadline, ray_store.events(run_id)
        worker.tick()
        time.sleep(0.3)
    assert ray_store.request_cancel(run_id) == "cancelling"
    worker.tick()
    assert ray_store.get(run_id)["status"] == "cancelled"
    [job] = jobs_of(worker.launcher, run_id)
    assert job.status == "STOPPED"
