"""The bounds `tunewise serve` enforces before any work starts (README "Limits"); each is a server option.

A request's work is bounded by its sequences (prompts x n), each prompt's size in UTF-8 bytes (checked before
tokenizing: tokenizing 20 MB took 3 GB) and the request body's bytes (checked before parsing). The work of all
requests together is bounded by the queued tokens: what every admitted, unfinished sequence may occupy (its prompt
plus max_tokens). Past that, a request gets 429 with Retry-After instead of waiting behind minutes of work.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_SEQUENCES = 64                 # prompts x n in one request
DEFAULT_MAX_PROMPT_BYTES = 256 * 1024      # one prompt (a chat's messages together), UTF-8
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024   # the whole JSON body
DEFAULT_MAX_QUEUED_TOKENS = 262_144        # prompt + max_tokens of every admitted, unfinished sequence
MAX_RETRY_AFTER_SECONDS = 60
DISCONNECT_POLL_SECONDS = 0.25             # how often a non-streaming request checks that its client is there
SHUTDOWN_GRACE_SECONDS = 3                 # open requests get this long to finish after a SIGTERM


@dataclass(frozen=True)
class ServeLimits:
    max_sequences: int = DEFAULT_MAX_SEQUENCES
    max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    disconnect_poll_seconds: float = DISCONNECT_POLL_SECONDS
