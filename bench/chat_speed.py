"""Chat speed: cold start of the Chainlit app to a served page, and the server-side time of an advisor turn.

Targets (issue #7): cold start <= 10 s; an advisor turn without an LLM <= 200 ms server-side.

    .venv/bin/python bench/chat_speed.py [--starts 3] [--rounds 3]
    .venv/bin/python bench/chat_speed.py --demo   # the default offline loop with the bundled SmolLM2 on CPU

Cold start: `chainlit run assistant/chat/app.py --headless` (what `make chat` runs after setup) in a fresh data
directory, polled over HTTP until the page is served. Turn: a typed message through Chainlit's own server path
(`socket.process_message` with a recording socket, the SQLite data layer on), after the advisor has loaded:
descriptions from the scenario suite, quick-reply answers, "what if" questions and `set` corrections.
Prints p50/p95 per kind and the ratio to its target (< 1.0 = within target), with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from bench.recommend_speed import percentile  # noqa: E402 - one percentile for all benchmarks
from executor.train.distributed import free_port  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TARGET_START_S = 10.0
TARGET_TURN_MS = 200.0


def cold_start() -> float:
    home = tempfile.mkdtemp(prefix="tunewise-chat-bench-")
    port = free_port()
    env = {**os.environ, "TUNEWISE_HOME": home, "TUNEWISE_USERS": "bench:bench-password"}
    started = time.perf_counter()
    process = subprocess.Popen([str(ROOT / ".venv/bin/chainlit"), "run", "assistant/chat/app.py", "--host",
                                "127.0.0.1", "--port", str(port), "--headless"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    if response.status == 200 and b"<html" in response.read(2000).lower():
                        return time.perf_counter() - started
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError("chainlit exited before serving") from None
                time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        from executor.runs.autostart import worker_pid

        pid = worker_pid(Path(home) / "runs.sqlite")  # the worker the app started for that data directory
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def turn_times(rounds: int) -> dict[str, list[float]]:
    os.environ["TUNEWISE_HOME"] = tempfile.mkdtemp(prefix="tunewise-chat-bench-")
    os.environ.setdefault("TUNEWISE_USERS", "bench:bench-password")
    from test_scenarios import SCENARIOS

    from assistant.quiet import quiet_libraries
    from assistant.recommend import Advisor

    quiet_libraries()
    import chainlit.config

    chainlit.config.FILES_DIRECTORY = Path(os.environ["TUNEWISE_HOME"]) / "files"
    chainlit.config.FILES_DIRECTORY.mkdir()
    from chainlit.session import WebsocketSession
    from chainlit.socket import process_message
    from chainlit.user import User
    from chainlit.user_session import user_sessions

    from assistant.chat import app

    advisor = Advisor()
    app.set_advisor(advisor)
    for text in [s[1] for s in SCENARIOS][:3]:
        advisor.recommend(text)  # warm-up: MiniLM, the index, every code path once

    async def emit(event, data):
        pass

    async def measure() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {"description": [], "answer": [], "what_if": [], "set": []}

        async def say(session, text: str, kind: str) -> None:
            payload = {"message": {"id": str(uuid.uuid4()), "threadId": session.thread_id, "name": "bench",
                                   "type": "user_message", "output": text, "createdAt": ""}, "fileReferences": None}
            t0 = time.perf_counter()
            await process_message(session, payload)
            times[kind].append((time.perf_counter() - t0) * 1000)

        for _ in range(rounds):
            for _, text, *_rest in SCENARIOS:
                if not text.strip():
                    continue
                session = WebsocketSession(id=str(uuid.uuid4()), socket_id=str(uuid.uuid4()), emit=emit,
                                           emit_call=None, user_env={}, client_type="webapp",
                                           user=User(identifier="bench"))
                await say(session, text, "description")
                conv = user_sessions[session.id]["_conversation"]
                questions = conv.recommendation().questions
                if questions:
                    option = questions[0].options[0]
                    from chainlit.context import init_ws_context

                    init_ws_context(session)
                    t0 = time.perf_counter()
                    conv.answer(questions[0].field, option["value"], option["label"])
                    times["answer"].append((time.perf_counter() - t0) * 1000)
                await say(session, "What if we only had a 12 GB GPU?", "what_if")
                await say(session, "set budget=low max_steps=20", "set")
                user_sessions.pop(session.id, None)
        return times

    return asyncio.run(measure())


def demo_loop(rows: int = 200) -> None:
    """What a user of the default offline set-up gets: the chat's default launch settings for a CPU (the bundled
    SmolLM2-135M, max_steps 30, eval_limit 20), a small Q&A dataset, the run queue's worker, then the report."""
    import json

    os.environ["TUNEWISE_HOME"] = tempfile.mkdtemp(prefix="tunewise-chat-demo-")
    from assistant.chat import data_upload, launch, results
    from assistant.chat.backends import make_backend
    from assistant.chat.conversation import Conversation
    from assistant.quiet import quiet_libraries
    from assistant.recommend import Advisor
    from executor.runs.store import RunStore
    from executor.runs.worker import Worker

    quiet_libraries()
    advisor = Advisor()
    conv = Conversation(advisor, make_backend("offline", advisor.knowledge))
    conv.handle_text("We want a model that answers customer questions about their orders in our house style. "
                     "We have 3,000 question and answer pairs and no GPU.")
    conv.recommend_now()
    settings = conv.settings()
    print("launch settings:", settings)
    data = Path(os.environ["TUNEWISE_HOME"]) / "orders.jsonl"
    data.write_text("".join(json.dumps({"question": f"Where is my order {1000 + i}?",
                                        "answer": f"Order {1000 + i} ships on day {i % 5 + 1}."}) + "\n"
                            for i in range(rows)))
    t0 = time.perf_counter()
    prepared = data_upload.prepare_upload(data, data.parent / "prepared", model=settings["base_model"])
    print(f"data prepared in {time.perf_counter() - t0:.1f} s: {prepared.report['splits']}")
    plan = launch.plan_with_settings(conv.recommendation().plan, settings, advisor.knowledge, prepared.out_dir)
    store = RunStore()
    run_id = launch.submit_run(store, plan, "demo")
    t0 = time.perf_counter()
    Worker(store, heartbeat_seconds=1).run(once=True, timeout=7200)
    print(f"run {store.get(run_id)['status']} in {time.perf_counter() - t0:.0f} s (training, then evaluation)")
    print(launch.view_from_store(store, run_id).markdown())
    found = results.RunResults.load(store.get(run_id)["run_dir"])
    print(results.training_markdown(found.metrics))
    if found.report:
        print(results.report_markdown(found.report))
    print(results.answer_question("Is it better than few-shot prompting?", found).text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=3, help="cold starts to time")
    parser.add_argument("--rounds", type=int, default=1, help="passes over the scenario texts")
    parser.add_argument("--demo", action="store_true", help="run the default CPU loop with SmolLM2 instead")
    args = parser.parse_args()
    if args.demo:
        demo_loop()
        return
    load = os.getloadavg()
    starts = [cold_start() for _ in range(args.starts)]
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} at start")
    print(f"cold start to served page  n={len(starts)}  " + "  ".join(f"{s:.2f} s" for s in starts)
          + f"  median={statistics.median(starts):.2f} s  target<={TARGET_START_S:.0f} s  "
            f"ratio={statistics.median(starts) / TARGET_START_S:.2f}")
    times = turn_times(args.rounds)
    for kind, values in times.items():
        if values:
            p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
            print(f"turn {kind:<12} n={len(values):>4}  p50={p50:7.1f} ms  p95={p95:7.1f} ms  "
                  f"target p50<={TARGET_TURN_MS:.0f} ms  ratio={p50 / TARGET_TURN_MS:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
