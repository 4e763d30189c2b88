"""Start a worker when none is running: the chat calls `ensure_worker()` so an approved plan never sits in the
queue because nobody ran `tunewise worker`.

"A worker is alive" means "someone holds an exclusive flock on `<store>.worker.lock`". The kernel drops that
lock when its holder dies, however it dies (kill -9 included), so a crashed worker never leaves a stale lock
behind, and a pid file alone could not tell a live worker from a reused pid.

`ensure_worker` takes the lock, starts `python -m executor.runs.worker` detached (its own session, output to
`<store dir>/worker.log`) and hands the locked file descriptor to it: the lock is never free between the check
and the worker's start, so two chat processes calling at once start one worker, and the worker holds it for
its whole life without any code of its own. A worker started by hand takes the same lock with
`hold_worker_lock()` (one line in worker.main), so the chat does not start a second one next to it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from executor.paths import PROJECT_ROOT, data_dir

LOCK_FD_ENV = "TUNEWISE_WORKER_LOCK_FD"
_held: list[int] = []  # lock descriptors this process holds for its lifetime (closing one would drop the lock)
_started: list[subprocess.Popen] = []  # workers started here, polled so that dead ones do not stay zombies


def store_file(store_path: str | os.PathLike | None = None) -> Path:
    return Path(store_path) if store_path else data_dir() / "runs.sqlite"


def lock_file(store_path: str | os.PathLike | None = None) -> Path:
    store = store_file(store_path)
    return store.with_name(store.name + ".worker.lock")


def _open_lock(store_path) -> int:
    path = lock_file(store_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_pid(fd: int, pid: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{pid}\n".encode(), 0)


def worker_pid(store_path: str | os.PathLike | None = None) -> int | None:
    """The pid of the live worker holding the lock for this store, or None when no worker is running."""
    fd = _open_lock(store_path)
    try:
        if _try_lock(fd):
            return None  # nobody holds it; closing the descriptor releases our probe
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1  # alive, pid not written yet
    finally:
        os.close(fd)


def ensure_worker(store_path: str | os.PathLike | None = None, *, extra_args: list[str] | None = None) -> int | None:
    """Start a detached worker for the store unless one is alive. Returns the new worker's pid, or None when
    a worker was already running (or another process is starting one at this moment)."""
    for process in list(_started):
        if process.poll() is not None:
            _started.remove(process)
    fd = _open_lock(store_path)
    try:
        if not _try_lock(fd):
            return None
        store = store_file(store_path)
        # Private like the runs it logs (#17); handed to the child, closed below.
        log = os.fdopen(os.open(store.with_name("worker.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        # The chat's login secrets have no business in training processes (which run third-party code).
        env = {k: v for k, v in os.environ.items() if k not in ("CHAINLIT_AUTH_SECRET", "TUNEWISE_USERS")}
        env[LOCK_FD_ENV] = str(fd)
        # The package may not be installed (a bare checkout): run from the project root with it on the path.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "executor.runs.worker", "--store", str(store), "--with-parent",
                 str(os.getpid()), *(extra_args or [])],
                cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                # Its own session, so the chat's Ctrl-C does not kill a training run mid-step; with --with-parent
                # it finishes the runs it has started once the chat is gone, then exits (no idle worker left).
                pass_fds=(fd,), start_new_session=True)
        finally:
            log.close()
        _write_pid(fd, process.pid)
        _started.append(process)
        return process.pid
    finally:
        os.close(fd)  # the worker holds its inherited copy, and with it the lock


def hold_worker_lock(store_path: str | os.PathLike | None = None) -> bool:
    """Called once by a worker at start: hold this store's worker lock for the rest of the process's life.

    A worker started by `ensure_worker` already holds it through the inherited descriptor and keeps it. A worker
    started by hand takes it when it is free. Returns False when another worker holds it: this one still runs
    (a team may run several), but the chat will not count it."""
    inherited = os.environ.pop(LOCK_FD_ENV, None)  # not for this worker's run processes
    path = lock_file(store_path)
    if inherited and inherited.isdigit():
        fd = int(inherited)
        try:
            same_file = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same_file = False
        if same_file:
            os.set_inheritable(fd, False)  # the run processes must not keep the lock alive after the worker dies
            _held.append(fd)
            return True
    fd = _open_lock(store_path)
    if not _try_lock(fd):
        os.close(fd)
        return False
    _write_pid(fd, os.getpid())
    _held.append(fd)
    return True
