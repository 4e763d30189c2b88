"""The generation engine behind the server: one model, requests batched as they arrive, tokens streamed.

Requests go into an asyncio queue. The batcher takes the first one, keeps taking more while they arrive
less than `batch_wait_ms` apart (up to `max_batch_size`, at most 10 waits in all), groups them by sampling
settings (one `generate` call runs one setting), and runs each group as one left-padded batch in a worker
thread, so the event loop keeps accepting requests while the model works; requests that arrive meanwhile
form the next batch.

Admission is bounded (executor.serve.limits): every admitted, unfinished sequence holds its prompt tokens plus
its max_tokens until it ends or is cancelled; `admit` refuses a request that would push the total past
`max_queued_tokens` (the HTTP layer answers 429 with Retry-After). `close` (server shutdown) cancels every open
request, so a running batch stops at its next step instead of generating for minutes.

Tokens reach each request through a stopping criterion, which `generate` calls after every step with
the whole batch: it hands each row its new token, decides per row whether the row is finished (end of
turn, its own max_tokens, a stop string, the client gone), and returns those flags, so a short request
in a batch finishes and answers without waiting for the longest one's tokens to be used.

Lazy imports: torch, transformers are imported inside the functions that use them, so importing this module (from
the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from executor.models.end_of_turn import stop_token_ids
from executor.serve.limits import DEFAULT_MAX_QUEUED_TOKENS, MAX_RETRY_AFTER_SECONDS

DEFAULT_MAX_TOKENS = 256


class QueueFull(Exception):
    """The queued-token budget cannot take this request now; `retry_after` is a whole number of seconds."""

    def __init__(self, queued: int, asked: int, limit: int, retry_after: int):
        super().__init__(f"the server has {queued} tokens of work queued; this request adds {asked}, past the "
                         f"limit of {limit}")
        self.retry_after = retry_after


class RequestTooLarge(Exception):
    """A request that could never be admitted: it alone holds more tokens than the whole queue may."""


class ShuttingDown(Exception):
    pass


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    # Filled in by the engine; read by the HTTP layer.
    events: asyncio.Queue | None = None
    loop: asyncio.AbstractEventLoop | None = None
    cancelled: bool = False
    finished: bool = False  # its last event is sent (set by the generating thread)
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def cost(self) -> int:
        """Tokens this sequence may occupy: its prompt plus every token it may generate."""
        return len(self.prompt_ids) + self.max_tokens

    @property
    def sampling_key(self) -> tuple[bool, float, float]:
        greedy = self.temperature <= 1e-5
        return (not greedy, 0.0 if greedy else self.temperature, 1.0 if greedy else self.top_p)


class _Row:
    """Decoding state of one request inside a batch: tokens, text sent so far, finish reason."""

    def __init__(self, request: GenerationRequest, tokenizer, eos_ids: set[int]):
        self.request = request
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.ids: list[int] = []
        self.sent = ""
        self.finish_reason: str | None = None

    def _emit(self, kind: str, *payload) -> None:
        request = self.request
        request.loop.call_soon_threadsafe(request.events.put_nowait, (kind, *payload))

    def add(self, token: int) -> None:
        if self.finish_reason is not None:
            return
        if self.request.cancelled:
            self.finish_reason = "cancelled"
            return
        if token in self.eos_ids:
            # Flush what was held back as a possible stop-string start: the model ended its turn instead.
            self._send(self.tokenizer.decode(self.ids, skip_special_tokens=True))
            self._finish("stop")
            return
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        for stop in self.request.stop:
            at = text.find(stop)
            if at != -1:
                self._send(text[:at])
                self._finish("stop")
                return
        if len(self.ids) >= self.request.max_tokens:
            self._send(text)
            self._finish("length")
            return
        self._send(text[: self._safe_length(text)])

    def _safe_length(self, text: str) -> int:
        """How much of the text can go out now: not a half-decoded character, not the start of a stop string."""
        limit = len(text) - (1 if text.endswith("\ufffd") else 0)  # a character split across tokens
        head, hold = text[:limit], 0
        for stop in self.request.stop:
            for size in range(min(len(stop) - 1, len(head)), 0, -1):
                if head.endswith(stop[:size]):
                    hold = max(hold, size)
                    break
        return max(limit - hold, len(self.sent))

    def _send(self, text: str) -> None:
        if len(text) > len(self.sent):
            self._emit("text", text[len(self.sent):])
            self.sent = text

    def _finish(self, reason: str) -> None:
        self.finish_reason = reason
        self.request.finished = True
        self._emit("done", reason, len(self.ids))

    def close(self, reason: str = "length") -> None:
        """generate ended (its max_new_tokens reached) with this row still open."""
        if self.finish_reason is None:
            self._send(self.tokenizer.decode(self.ids, skip_special_tokens=True))
            self._finish(reason)


class _Dispatch:
    """A StoppingCriteria: routes each step's new tokens to their rows; returns which rows are finished."""

    def __init__(self, rows: list[_Row], prompt_length: int):
        self.rows = rows
        self.seen = prompt_length

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        for step in range(self.seen, input_ids.shape[1]):
            for row, token in zip(self.rows, input_ids[:, step].tolist(), strict=True):
                row.add(token)
        self.seen = input_ids.shape[1]
        return torch.tensor([row.finish_reason is not None for row in self.rows], device=input_ids.device)


