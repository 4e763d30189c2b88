"""Chat sessions that really end: revoked on logout, on `tunewise users remove` and on a password change, and
never longer-lived than `TUNEWISE_SESSION_HOURS` (default 24).

Chainlit's session is a signed JWT that stays valid until it expires, whatever happens to the account. Tunewise
issues and checks the tokens instead (`install()` puts `issue` and `check` where Chainlit's `create_jwt` and
`decode_jwt` were): every token carries an id and a precise issue time, and a check refuses a token whose id was
revoked (logout), a token issued before its account's last revocation (remove, password change), and a token of
an account that no longer exists. The record is a small SQLite file in the data directory (0600), shared by every
process that manages accounts, so `tunewise users remove` in a terminal ends the account's open chats.

Lazy imports: chainlit (seconds to import) is imported where a token is checked or Chainlit is patched:
`tunewise users`, which revokes sessions, needs only the record.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt as pyjwt

from executor.paths import data_dir

LIFETIME_ENV = "TUNEWISE_SESSION_HOURS"
DEFAULT_LIFETIME_HOURS = 24.0
AUTH_SECRET_ENV = "CHAINLIT_AUTH_SECRET"


class SessionEnded(pyjwt.InvalidTokenError):
    """A well-signed token that no longer opens a session; Chainlit answers it with 401 like any bad token."""


def lifetime_s() -> int:
    raw = os.environ.get(LIFETIME_ENV, "").strip()
    try:
        hours = float(raw) if raw else DEFAULT_LIFETIME_HOURS
    except ValueError:
        raise ValueError(f"{LIFETIME_ENV}={raw!r} is not a number of hours") from None
    if not 0 < hours <= 24 * 90:
        raise ValueError(f"{LIFETIME_ENV}={raw!r}: a session lasts more than 0 and at most 2160 hours (90 days)")
    return int(hours * 3600)


def sessions_file() -> Path:
    return data_dir() / "sessions.sqlite"


class SessionRecord:
    """Revoked token ids (kept until the token would have expired anyway) and, per account, the time before
    which every token is void."""

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time):
        self.path = Path(path) if path else sessions_file()
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # private from the first byte
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS revoked (jti TEXT PRIMARY KEY, expires REAL NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS void_before (user TEXT PRIMARY KEY, at REAL NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def revoke_token(self, jti: str, expires: float) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO revoked VALUES (?, ?)", (jti, expires))
            db.execute("DELETE FROM revoked WHERE expires < ?", (self.clock(),))  # expired tokens fail anyway

    def revoke_user(self, user: str) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO void_before VALUES (?, ?)", (user, self.clock()))

    def is_revoked(self, jti: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM revoked WHERE jti = ?", (jti,)).fetchone() is not None

    def void_before(self, user: str) -> float:
        with self._connect() as db:
            row = db.execute("SELECT at FROM void_before WHERE user = ?", (user,)).fetchone()
        return row[0] if row else 0.0


def _secret() -> str:
    secret = os.environ.get(AUTH_SECRET_ENV)
    if not secret:
        raise RuntimeError(f"{AUTH_SECRET_ENV} is not set (accounts.prepare_accounts sets it at start-up)")
    return secret


def issue(user, *, clock: Callable[[], float] = time.time, lifetime: int | None = None) -> str:
    """A session token for a Chainlit `User` (what Chainlit's `create_jwt` returns, plus an id and the precise
    issue time that revocation compares against)."""
    now = clock()
    payload: dict[str, Any] = {**user.to_dict(), "iat": int(now), "tw_iat": now, "jti": secrets.token_urlsafe(16),
                               "exp": datetime.fromtimestamp(now, UTC) + timedelta(seconds=lifetime or lifetime_s())}
    return pyjwt.encode(payload, _secret(), algorithm="HS256")


def claims(token: str) -> dict[str, Any]:
    """The token's verified claims (signature and expiry checked), or jwt.InvalidTokenError."""
    return pyjwt.decode(token, _secret(), algorithms=["HS256"], options={"verify_signature": True})


def check(token: str, exists: Callable[[str], bool], record: SessionRecord | None = None):
    """The Chainlit `User` of a token that still opens a session; SessionEnded (an InvalidTokenError) when it was
    revoked, predates its account's last revocation, or its account is gone (`exists(name)` is False)."""
    from chainlit.user import User  # chainlit takes seconds to import; `tunewise users` needs only the record

    found = claims(token)
    record = record or SessionRecord()
    identifier = found.get("identifier", "")
    if "jti" not in found or record.is_revoked(found["jti"]):
        raise SessionEnded("this session was ended (logged out)")
    if found.get("tw_iat", 0.0) <= record.void_before(identifier):
        raise SessionEnded("this session was ended (the account was removed or its password changed)")
    if not exists(identifier):
        raise SessionEnded(f"the account {identifier!r} no longer exists")
    return User(identifier=identifier, display_name=found.get("display_name"), metadata=found.get("metadata") or {})


def end(token: str | None, record: SessionRecord | None = None) -> bool:
    """Logout: the token stops working now. False when there was no valid token to end."""
    try:
        found = claims(token or "")
    except pyjwt.InvalidTokenError:
        return False
    if "jti" not in found:
        return False
    (record or SessionRecord()).revoke_token(found["jti"], float(found["exp"]))
    return True


def install(exists: Callable[[str], bool]) -> None:
    """Make Chainlit issue and check sessions through this module, with the configured lifetime; `exists(name)`
    says whether an account still exists (accounts.account_exists)."""
    import chainlit.auth
    import chainlit.auth.jwt
    import chainlit.server
    from chainlit.config import config

    config.project.user_session_timeout = lifetime_s()  # the cookie's max-age follows the token's lifetime
    for module in (chainlit.auth, chainlit.auth.jwt, chainlit.server):
        module.create_jwt = issue
        module.decode_jwt = lambda token: check(token, exists)
