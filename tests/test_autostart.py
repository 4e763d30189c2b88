"""The chat's worker autostart: one worker per store however many callers race, a dead worker is replaced, and the
started worker really runs a queued tiny-model plan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny import counting_chats, lora_plan

from executor.runs import autostart
from executor.runs.autostart import ensure_worker, lock_file, worker_pid

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path) -> Path:
    return tmp_path / "runs.sqlite"


@pytest.fixture
def cleanup():
    """Process groups started by a test, killed at its end whatever happened."""
    groups: list[int] = []
    yield groups
    for pid in groups:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_until(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_two_calls_start_one_worker_and_a_killed_one_is_replaced(store, cleanup):
    first = ensure_worker(store)
    assert first is not None
    cleanup.append(first)
    assert ensure_worker(store) is None  # the same process again
    assert worker_pid(store) == first and alive(first)
    assert lock_file(store).read_text().strip() == str(first)

    os.killpg(first, signal.SIGKILL)  # the kernel drops a dead process's flock: no stale lock to clean up
    wait_until(lambda: worker_pid(store) is None, what="the killed worker's lock to be released")
    second = ensure_worker(store)
    assert second is not None and second != first
    cleanup.append(second)
    assert worker_pid(store) == second and ensure_worker(store) is None


def test_racing_chat_processes_start_exactly_one_worker(store, cleanup):
    # Two processes call ensure_worker at the same instant, as two chat servers starting together would.
    code = ("import sys, time; from executor.runs.autostart import ensure_worker; "
            "time.sleep(max(0, float(sys.argv[2]) - time.time())); print(ensure_worker(sys.argv[1]), flush=True)")
    start_at = str(time.time() + 2.0)
    callers = [python(code, str(store), start_at) for _ in range(3)]
    answers = [caller.communicate(timeout=60)[0].strip() for caller in callers]
    started = [int(a) for a in answers if a != "None"]
    cleanup.extend(started)
    assert len(started) == 1 and answers.count("None") == 2, answers
    # The callers have exited: the worker one of them started holds the lock until it sees its chat gone, and
    # then, with nothing running, exits (test_the_chats_worker_exits_once_the_chat_has_gone).
    wait_until(lambda: not alive(started[0]), timeout=60, what="the callers' worker to exit after them")
    assert worker_pid(store) is None


def test_a_worker_started_by_hand_holds_the_lock_too(store, cleanup):
    code = ("import sys, time; from executor.runs.autostart import hold_worker_lock; "
            "print(hold_worker_lock(sys.argv[1]), flush=True); time.sleep(120)")
    manual = python(code, str(store))
    cleanup.append(manual.pid)
    assert manual.stdout.readline().strip() == "True"
    assert ensure_worker(store) is None and worker_pid(store) == manual.pid

    another = python(code, str(store))  # a second hand-started worker runs, but does not own the lock
    cleanup.append(another.pid)
    assert another.stdout.readline().strip() == "False"
    assert worker_pid(store) == manual.pid

    os.killpg(manual.pid, signal.SIGKILL)
    manual.wait()
    wait_until(lambda: worker_pid(store) is None, what="the lock to be released")
    started = ensure_worker(store)
    assert started is not None
    cleanup.append(started)


def test_an_autostarted_worker_keeps_the_inherited_lock(store, cleanup):
    """What hold_worker_lock does in a worker that ensure_worker started: it must keep the lock it inherited
    (taking it again on a new descriptor would fail against itself) and not pass it to its run processes."""
    fd = autostart._open_lock(store)
    assert autostart._try_lock(fd)
    code = ("import json, os, sys, time; from executor.runs.autostart import hold_worker_lock, LOCK_FD_ENV; "
            "fd = int(os.environ[LOCK_FD_ENV]); held = hold_worker_lock(sys.argv[1]); "
            "print(json.dumps([held, LOCK_FD_ENV in os.environ, os.get_inheritable(fd)]), flush=True); "
            "time.sleep(120)")
    env = dict(os.environ, **{autostart.LOCK_FD_ENV: str(fd)})
    child = subprocess.Popen([sys.executable, "-c", code, str(store)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env=env, pass_fds=(fd,), start_new_session=True)
    cleanup.append(child.pid)
    os.close(fd)  # from here on only the child holds the lock
    assert json.loads(child.stdout.readline()) == [True, False, False]
    assert worker_pid(store) is not None and ensure_worker(store) is None
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    wait_until(lambda: worker_pid(store) is None, what="the lock to be released")


@pytest.mark.slow
def test_the_started_worker_runs_a_queued_plan(store, cleanup, tmp_path, smol_tokenizer):
    from executor.models.loader import tiny_llama
    from executor.runs.store import RunStore

    model_dir = tmp_path / "tiny-model"
    tiny_llama(smol_tokenizer).save_pretrained(model_dir)
    smol_tokenizer.save_pretrained(model_dir)
    data = counting_chats(tmp_path / "data", 16)
    plan = lora_plan(model_dir, {"data.path": str(data), "training.max_steps": 3}).to_yaml()

    runs = RunStore(store)
    run_id = runs.submit(plan, owner="alice", runs_root=tmp_path / "runs")
    pid = ensure_worker(store, extra_args=["--heartbeat", "0.2"])
    assert pid is not None
    cleanup.append(pid)
    wait_until(lambda: runs.get(run_id)["status"] in ("succeeded", "failed", "cancelled"), timeout=300,
               what="the queued run to finish")
    run = runs.get(run_id)
    log = (store.parent / "worker.log").read_text()
    assert run["status"] == "succeeded", (run, log[-2000:])
    assert run["worker"].endswith(f":{pid}")  # claimed by the worker ensure_worker started
    assert "adapter" in runs.artifacts(run_id)
    assert alive(pid) and worker_pid(store) == pid  # it keeps serving the queue


def test_the_chats_worker_exits_once_the_chat_has_gone(store, cleanup):
    """#18: stopping `make chat` left its worker running, idle, with ~280 MB. A worker the chat started finishes the
    runs it is running and then exits when the chat process has ended; one started by hand keeps serving."""
    chat = python("import sys; from executor.runs.autostart import ensure_worker; "
                  "print(ensure_worker(sys.argv[1], extra_args=['--heartbeat', '0.2']), flush=True); "
                  "import time; time.sleep(float(sys.argv[2]))", str(store), "3")
    pid = int(chat.stdout.readline())
    cleanup.append(pid)
    assert alive(pid)
    chat.wait(timeout=30)  # the chat stops
    wait_until(lambda: not alive(pid), timeout=60, what="the chat's worker to exit after the chat")
    assert worker_pid(store) is None


def test_a_winding_down_worker_takes_no_new_run(tmp_path):
    from executor.runs.store import RunStore
    from executor.runs.worker import Worker

    runs = RunStore(tmp_path / "runs.sqlite")
    queued = runs.submit("approach: prompting\n", runs_root=tmp_path / "runs")
    Worker(runs, heartbeat_seconds=0.01).run(until=lambda: True, timeout=5)  # returns at once: nothing running
    assert runs.get(queued)["status"] == "queued"  # left for the next worker