@dataclass
class EngineStats:
    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    generated_tokens: int = 0
    generate_seconds: float = 0.0
    cancelled: int = 0


class Engine:
    """One loaded model; `submit` a request and read its events (("text", delta) ... ("done", reason, n))."""

    def __init__(self, model, tokenizer, model_id: str, *, max_batch_size: int = 32, batch_wait_ms: float = 5.0,
                 context_length: int | None = None, max_queued_tokens: int = DEFAULT_MAX_QUEUED_TOKENS):
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.max_batch_size = max(1, max_batch_size)
        self.batch_wait = batch_wait_ms / 1000
        self.context_length = context_length or _context_length(model)
        # The chat template's end of turn first, then every eos the tokenizer and the model name.
        self.eos_ids = set(stop_token_ids(tokenizer, model))
        self.stats = EngineStats()
        self.max_queued_tokens = max_queued_tokens
        # Admitted, unfinished requests and the tokens they hold. Touched only from the event loop's thread.
        self._open: dict[int, GenerationRequest] = {}
        self.queued_tokens = 0
        self.closing = False
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._lock = threading.Lock()  # one generate at a time on the one model
        tokenizer.padding_side = "left"  # decoder-only batches pad on the left so every row ends at the same step

    # --- prompts -------------------------------------------------------------------------------------
    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            return self.tokenizer(text, add_special_tokens=True)["input_ids"]
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def text_prompt(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if not ids:  # an empty prompt starts a new document, as OpenAI's does; generate needs one token to go on
            start = self.tokenizer.bos_token_id
            ids = [start if start is not None else self.tokenizer.eos_token_id]
        return ids

    # --- the batcher ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(), name="tunewise-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def submit(self, request: GenerationRequest) -> GenerationRequest:
        return (await self.submit_all([request]))[0]

    async def submit_all(self, requests: list[GenerationRequest]) -> list[GenerationRequest]:
        """Admit the requests together (all or none: one HTTP request's sequences) and queue them."""
        if self._queue is None:
            await self.start()
        self.admit(requests)
        loop = asyncio.get_running_loop()
        for request in requests:
            request.loop = loop
            request.events = asyncio.Queue()
            self._open[id(request)] = request
            self.queued_tokens += request.cost
            self._queue.put_nowait(request)
        return requests

    def admit(self, requests: list[GenerationRequest]) -> None:
        """Raise unless the queued-token budget takes these requests now."""
        if self.closing:
            raise ShuttingDown("the server is shutting down")
        asked = sum(r.cost for r in requests)
        if asked > self.max_queued_tokens:
            raise RequestTooLarge(f"this request needs up to {asked} tokens (prompts plus max_tokens, times n), "
                                  f"more than the server queues at once ({self.max_queued_tokens}); send fewer "
                                  "prompts, a smaller n or a smaller max_tokens")
        if self.queued_tokens + asked > self.max_queued_tokens:
            raise QueueFull(self.queued_tokens, asked, self.max_queued_tokens, self.retry_after())

    def retry_after(self) -> int:
        """Seconds until the queued work is likely done, at the throughput measured so far (1 before any)."""
        rate = self.stats.generated_tokens / self.stats.generate_seconds if self.stats.generate_seconds else 0
        if rate <= 0:
            return 1
        pending = sum(r.max_tokens for r in self._open.values())
        return max(1, min(MAX_RETRY_AFTER_SECONDS, math.ceil(pending / rate)))

    def cancel(self, requests: list[GenerationRequest]) -> None:
        """The client is gone: its rows stop at the next step, its tokens are released now."""
        for request in requests:
            if id(request) in self._open:
                request.cancelled = True
                self.stats.cancelled += not request.finished
                self._release(request)

    def close(self, reason: str = "the server is shutting down") -> None:
        """Refuse new work and end every open request with an error event (server shutdown)."""
        self.closing = True
        for request in list(self._open.values()):
            request.cancelled = True
            request.events.put_nowait(("error", reason, 503))
            self._release(request)

    def _release(self, request: GenerationRequest) -> None:
        if self._open.pop(id(request), None) is not None:
            self.queued_tokens -= request.cost

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            # Collect until the arrivals pause for batch_wait (a burst of clients is parsed one request at a
            # time, so a fixed window after the first one splits it), but never hold the first past 10 windows.
            first = loop.time()
            while len(batch) < self.max_batch_size:
                remaining = min(self.batch_wait, first + 10 * self.batch_wait - loop.time())
                if remaining <= 0 and self._queue.empty():
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), max(remaining, 0)))
                except TimeoutError:
                    break
            groups: dict[tuple, list[GenerationRequest]] = defaultdict(list)
            for request in batch:
                if request.cancelled:
                    self._release(request)
                else:
                    groups[request.sampling_key].append(request)
            for group in groups.values():
                await self._generate_group(group)

    async def _generate_group(self, group: list[GenerationRequest]) -> None:
        try:
            if not all(r.cancelled for r in group):  # cancelled while an earlier group ran
                await asyncio.to_thread(self.generate_batch, group)
        except Exception as exc:  # the requests answer with the error; the server keeps serving
            for request in group:
                request.events.put_nowait(("error", str(exc), 500))
        finally:
            for request in group:
                self._release(request)

    def generate_batch(self, requests: list[GenerationRequest]) -> None:
        """One left-padded `generate` over requests that share sampling settings (runs in a worker thread)."""
        import torch
        from transformers import StoppingCriteriaList

        rows = [_Row(r, self.tokenizer, self.eos_ids) for r in requests]
        device = next(self.model.parameters()).device
        batch = self.tokenizer.pad({"input_ids": [r.prompt_ids for r in requests]}, padding=True,
                                   return_tensors="pt")
        prompt_length = batch["input_ids"].shape[1]
        do_sample, temperature, top_p = requests[0].sampling_key
        kwargs: dict[str, Any] = {"do_sample": do_sample}
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
        else:  # the model's generation_config may ask for sampling; greedy means greedy
            kwargs.update(temperature=None, top_p=None, top_k=None)
        started = time.perf_counter()
        with self._lock, torch.inference_mode():
            self.model.generate(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                max_new_tokens=max(r.max_tokens for r in requests), stopping_criteria=StoppingCriteriaList(
                    [_Dispatch(rows, prompt_length)]), pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=sorted(self.eos_ids), **kwargs)
        for row in rows:
            row.close()
        self.stats.generate_seconds += time.perf_counter() - started
        self.stats.batches += 1
        self.stats.requests += len(requests)
        self.stats.largest_batch = max(self.stats.largest_batch, len(requests))
        self.stats.generated_tokens += sum(len(row.ids) for row in rows)


def _context_length(model) -> int:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


