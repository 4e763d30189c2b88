"""The OpenAI-compatible server over real HTTP with the official `openai` client and a tiny random model."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from executor.models.loader import tiny_llama
from executor.serve.server import make_engine, start_in_thread
from executor.train.distributed import free_port

KEY = "test-key"
MODEL = "tiny-chat"
QUESTIONS = [f"Question number {i}: what is {i} plus {i}?" for i in range(8)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, smol_tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_llama(smol_tokenizer, seed=1).save_pretrained(folder)
    smol_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server(model_dir):
    engine = make_engine(str(model_dir), device="cpu", model_id=MODEL, batch_wait_ms=20)
    handle = start_in_thread(engine, api_key=KEY)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)


def ask(client, content: str, **kwargs):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                          temperature=0, **kwargs)


def test_models_lists_the_served_model(client, server):
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert server.base_url.startswith("http://127.0.0.1:")


def test_chat_completion_and_its_stream_agree(client):
    full = ask(client, "Capital of Peru?", max_tokens=12)
    choice = full.choices[0]
    assert full.object == "chat.completion" and full.model == MODEL and choice.message.role == "assistant"
    assert choice.finish_reason in ("length", "stop") and full.usage.completion_tokens <= 12
    assert full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens
    stream = ask(client, "Capital of Peru?", max_tokens=12, stream=True, stream_options={"include_usage": True})
    deltas, finish, usage = [], None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            deltas.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert "".join(deltas) == choice.message.content and len(deltas) >= 3  # token by token, not one blob
    assert finish == choice.finish_reason and usage.completion_tokens == full.usage.completion_tokens


@pytest.mark.slow
def test_completions_with_several_prompts_and_a_stop_string(client):
    out = client.completions.create(model=MODEL, prompt=["The capital of Peru is", "Once upon a time"],
                                    max_tokens=10, temperature=0)
    assert out.object == "text_completion" and [c.index for c in out.choices] == [0, 1]
    assert all(c.finish_reason == "length" or c.finish_reason == "stop" for c in out.choices)
    text = out.choices[0].text
    assert len(text) > 3, text
    # Stop on a piece of what the model says anyway: the text ends just before it, reason "stop".
    stop = text[2:4]
    stopped = client.completions.create(model=MODEL, prompt="The capital of Peru is", max_tokens=10, temperature=0,
                                        stop=[stop])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].text == text[: text.index(stop)]
    streamed = client.completions.create(model=MODEL, prompt="The capital of Peru is", max_tokens=10,
                                         temperature=0, stop=[stop], stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == stopped.choices[0].text


@pytest.mark.slow
def test_concurrent_requests_are_batched_and_answer_as_they_would_alone(client, server):
    alone = [ask(client, q, max_tokens=8).choices[0].message.content for q in QUESTIONS]
    batches_before = server.engine.stats.batches
    together = openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)

    async def all_at_once():
        replies = await asyncio.gather(*[together.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": q}], temperature=0, max_tokens=8) for q in QUESTIONS])
        return [r.choices[0].message.content for r in replies]

    assert asyncio.run(all_at_once()) == alone  # left padding does not change greedy answers
    assert server.engine.stats.largest_batch > 1
    assert server.engine.stats.batches - batches_before < len(QUESTIONS)


def test_sampling_settings_are_honoured(client):
    replies = {ask(client, "Say something", max_tokens=6).choices[0].message.content for _ in range(2)}
    assert len(replies) == 1  # temperature 0 is greedy: deterministic
    sampled = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say something"}],
                                             temperature=1.5, max_tokens=6, n=3)
    assert len(sampled.choices) == 3 and [c.index for c in sampled.choices] == [0, 1, 2]


def test_bad_requests_get_openai_error_bodies(client, server):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert err.value.code == "model_not_found" and err.value.param == "model"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[])
    assert err.value.param == "messages" and err.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "wizard", "content": "hi"}])
    assert err.value.param == "messages.0.role"
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, "hi", max_tokens=server.engine.context_length)
    assert err.value.code == "context_length_exceeded" and "maximum context length" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt="word " * (server.engine.context_length + 5))
    assert err.value.code == "context_length_exceeded" and err.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, "hi", response_format={"type": "json_object"})
    assert err.value.param == "response_format" and err.value.code == "unsupported_parameter"
    with pytest.raises(openai.AuthenticationError) as err:
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()
    assert err.value.code == "invalid_api_key"
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    malformed = httpx.post(f"{server.base_url}/chat/completions", content=b"{not json", headers=headers)
    assert malformed.status_code == 400 and set(malformed.json()["error"]) == {"message", "type", "param", "code"}
    missing = httpx.get(f"{server.base_url}/nothing-here", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_ensure_server_starts_once_per_model(model_dir):
    from executor.serve.server import ensure_server

    first = ensure_server(str(model_dir), device="cpu")
    try:
        assert ensure_server(str(model_dir), device="cpu") is first
        client = openai.OpenAI(base_url=first.base_url, api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list().data] == [model_dir.name]  # the folder name is the model id
    finally:
        first.stop()


@pytest.mark.slow
def test_tunewise_serve_command(model_dir, tunewise_home):
    """The CLI contract: `tunewise serve MODEL --port P --api-key K`, bound to 127.0.0.1, OpenAI client works."""
    port = free_port()
    env = dict(os.environ, TUNEWISE_API_KEY="env-key", HF_HUB_OFFLINE="1")
    process = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve", str(model_dir), "--port", str(port),
                                "--name", "cli-model", "--device", "cpu"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.5)
        client = openai.OpenAI(base_url=base, api_key="env-key", max_retries=0)
        reply = client.chat.completions.create(model="cli-model", messages=[{"role": "user", "content": "hi"}],
                                               max_tokens=4, temperature=0)
        assert reply.model == "cli-model" and reply.usage.completion_tokens <= 4
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base, api_key="other", max_retries=0).models.list()
    finally:
        process.terminate()
        process.wait(timeout=30)


class _Inline:
    """Stands in for the event loop and queue: events are recorded as soon as the row emits them."""

    def __init__(self):
        self.events = []

    def call_soon_threadsafe(self, fn, *args):
        fn(*args)

    def put_nowait(self, event):
        self.events.append(event)


def _feed(tokenizer, text: str, stop: list[str], max_tokens: int = 100, end_with_eos: bool = False):
    from executor.serve.engine import GenerationRequest, _Row

    inline = _Inline()
    request = GenerationRequest(prompt_ids=[], max_tokens=max_tokens, stop=stop, events=inline, loop=inline)
    row = _Row(request, tokenizer, {tokenizer.eos_token_id})
    for token in tokenizer(text, add_special_tokens=False)["input_ids"] + (
            [tokenizer.eos_token_id] if end_with_eos else []):
        row.add(token)
    row.close()
    text_out = "".join(e[1] for e in inline.events if e[0] == "text")
    return text_out, [e for e in inline.events if e[0] == "done"]


def test_rows_cut_at_stop_strings_and_never_send_their_start(smol_tokenizer):
    text, done = _feed(smol_tokenizer, "The answer is Lima. END of story", stop=["END"])
    assert text == "The answer is Lima. " and done[0][1] == "stop"
    # A possible stop-string start is held back, then sent when the model ends its turn instead.
    text, done = _feed(smol_tokenizer, "Ends with E", stop=["EOF"], end_with_eos=True)
    assert text == "Ends with E" and done == [("done", "stop", 4)]
    text, done = _feed(smol_tokenizer, "one two three four five six", stop=[], max_tokens=3)
    assert text == "one two three" and done == [("done", "length", 3)]
    text, _ = _feed(smol_tokenizer, "naïve café ünïcode", stop=[])
    assert text == "naïve café ünïcode"  # characters split across byte-level tokens arrive whole
