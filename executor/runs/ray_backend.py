"""Runs as Ray jobs: with TUNEWISE_RAY_ADDRESS set, the worker submits each claimed run to a Ray cluster.

The job's entrypoint is the same child process a local worker starts (`python -m executor.runs.child ID STORE`),
so training, evaluation and the event log are identical; Ray only decides where it runs and with which GPUs.
The run store stays the single record: the Ray job id is kept with the run, so a worker that restarts finds
the job again and watches it (a job outlives the worker that submitted it, unlike a local child).

TUNEWISE_RAY_ADDRESS is the cluster's job-submission address (the dashboard, e.g. http://head:8265), as for
`ray job submit`. The store file and the run directories must be on storage the cluster's nodes share, and
every node needs this project installed (TUNEWISE_RAY_PYTHON names its interpreter; default: this one).
TUNEWISE_RAY_NUM_GPUS overrides the GPUs each job asks for (0 for a CPU-only cluster).

Lazy imports: ray is imported inside the functions that use it, so importing this module (from the CLI, the chat
or a run process) stays cheap.
"""

from __future__ import annotations

import os
import shlex
import sys
import time

import yaml

# Passed to the job so it reads the same store, models and offline settings as the worker.
FORWARDED_ENV = ("TUNEWISE_HOME", "TUNEWISE_CPU_PROCESSES", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME",
                 "OPENAI_API_KEY", "OPENAI_BASE_URL", "PYTHONPATH")


class RayLauncher:
    name = "ray"

    def __init__(self, store, address: str, client=None):
        self.store = store
        self.address = address
        if client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                client = JobSubmissionClient(address)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RuntimeError(f"TUNEWISE_RAY_ADDRESS={address}: no Ray job server answers there ({exc}). "
                                   "Give the dashboard address of the head node, e.g. http://head:8265") from exc
        self.client = client

    def _gpus(self, run: dict) -> float:
        override = os.environ.get("TUNEWISE_RAY_NUM_GPUS")
        if override is not None:
            return float(override)
        hardware = (yaml.safe_load(run["plan"]) or {}).get("hardware") or {}
        return 0.0 if hardware.get("device") == "cpu" else float(run["gpus"])

    def start(self, run: dict, env: dict[str, str]) -> str:
        python = os.environ.get("TUNEWISE_RAY_PYTHON", sys.executable)
        entrypoint = " ".join(shlex.quote(p) for p in (python, "-m", "executor.runs.child", run["id"],
                                                       str(self.store.path)))
        forwarded = {k: env[k] for k in FORWARDED_ENV if k in env}
        gpus = self._gpus(run)
        job_id = self.client.submit_job(
            entrypoint=entrypoint, submission_id=f"tunewise-{run['id']}-{run['attempt']}",
            runtime_env={"env_vars": forwarded}, entrypoint_num_cpus=1, entrypoint_num_gpus=gpus or None,
            metadata={"tunewise_run": run["id"], "owner": run.get("owner") or ""})
        self.store.set_external_id(run["id"], job_id)
        self.store.add_event(run["id"], "message", {"text": f"submitted as Ray job {job_id} to {self.address}"
                                                            + (f" asking for {gpus:g} GPU(s)" if gpus else "")})
        self.store.heartbeat(run["id"])
        return job_id

    def poll(self, job_id: str) -> int | None:
        from ray.job_submission import JobStatus

        status = self.client.get_job_status(job_id)
        if status in (JobStatus.PENDING, JobStatus.RUNNING):
            return None
        if status == JobStatus.SUCCEEDED:
            return 0
        return -15 if status == JobStatus.STOPPED else -1  # stopped reads like SIGTERM, failed like a crash

    def stop(self, job_id: str, wait: float = 30.0) -> None:
        from ray.job_submission import JobStatus

        self.client.stop_job(job_id)
        deadline = time.monotonic() + wait
        while self.client.get_job_status(job_id) in (JobStatus.PENDING, JobStatus.RUNNING):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Ray job {job_id} still running {wait:.0f} s after stop was asked")
            time.sleep(0.5)

    def adopt(self, run: dict) -> str | None:
        """The job of a run whose worker died, if Ray still knows it (running or finished)."""
        try:
            self.client.get_job_status(run["external_id"])
        except RuntimeError:  # the cluster forgot it (restarted): the run is an ordinary orphan
            return None
        return run["external_id"]
