"""The OpenAI-compatible HTTP API over an Engine: /v1/models, /v1/chat/completions, /v1/completions.

Responses and stream chunks have OpenAI's shapes, so the official client, LangChain's ChatOpenAI and the
assistant's OpenAI backend (OPENAI_BASE_URL) work against it. Streams are server-sent events ending with
`data: [DONE]`. Errors are OpenAI error bodies, {"error": {"message", "type", "param", "code"}}:
400 for a malformed request, one past the context window or past a limit of executor.serve.limits, 401 for a
missing or wrong API key (every path but /health needs it when a key is set), 404 for an unknown model or path,
413 for a body past max_body_bytes, 429 (with Retry-After) when the queued-token budget is full, 500 when
generation fails, 503 while shutting down.

A non-streaming request whose client hangs up is cancelled (its client is polled every
`disconnect_poll_seconds`); a stream is cancelled when its client stops reading.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from executor.serve.engine import (
    DEFAULT_MAX_TOKENS,
    Engine,
    GenerationRequest,
    QueueFull,
    RequestTooLarge,
    ShuttingDown,
)
from executor.serve.limits import ServeLimits


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.type, self.param, self.code, self.headers)


def error_response(status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}},
                        status_code=status, headers=headers)


# --- request bodies (unknown fields are ignored, as clients send many optional ones) ---------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("up to 4 non-empty stop sequences")
        return stops


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    # Read only to refuse them: silently answering free text to a tool call or a JSON schema would surface
    # later as a confusing parse error in the client.
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str]


# --- the app ---------------------------------------------------------------------------------------------
OPEN_PATHS = ("/health",)  # the only path a key-protected server answers without the key


def build_app(engine: Engine, api_key: str | None = None, limits: ServeLimits | None = None) -> FastAPI:
    """The FastAPI app serving `engine`; with `api_key`, every path but /health needs `Authorization: Bearer KEY`
    (the interactive /docs page cannot send it, so it is off; /openapi.json answers with the key)."""
    limits = limits or ServeLimits()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await engine.start()
        yield
        engine.close()
        await engine.stop()

    docs = None if api_key else "/docs"
    app = FastAPI(title="Tunewise OpenAI-compatible server", lifespan=lifespan, docs_url=docs,
                  redoc_url=None if api_key else "/redoc")
    app.state.engine = engine
    app.state.limits = limits
    _add_error_handlers(app, limits)
    # Plain ASGI middleware, not @app.middleware("http"): that one hides the client's disconnect from handlers.
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    if api_key:
        app.add_middleware(RequireKey, api_key=api_key)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": engine.model_id}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [_model_card(engine)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        _check_model(engine, model_id)
        return _model_card(engine)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, http: Request):
        _check_model(engine, body.model)
        _check_chat_options(body)
        _check_sequences(1, body.n, limits, "n")
        texts = [m.text() for m in body.messages]
        _check_prompt_bytes(sum(_utf8_size(t, "messages") for t in texts), limits, "messages")
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": text}
                    for m, text in zip(body.messages, texts, strict=True)]
        try:  # tokenizing is CPU work: off the event loop, which keeps answering others meanwhile
            prompt = await asyncio.to_thread(engine.chat_prompt, messages)
        except Exception as exc:  # a template that refuses the conversation (roles out of order, ...)
            raise APIError(400, f"messages: the model's chat template rejected them: {exc}", param="messages",
                           code="invalid_value") from None
        max_tokens = _max_tokens(engine, len(prompt), body.max_completion_tokens or body.max_tokens, "messages")
        requests = await _submit(engine, [_request(prompt, max_tokens, body) for _ in range(body.n)])
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(engine, _chat_stream(engine, ident, requests, len(prompt), include_usage), requests)
        results = await _results(engine, requests, http, limits)
        return {
            "id": ident, "object": "chat.completion", "created": int(time.time()), "model": engine.model_id,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": reason} for i, (text, reason, _) in enumerate(results)],
            "usage": _usage(len(prompt), sum(n for _, _, n in results)),
        }

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, http: Request):
        _check_model(engine, body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not prompts:
            raise APIError(400, "prompt: must not be an empty list", param="prompt", code="invalid_value")
        _check_sequences(len(prompts), body.n, limits, "prompt")
        for text in prompts:
            _check_prompt_bytes(_utf8_size(text, "prompt"), limits, "prompt")
        encoded = await asyncio.to_thread(lambda: [engine.text_prompt(p) for p in prompts])
        caps = [_max_tokens(engine, len(ids), body.max_tokens, "prompt", default=16) for ids in encoded]
        requests = await _submit(engine, [_request(ids, cap, body) for ids, cap in zip(encoded, caps, strict=True)
                                          for _ in range(body.n)])
        ident = f"cmpl-{uuid.uuid4().hex}"
        prompt_tokens = sum(len(ids) for ids in encoded) * body.n
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(engine, _completion_stream(engine, ident, requests, prompt_tokens, include_usage), requests)
        results = await _results(engine, requests, http, limits)
        return {
            "id": ident, "object": "text_completion", "created": int(time.time()), "model": engine.model_id,
            "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": reason}
                        for i, (text, reason, _) in enumerate(results)],
            "usage": _usage(prompt_tokens, sum(n for _, _, n in results)),
        }

    return app


def _add_error_handlers(app: FastAPI, limits: ServeLimits) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _validation_response(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 413:
            return _too_large(limits.max_body_bytes)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return error_response(exc.status_code, message, code=code)


class RequireKey:
    """Every path but OPEN_PATHS needs `Authorization: Bearer KEY` (compared in constant time)."""

    def __init__(self, app, api_key: str):
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            header = dict(scope["headers"]).get(b"authorization", b"")
            given = header[7:] if header[:7].lower() == b"bearer " else b""
            if not secrets.compare_digest(given, self.key):
                response = error_response(401, "Incorrect API key provided. Pass it as 'Authorization: Bearer KEY' "
                                          "(the key given to `tunewise serve --api-key` or TUNEWISE_API_KEY).",
                                          code="invalid_api_key")
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class BodyLimit:
    """Refuses a body past `max_bytes` before it is read whole: by its Content-Length, or (chunked) as it arrives."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            response = _too_large(self.max_bytes) if length.isdigit() else error_response(
                400, "Content-Length is not a number", code="invalid_header")
            return await response(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise StarletteHTTPException(413)  # FastAPI passes it on to the handler below as it is
            return message

        return await self.app(scope, counted, send)


def _too_large(max_bytes: int) -> JSONResponse:
    return error_response(413, f"the request body is larger than this server accepts ({max_bytes} bytes, "
                          "`tunewise serve --max-body-bytes`)", code="request_too_large")


_FIELD = re.compile(r"[a-z_]+")


def _validation_response(errors) -> JSONResponse:
    """An OpenAI error body for the first validation error: `param` names the field (dotted, with list indices),
    never a byte offset of broken JSON or a pydantic union-member tag like `list[str]`."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "malformed JSON")
        return error_response(400, f"the request body is not valid JSON: {reason}", code="invalid_json")
    parts = [p for p in first.get("loc", ())[1:] if isinstance(p, int) or _FIELD.fullmatch(str(p))]
    parts = [p for p in parts if p not in ("str", "int", "float", "bool", "list", "dict", "none")]
    param = ".".join(map(str, parts)) or None
    message = f"{param}: {first['msg']}" if param else f"invalid request body: {first['msg']}"
    return error_response(400, message, param=param, code="invalid_value" if param else "invalid_body")


def _check_chat_options(body: ChatCompletionRequest) -> None:
    if body.tools:
        raise APIError(400, "tools: this server does not do tool calling", param="tools",
                       code="unsupported_parameter")
    if body.response_format and body.response_format.get("type", "text") != "text":
        raise APIError(400, f"response_format: type {body.response_format.get('type')!r} (structured output) is "
                       "not supported by this server; only free text", param="response_format",
                       code="unsupported_parameter")


def _check_sequences(prompts: int, n: int, limits: ServeLimits, param: str) -> None:
    if prompts * n > limits.max_sequences:
        raise APIError(400, f"{param}: {prompts} prompt(s) x n={n} asks for {prompts * n} completions; this server "
                       f"generates at most {limits.max_sequences} per request (`tunewise serve --max-sequences`)",
                       param=param, code="too_many_sequences")


def _utf8_size(text: str, param: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:  # JSON may carry a lone surrogate (\ud800), which no tokenizer can take
        raise APIError(400, f"{param}: not valid Unicode text (a lone surrogate escape)", param=param,
                       code="invalid_value") from None


def _check_prompt_bytes(size: int, limits: ServeLimits, param: str) -> None:
    if size > limits.max_prompt_bytes:
        raise APIError(400, f"{param}: {size} bytes of prompt text; this server takes at most "
                       f"{limits.max_prompt_bytes} per prompt (`tunewise serve --max-prompt-bytes`)",
                       param=param, code="prompt_too_large")


async def _submit(engine: Engine, requests: list[GenerationRequest]) -> list[GenerationRequest]:
    try:
        return await engine.submit_all(requests)
    except QueueFull as exc:
        raise APIError(429, f"the server is busy: {exc}; retry after {exc.retry_after} s",
                       type="rate_limit_error", code="queue_full",
                       headers={"Retry-After": str(exc.retry_after)}) from None
    except RequestTooLarge as exc:
        raise APIError(400, str(exc), code="request_too_large") from None
    except ShuttingDown as exc:
        raise APIError(503, str(exc), type="server_error", code="shutting_down") from None


async def _results(engine: Engine, requests: list[GenerationRequest], http: Request,
                   limits: ServeLimits) -> list[tuple[str, str, int]]:
    """Every request's (text, finish reason, tokens); a client that hangs up meanwhile cancels them all."""
    gathered = asyncio.ensure_future(asyncio.gather(*[_collect(r) for r in requests]))
    try:
        while True:
            done, _ = await asyncio.wait({gathered}, timeout=limits.disconnect_poll_seconds)
            if done:
                return gathered.result()
            if await http.is_disconnected():
                raise APIError(499, "the client closed the request", code="client_closed_request")
    finally:
        gathered.cancel()
        engine.cancel(requests)  # no-op for finished requests; frees the batch and the token budget otherwise


def _model_card(engine: Engine) -> dict[str, Any]:
    return {"id": engine.model_id, "object": "model", "created": 0, "owned_by": "tunewise",
            "context_length": engine.context_length}


def _check_model(engine: Engine, name: str) -> None:
    if name != engine.model_id:
        raise APIError(404, f"The model `{name}` does not exist. This server serves `{engine.model_id}` "
                       "(GET /v1/models).", param="model", code="model_not_found")


def _max_tokens(engine: Engine, prompt_tokens: int, asked: int | None, param: str,
                default: int = DEFAULT_MAX_TOKENS) -> int:
    room = engine.context_length - prompt_tokens
    if asked is not None and prompt_tokens + asked > engine.context_length or room <= 0:
        completion = asked if asked is not None else 0
        raise APIError(400, f"This model's maximum context length is {engine.context_length} tokens. However, you "
                       f"requested {prompt_tokens + completion} tokens ({prompt_tokens} in the {param}, {completion} "
                       "in the completion). Please reduce the length of the messages or completion.",
                       param=param, code="context_length_exceeded")
    return asked if asked is not None else min(default, room)


def _request(prompt: list[int], max_tokens: int, body: _Sampling) -> GenerationRequest:
    return GenerationRequest(prompt_ids=prompt, max_tokens=max_tokens, temperature=body.temperature,
                             top_p=body.top_p, stop=list(body.stop or []))


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _collect(request: GenerationRequest) -> tuple[str, str, int]:
    parts = []
    while True:
        event = await request.events.get()
        if event[0] == "text":
            parts.append(event[1])
        elif event[0] == "done":
            return "".join(parts), event[1], event[2]
        else:
            raise _event_error(event)


def _event_error(event: tuple) -> APIError:
    status = event[2] if len(event) > 2 else 500
    if status == 503:
        return APIError(503, event[1], type="server_error", code="shutting_down")
    return APIError(500, f"generation failed: {event[1]}", type="server_error")


def _sse(engine: Engine, chunks, requests: list[GenerationRequest]) -> StreamingResponse:
    async def body():
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk)}\n\n"
        except APIError as exc:
            error = {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
            yield f"data: {json.dumps({'error': error})}\n\n"
        finally:
            engine.cancel(requests)  # a client that hung up stops using the batch and the token budget
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(requests: list[GenerationRequest]):
    """(choice index, event) from every request as they come, until all are done."""
    pending = {asyncio.ensure_future(r.events.get()): i for i, r in enumerate(requests)}
    while pending:
        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for future in done:
            index = pending.pop(future)
            event = future.result()
            if event[0] == "error":
                for other in pending:
                    other.cancel()
                raise _event_error(event)
            yield index, event
            if event[0] == "text":
                pending[asyncio.ensure_future(requests[index].events.get())] = index


def _chunker(engine: Engine, ident: str, kind: str, include_usage: bool):
    """Builds the stream's chunks: one id, creation time and model for all; usage only when asked for."""
    created = int(time.time())

    def chunk(choices, usage=None):
        body = {"id": ident, "object": kind, "created": created, "model": engine.model_id, "choices": choices}
        if include_usage:
            body["usage"] = usage
        return body

    return chunk


async def _chat_stream(engine: Engine, ident: str, requests, prompt_tokens: int, include_usage: bool):
    chunk = _chunker(engine, ident, "chat.completion.chunk", include_usage)
    yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                  "finish_reason": None} for i in range(len(requests))])
    completion = 0
    async for index, event in _events(requests):
        if event[0] == "text":
            yield chunk([{"index": index, "delta": {"content": event[1]}, "logprobs": None, "finish_reason": None}])
        else:
            completion += event[2]
            yield chunk([{"index": index, "delta": {}, "logprobs": None, "finish_reason": event[1]}])
    if include_usage:
        yield chunk([], _usage(prompt_tokens, completion))


async def _completion_stream(engine: Engine, ident: str, requests, prompt_tokens: int, include_usage: bool):
    chunk = _chunker(engine, ident, "text_completion", include_usage)
    completion = 0
    async for index, event in _events(requests):
        if event[0] == "text":
            yield chunk([{"index": index, "text": event[1], "logprobs": None, "finish_reason": None}])
        else:
            completion += event[2]
            yield chunk([{"index": index, "text": "", "logprobs": None, "finish_reason": event[1]}])
    if include_usage:
        yield chunk([], _usage(prompt_tokens, completion))
