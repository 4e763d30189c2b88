"""Issue #17, serve: bounded work per request and in the queue, abandoned requests cancelled, shutdown in seconds,
docs behind the key, clear errors for broken JSON. A tiny random model with the SmolLM2 tokenizer."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from executor.serve.app import build_app
from executor.serve.engine import GenerationRequest, QueueFull, RequestTooLarge, ShuttingDown
from executor.serve.limits import SHUTDOWN_GRACE_SECONDS, ServeLimits
from executor.serve.server import make_engine, start_in_thread

KEY = "k"
MODEL = "tiny"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return make_engine(str(tiny_model_dir), device="cpu", model_id=MODEL, batch_wait_ms=1)


def client_for(engine, limits: ServeLimits | None = None, api_key: str | None = KEY) -> TestClient:
    engine.closing = False  # a previous test's app closed it on its shutdown
    return TestClient(build_app(engine, api_key, limits))


def complete(client, **body):
    return client.post("/v1/completions", json={"model": MODEL, "max_tokens": 1, "temperature": 0, **body},
                       headers=AUTH)


def test_a_prompt_list_times_n_is_capped_before_any_tokenizing(engine, monkeypatch):
    tokenized = []
    monkeypatch.setattr(engine, "text_prompt", lambda text: tokenized.append(text) or [1, 2])
    with client_for(engine, ServeLimits(max_sequences=8)) as client:
        started = time.perf_counter()
        flood = complete(client, prompt=["hi"] * 20_000, n=16)
        assert time.perf_counter() - started < 2.0
        assert flood.status_code == 400
        assert flood.json()["error"]["code"] == "too_many_sequences"
        assert flood.json()["error"]["param"] == "prompt"
        assert "20000 prompt(s) x n=16 asks for 320000 completions" in flood.json()["error"]["message"]
        assert complete(client, prompt=["a", "b", "c"], n=3).status_code == 400  # 9 > 8
        chat = client.post("/v1/chat/completions", headers=AUTH, json={
            "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "n": 9})
        assert chat.status_code == 400 and chat.json()["error"]["param"] == "n"
        assert tokenized == []
        fits = complete(client, prompt=["a", "b"], n=4)  # exactly 8
        assert fits.status_code == 200 and len(fits.json()["choices"]) == 8
    assert engine.queued_tokens == 0


def test_prompt_bytes_are_counted_before_tokenizing(engine, monkeypatch):
    tokenized = []
    real = engine.text_prompt
    monkeypatch.setattr(engine, "text_prompt", lambda text: tokenized.append(text) or real(text))
    with client_for(engine, ServeLimits(max_prompt_bytes=1000)) as client:
        too_big = complete(client, prompt="é" * 501)  # 501 characters, 1002 bytes
        assert too_big.status_code == 400 and too_big.json()["error"]["code"] == "prompt_too_large"
        assert too_big.json()["error"]["message"] == ("prompt: 1002 bytes of prompt text; this server takes at most "
                                                      "1000 per prompt (`tunewise serve --max-prompt-bytes`)")
        assert tokenized == []
        assert complete(client, prompt="é" * 500).status_code == 200  # 1000 bytes: at the limit
        assert len(tokenized) == 1
        # A chat's messages count together.
        chat = client.post("/v1/chat/completions", headers=AUTH, json={"model": MODEL, "max_tokens": 1, "messages": [
            {"role": "system", "content": "x" * 600}, {"role": "user", "content": "y" * 401}]})
        assert chat.status_code == 400 and chat.json()["error"]["param"] == "messages"
        lone = client.post("/v1/completions", content=b'{"model": "tiny", "prompt": "\\ud800 broken"}',
                           headers={**AUTH, "Content-Type": "application/json"})
        assert lone.status_code == 400 and lone.json()["error"]["code"] == "invalid_value"


def test_an_empty_prompt_starts_a_new_document(engine):  # found by the fuzz suite: it was a 500
    with client_for(engine) as client:
        empty = complete(client, prompt="")
        assert empty.status_code == 200 and empty.json()["usage"]["prompt_tokens"] == 1


def test_a_body_past_the_limit_is_refused_with_413(engine):
    with client_for(engine, ServeLimits(max_body_bytes=10_000)) as client:
        big = client.post("/v1/completions", headers={**AUTH, "Content-Type": "application/json"},
                          content=b'{"model": "tiny", "prompt": "' + b"x" * 20_000 + b'"}')
        assert big.status_code == 413
        assert big.json()["error"] == {
            "message": "the request body is larger than this server accepts (10000 bytes, "
                       "`tunewise serve --max-body-bytes`)",
            "type": "invalid_request_error", "param": None, "code": "request_too_large"}

        def chunks():  # no Content-Length: counted as it arrives
            yield b'{"model": "tiny", "prompt": "'
            for _ in range(30):
                yield b"x" * 1000
            yield b'"}'

        chunked = client.post("/v1/completions", headers={**AUTH, "Content-Type": "application/json"},
                              content=chunks())
        assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large"


def request_of(cost: int, prompt: int = 10) -> GenerationRequest:
    return GenerationRequest(prompt_ids=[1] * prompt, max_tokens=cost - prompt)


def test_queued_tokens_are_bounded_and_released(tiny_model_dir):
    engine = make_engine(str(tiny_model_dir), device="cpu", model_id=MODEL, max_queued_tokens=100)

    async def scenario():
        engine._queue = asyncio.Queue()  # no batcher: what is admitted stays queued
        first = await engine.submit_all([request_of(30), request_of(30)])
        assert engine.queued_tokens == 60
        with pytest.raises(QueueFull) as full:
            await engine.submit_all([request_of(41)])
        assert full.value.retry_after == 1  # nothing generated yet: no throughput to estimate from
        engine.stats.generated_tokens, engine.stats.generate_seconds = 10, 1.0  # 10 tokens/s measured
        with pytest.raises(QueueFull) as full:
            await engine.submit_all([request_of(41)])
        assert full.value.retry_after == 4  # 40 completion tokens pending at 10 tokens/s
        with pytest.raises(RequestTooLarge):
            await engine.submit_all([request_of(101)])
        engine.cancel(first[:1])
        assert engine.queued_tokens == 30 and first[0].cancelled and engine.stats.cancelled == 1
        await engine.submit_all([request_of(70)])
        assert engine.queued_tokens == 100
        engine.close()
        assert engine.queued_tokens == 0 and first[1].events.get_nowait() == (
            "error", "the server is shutting down", 503)
        with pytest.raises(ShuttingDown):
            await engine.submit_all([request_of(1)])

    asyncio.run(scenario())


def test_a_full_queue_answers_429_with_retry_after(tiny_model_dir):
    engine = make_engine(str(tiny_model_dir), device="cpu", model_id=MODEL, max_queued_tokens=60, batch_wait_ms=1)
    release, generating = threading.Event(), threading.Event()
    real = engine.generate_batch

    def held(requests):  # a model that is busy until the test lets it go
        generating.set()
        release.wait(30)
        real(requests)

    engine.generate_batch = held
    with client_for(engine) as client:
        first = {}
        thread = threading.Thread(target=lambda: first.update(r=complete(client, prompt="one two", max_tokens=40)))
        thread.start()
        assert generating.wait(10)
        busy = complete(client, prompt="three four", max_tokens=40)
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
        assert busy.json()["error"]["type"] == "rate_limit_error" and busy.json()["error"]["code"] == "queue_full"
        too_large = complete(client, prompt="five", max_tokens=70)
        assert too_large.status_code == 400 and too_large.json()["error"]["code"] == "request_too_large"
        release.set()
        thread.join(30)
        assert first["r"].status_code == 200
        assert engine.queued_tokens == 0
        assert complete(client, prompt="three four", max_tokens=40).status_code == 200


@pytest.fixture
def live(tiny_model_dir):
    engine = make_engine(str(tiny_model_dir), device="cpu", model_id=MODEL, batch_wait_ms=1)
    engine.eos_ids = {engine.tokenizer.vocab_size + 7}  # the model never ends its turn: generation runs to max
    handle = start_in_thread(engine, api_key=KEY)
    yield handle
    handle.stop()


def long_body(max_tokens: int = 2000) -> dict:
    return {"model": MODEL, "prompt": "Once upon a time", "max_tokens": max_tokens, "temperature": 0}


def wait_for(condition, timeout: float) -> float:
    started = time.perf_counter()
    while not condition():
        assert time.perf_counter() - started < timeout, "condition not met in time"
        time.sleep(0.02)
    return time.perf_counter() - started


def test_a_dropped_request_stops_generating(live):
    engine = live.engine
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and hangs up after 1 s
        httpx.post(f"{live.base_url}/completions", json=long_body(), headers=AUTH, timeout=1.0)
    # Polled every 0.25 s: the server notices, cancels the request and frees the batch (within a second when the
    # machine is idle; 5 s leaves room for a loaded one, against the ~90 s the 2000 tokens take).
    wait_for(lambda: engine.stats.cancelled == 1 and engine.queued_tokens == 0, timeout=5.0)
    wait_for(lambda: engine.stats.batches == 1, timeout=5.0)
    assert engine.stats.generated_tokens < 1000, engine.stats.generated_tokens  # of 2000 asked for
    started = time.perf_counter()
    quick = httpx.post(f"{live.base_url}/completions", json=long_body(2), headers=AUTH, timeout=10)
    assert quick.status_code == 200 and time.perf_counter() - started < 5.0  # was 15-20 s (#17)


def test_a_dropped_stream_stops_generating(live):
    engine = live.engine
    with httpx.stream("POST", f"{live.base_url}/completions", json={**long_body(), "stream": True}, headers=AUTH,
                      timeout=10) as stream:
        next(stream.iter_lines())  # the first token arrived; then the client goes away
    wait_for(lambda: engine.stats.cancelled == 1 and engine.queued_tokens == 0, timeout=5.0)
    wait_for(lambda: engine.stats.batches == 1, timeout=5.0)
    assert engine.stats.generated_tokens < 1000, engine.stats.generated_tokens


def test_shutdown_ends_open_requests_within_seconds(tiny_model_dir):
    engine = make_engine(str(tiny_model_dir), device="cpu", model_id=MODEL, batch_wait_ms=1)
    engine.eos_ids = {engine.tokenizer.vocab_size + 7}
    handle = start_in_thread(engine, api_key=KEY)
    answers = []

    def ask():
        answers.append(httpx.post(f"{handle.base_url}/completions", json={**long_body(), "n": 4}, headers=AUTH,
                                  timeout=120))

    clients = [threading.Thread(target=ask) for _ in range(3)]
    for thread in clients:
        thread.start()
    wait_for(lambda: engine.stats.generated_tokens > 0 or len(engine._open) == 12, timeout=20)
    started = time.perf_counter()
    handle.stop(timeout=30)
    took = time.perf_counter() - started
    assert not handle._thread.is_alive() and took < SHUTDOWN_GRACE_SECONDS + 2, took
    for thread in clients:
        thread.join(10)
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert answers[0].json()["error"]["code"] == "shutting_down"
    assert engine.queued_tokens == 0


def test_docs_and_openapi_need_the_key(engine):
    with client_for(engine) as client:
        assert client.get("/docs").status_code == 401  # no key: nothing but /health answers
        assert client.get("/docs", headers=AUTH).status_code == 404  # the page cannot send a key: it is off
        assert client.get("/redoc", headers=AUTH).status_code == 404
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/openapi.json", headers=AUTH).json()["info"]["title"].startswith("Tunewise")
        assert client.get("/health").json() == {"status": "ok", "model": MODEL}
    with client_for(engine, api_key=None) as client:
        assert client.get("/docs").status_code == 200 and client.get("/openapi.json").status_code == 200


def test_malformed_json_names_no_byte_offset(engine):
    with client_for(engine) as client:
        broken = client.post("/v1/chat/completions", content=b'{"model": "tiny", "messages": [', headers={
            **AUTH, "Content-Type": "application/json"})
        error = broken.json()["error"]
        assert broken.status_code == 400 and error["param"] is None and error["code"] == "invalid_json"
        assert error["message"].startswith("the request body is not valid JSON: ")
        wrong = complete(client, prompt=[1, 2])
        assert wrong.json()["error"]["param"] == "prompt"
        nested = client.post("/v1/chat/completions", headers=AUTH, json={
            "model": MODEL, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": 5}]})
        assert nested.json()["error"]["param"] == "messages.1.content"
        not_object = client.post("/v1/completions", headers=AUTH, json=[1, 2])
        assert not_object.status_code == 400 and not_object.json()["error"]["param"] is None


# --- `tunewise recommend --extractor llm|auto` when the LLM endpoint fails (an OpenAI-compatible server that is
# not there, as when `tunewise serve` is down) -------------------------------------------------------------------
@pytest.fixture
def dead_endpoint(monkeypatch, tunewise_home):
    from executor.train.distributed import free_port

    monkeypatch.setenv("OPENAI_API_KEY", "some-key")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    monkeypatch.setenv("TUNEWISE_LLM_TIMEOUT", "5")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


def recommend(*args, input=None):
    from typer.testing import CliRunner

    from assistant.cli import app

    return CliRunner().invoke(app, ["recommend", *args, "--no-retrieval"], input=input)


TEXT = "We have 3,000 labeled support tickets to classify into 12 queues and one 24 GB GPU."


def test_recommend_auto_falls_back_to_the_local_extractor(dead_endpoint):
    import json

    fell_back = recommend(TEXT, "--extractor", "auto", "--json")
    assert fell_back.exit_code == 0, fell_back.output
    warning = fell_back.stderr.strip().splitlines()
    assert warning == ["warning: the LLM extractor failed (OpenAIConnectionError: Connection error.); using the "
                       "local extractor instead"]
    local = recommend(TEXT, "--extractor", "semantic", "--json")
    assert json.loads(fell_back.stdout)["approach"] == json.loads(local.stdout)["approach"]
    lines = recommend("--jsonl", "-", "--extractor", "auto", input='{"id": 1, "text": "a"}\n{"id": 2, "text": "b"}\n')
    assert lines.exit_code == 0 and lines.stderr.count("warning: the LLM extractor failed") == 1  # once, not per line


def test_recommend_llm_fails_with_one_line(dead_endpoint):
    failed = recommend(TEXT, "--extractor", "llm")
    assert failed.exit_code == 2 and isinstance(failed.exception, SystemExit)  # typer.Exit, not a traceback
    assert failed.stdout == ""
    assert failed.stderr == ("error: --extractor llm: the LLM call failed (OpenAIConnectionError: Connection error.); "
                             "use --extractor auto to fall back to the local extractor\n")


def test_the_serve_command_passes_its_limits(monkeypatch):
    from typer.testing import CliRunner

    from assistant.cli import app
    from executor.serve import server

    seen = {}

    class Loaded:
        model_id, context_length = "m", 64

    monkeypatch.setattr(server, "make_engine", lambda target, **kw: seen.update(engine=kw) or Loaded())
    monkeypatch.setattr(server, "serve", lambda engine, **kw: seen.update(serve=kw))
    result = CliRunner().invoke(app, ["serve", "some-model", "--max-sequences", "3", "--max-prompt-bytes", "100",
                                      "--max-body-bytes", "1000", "--max-queued-tokens", "500"])
    assert result.exit_code == 0, result.output
    assert seen["engine"]["max_queued_tokens"] == 500
    assert seen["serve"]["limits"] == ServeLimits(max_sequences=3, max_prompt_bytes=100, max_body_bytes=1000)
    refused = CliRunner().invoke(app, ["serve", "some-model", "--max-sequences", "0"])
    assert refused.exit_code == 2
