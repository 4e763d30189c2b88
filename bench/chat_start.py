"""`make chat` start-up (issue #18): seconds from starting the chat to the first HTTP 200 of its page.

Starts the chat the way `make chat` does (`chainlit run assistant/chat/app.py --host 127.0.0.1 --headless`), on a
free port, polls `GET /` every 50 ms until it answers 200, and stops the chat's process group. Target <= 5 s on
this 2-core machine. Each start is a new process; the median of `--runs` starts is compared with the target and the
worst is printed next to it. Two cases: a first start (a fresh data directory: the chat creates the admin account
and the auth secret, and its background advisor builds the guidance index while the page is being served), as a
new user's is; and a restart (a data directory whose index and exemplar cache `tunewise recommend` built before).

    .venv/bin/python bench/chat_start.py [--runs 3]

The load average is printed at the start and the end: a busy second core shows in every figure.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 5.0
GIVE_UP_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def page_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def one_start(home: str) -> float:
    """Seconds from starting the chat with data directory `home` to the first 200 of its page."""
    port = free_port()
    env = {**os.environ, "TUNEWISE_HOME": home, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}
    chainlit = str(Path(sys.executable).parent / "chainlit")
    command = [chainlit, "run", "assistant/chat/app.py", "--host", "127.0.0.1", "--port", str(port), "--headless"]
    log = open(Path(home) / "chat.log", "wb")  # noqa: SIM115 - closed below, after the process has gone
    start = time.perf_counter()
    chat = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while time.perf_counter() - start < GIVE_UP_S:
            if chat.poll() is not None:
                raise SystemExit(f"the chat exited ({chat.returncode}) before serving; log: {Path(home) / 'chat.log'}")
            if page_status(f"http://127.0.0.1:{port}/") == 200:
                return time.perf_counter() - start
            time.sleep(0.05)
        raise SystemExit(f"no 200 from the chat within {GIVE_UP_S:.0f} s; log: {Path(home) / 'chat.log'}")
    finally:
        os.killpg(chat.pid, signal.SIGTERM)  # the chat and the worker it started: one process group
        try:
            chat.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(chat.pid, signal.SIGKILL)
            chat.wait()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="chat starts")
    args = parser.parse_args()
    print(f"load average at start {load()}; {os.cpu_count()} CPUs")
    first = []
    for n in range(args.runs):
        first.append(one_start(tempfile.mkdtemp(prefix="tunewise-chat-start-")))
        print(f"first start {n + 1}: first 200 after {first[-1]:.2f} s", flush=True)
    home = tempfile.mkdtemp(prefix="tunewise-chat-restart-")
    env = {**os.environ, "TUNEWISE_HOME": home, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}
    subprocess.run([str(Path(sys.executable).parent / "tunewise"), "recommend", "a support bot for our bank"],
                   env=env, cwd=ROOT, capture_output=True, check=True)  # builds the index and the exemplar cache
    again = []
    for n in range(args.runs):
        again.append(one_start(home))
        print(f"restart {n + 1}: first 200 after {again[-1]:.2f} s", flush=True)
    for name, seconds in (("make chat, first start (fresh data dir)", first),
                          ("make chat, restart (index built)", again)):
        median = statistics.median(seconds)
        print(f"{name:40s} n={len(seconds):2d}  median={median:6.2f} s  worst={max(seconds):6.2f} s  "
              f"target<={TARGET_S:g} s  ratio={median / TARGET_S:.2f}  {'meets' if median <= TARGET_S else 'MISSES'}")
    print(f"load average at end {load()}")


if __name__ == "__main__":
    main()
