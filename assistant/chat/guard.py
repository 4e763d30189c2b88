"""In front of every chat request (ASGI middleware): the client's address for the login throttle, and only the chat's
own origin, unless an admin lists others.

Chainlit answers cross-origin requests with credentials from any origin by default (`allow_origins = ["*"]`), and
its socket.io server checks no origin at all, so a page on another port of the same host could read a logged-in
user's threads. Browsers send `Origin` on cross-origin requests and on every websocket; a request whose origin is
neither the host it was sent to nor one of `[project] allow_origins` in `.chainlit/config.toml` gets 403.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from urllib.parse import urlsplit

client_address: ContextVar[str] = ContextVar("client_address", default="")


def same_origin(origin: str, host: str) -> bool:
    """`origin` (scheme://host[:port]) names the host the request was sent to (its Host header)."""
    parts = urlsplit(origin)
    return bool(parts.scheme in ("http", "https") and parts.netloc and parts.netloc.lower() == host.lower())


class RequestGuard:
    def __init__(self, app, allowed_origins: Iterable[str] = ()):
        self.app = app
        self.allowed = {o.rstrip("/") for o in allowed_origins}

    def _allowed(self, scope) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        origin = headers.get("origin")
        if origin is None or "*" in self.allowed:
            return True  # not sent by a browser across origins (same-origin GETs, curl, the tests' clients)
        return same_origin(origin, headers.get("host", "")) or origin.rstrip("/") in self.allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        client_address.set((scope.get("client") or ("",))[0])
        if self._allowed(scope):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect; closing before accepting answers the handshake with 403
            await send({"type": "websocket.close", "code": 1008})
            return None
        body = b'{"detail": "cross-origin request refused: add the origin to allow_origins in .chainlit/config.toml"}'
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return None
