"""Run the server: `serve` blocks (the CLI), `start_in_thread` returns a handle with the base URL (tests,
the chat playground, the benchmark).

Bound to 127.0.0.1 unless told otherwise: a model server on every interface of a laptop is a surprise.

Shutdown (SIGTERM, Ctrl-C, `ServerHandle.stop`) first closes the engine, so open requests end with a 503 and a
running batch stops at its next step; uvicorn then waits at most SHUTDOWN_GRACE_SECONDS for connections.
Before, it waited for every queued generation to finish (a SIGTERM took ~90 s under load).

Lazy imports: uvicorn and the project modules that pull them in are imported inside the functions that use them, so
importing this module (from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from executor.serve.app import build_app
from executor.serve.engine import Engine
from executor.serve.limits import DEFAULT_MAX_QUEUED_TOKENS, SHUTDOWN_GRACE_SECONDS, ServeLimits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001


@dataclass
class ServerHandle:
    base_url: str  # ends with /v1, as the OpenAI client's base_url expects
    engine: Engine
    _server: object
    _thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)


def make_engine(target: str, *, device: str = "auto", model_id: str | None = None, max_batch_size: int = 32,
                batch_wait_ms: float = 5.0, max_queued_tokens: int = DEFAULT_MAX_QUEUED_TOKENS) -> Engine:
    from executor.serve.loading import load_for_serving

    loaded = load_for_serving(target, device=device, model_id=model_id)
    return Engine(loaded.model, loaded.tokenizer, loaded.model_id, max_batch_size=max_batch_size,
                  batch_wait_ms=batch_wait_ms, max_queued_tokens=max_queued_tokens)


def _server(engine: Engine, api_key: str | None, host: str, port: int, limits: ServeLimits | None = None,
            grace_seconds: float = SHUTDOWN_GRACE_SECONDS):
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            # Before uvicorn waits for open connections: end their generations, or it waits for all of them.
            engine.close()
            await super().shutdown(sockets)

    config = uvicorn.Config(build_app(engine, api_key, limits), host=host, port=port, log_level="warning",
                            access_log=False, lifespan="on", timeout_graceful_shutdown=grace_seconds)
    return Server(config)


def start_in_thread(engine: Engine, *, host: str = DEFAULT_HOST, port: int = 0, api_key: str | None = None,
                    startup_timeout: float = 30.0, limits: ServeLimits | None = None) -> ServerHandle:
    """Serve `engine` from a background thread; port 0 picks a free port. Returns once it accepts requests."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    server = _server(engine, api_key, host, port, limits)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="tunewise-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server on {host}:{port} did not start within {startup_timeout:.0f} s")
        time.sleep(0.02)
    return ServerHandle(f"http://{host}:{port}/v1", engine, server, thread)


_running: dict[tuple[str, str], ServerHandle] = {}
_running_lock = threading.Lock()


def ensure_server(target: str, *, device: str = "auto", api_key: str | None = None) -> ServerHandle:
    """A server for `target` in this process, started on first use and reused after (the chat playground's
    entry point: one model load per model, however many conversations try it)."""
    key = (str(Path(target).resolve()) if Path(target).exists() else target, device)
    with _running_lock:
        handle = _running.get(key)
        if handle is None or not handle._thread.is_alive():
            handle = start_in_thread(make_engine(target, device=device), api_key=api_key)
            _running[key] = handle
        return handle


def serve(engine: Engine, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, api_key: str | None = None,
          limits: ServeLimits | None = None) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM)."""
    _server(engine, api_key, host, port, limits).run()
