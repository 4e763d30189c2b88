"""Who may use the chat: password accounts, and the secret Chainlit signs its session tokens with.

Accounts come from two places, checked in this order:

1. the users file, `TUNEWISE_USERS_FILE` or `$TUNEWISE_HOME/users.yaml` (0600), written by `tunewise users add`;
   it holds salted scrypt hashes, never passwords:

       users:
         alice: {password: "scrypt$16384$8$1$<salt>$<hash>", role: user, created: "2026-11-29T12:00:00Z"}

2. `TUNEWISE_USERS="alice:pw,bob:pw"` for quick set-ups and tests (plain text by nature: it lives in the
   environment of whoever starts the server). A name in the users file is never looked up here.

On a fresh machine with neither, `prepare_accounts()` creates `admin` with a random password, prints it once
and keeps it in `$TUNEWISE_HOME/admin-password.txt` (0600), so `make chat` is usable at once.
"""

from __future__ import annotations

import base64
import datetime as _dt
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from assistant.chat.sessions import SessionRecord
from executor.paths import data_dir

if TYPE_CHECKING:  # chainlit takes ~5 s to import; the `tunewise users` CLI must not pay for it
    import chainlit as cl

USERS_FILE_ENV = "TUNEWISE_USERS_FILE"
USERS_ENV = "TUNEWISE_USERS"
AUTH_SECRET_ENV = "CHAINLIT_AUTH_SECRET"
DEFAULT_ADMIN = "admin"
ROLES = ("user", "admin")

# scrypt at n=2**14, r=8, p=1 (the parameters Python's docs and OWASP's minimum use): ~50 ms and 16 MiB per
# check, cheap for a login and expensive for a guesser. The parameters are stored with each hash, so they can
# be raised later without invalidating existing accounts.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class AccountError(ValueError):
    """A users file, user name or password that cannot be used; the message says which and what to do."""


# ----------------------------------------------------------------------------------------------- hashing
def hash_password(password: str) -> str:
    """`scrypt$N$r$p$salt$hash` (salt and hash base64): a fresh 16-byte salt per password."""
    if not password:
        raise AccountError("the password is empty")
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of `password` against a `hash_password` string; a malformed hash never matches."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024,
                          dklen=length)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# A hash of a random password, checked when the user name is unknown, so a wrong name costs as long as a
# wrong password and response times do not tell which names exist.
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


# ----------------------------------------------------------------------------------------------- users file
def users_file() -> Path:
    explicit = os.environ.get(USERS_FILE_ENV)
    return Path(explicit).expanduser() if explicit else data_dir() / "users.yaml"


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise AccountError(f"user name {name!r} is not allowed: use 1-64 letters, digits, '.', '_', '-' or '@', "
                           "starting with a letter or digit")
    return name


def load_users(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The accounts in the users file (name -> {password: hash, role, created}); {} when there is no file."""
    path = path or users_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise AccountError(f"{path}: cannot read the users file ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise AccountError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("users", {}) or {}, dict):
        raise AccountError(f"{path}: expected a mapping 'users:' of name -> {{password: HASH}}")
    users: dict[str, dict[str, Any]] = {}
    for name, entry in (doc.get("users") or {}).items():
        name = str(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("password"), str):
            raise AccountError(f"{path}: users.{name}.password is missing (set it with `tunewise users add {name}`)")
        if not entry["password"].startswith("scrypt$"):
            # A plaintext password here would be a leak waiting to happen: refuse it rather than accept it.
            raise AccountError(f"{path}: users.{name}.password is not a scrypt hash; store passwords with "
                               f"`tunewise users add {name} --update`, never in plain text")
        role = entry.get("role", "user")
        if role not in ROLES:
            raise AccountError(f"{path}: users.{name}.role is {role!r}; use one of {', '.join(ROLES)}")
        users[name] = {**entry, "role": role}
    return users


def save_users(users: dict[str, dict[str, Any]], path: Path | None = None) -> Path:
    """Write the users file atomically (temp file + rename) with mode 0600."""
    path = path or users_file()
    header = "# Tunewise chat accounts: salted scrypt hashes, never passwords. Edit with `tunewise users`.\n"
    _write_private(path, header + yaml.safe_dump({"users": users}, sort_keys=True), replace=True)
    return path


@contextmanager
def _users_file_locked(path: Path) -> Iterator[None]:
    """Serialize read-modify-write of the users file between concurrent `tunewise users add` calls."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def add_user(name: str, password: str, *, role: str = "user", update: bool = False,
             path: Path | None = None) -> Path:
    """Add an account (or, with `update`, change its password and role). Returns the users file."""
    validate_name(name)
    if role not in ROLES:
        raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise AccountError("the password needs at least 8 characters")
    path = path or users_file()
    with _users_file_locked(path):
        users = load_users(path)
        if name in users and not update:
            raise AccountError(f"{path}: user {name!r} exists; use --update to change the password")
        created = users.get(name, {}).get("created") or _now()
        users[name] = {"password": hash_password(password), "role": role, "created": created}
        saved = save_users(users, path)
    if update:
        SessionRecord().revoke_user(name)  # a changed password ends the sessions opened with the old one
    return saved


def remove_user(name: str, path: Path | None = None) -> Path:
    path = path or users_file()
    with _users_file_locked(path):
        users = load_users(path)
        if name not in users:
            raise AccountError(f"{path}: no user {name!r}")
        del users[name]
        saved = save_users(users, path)
    SessionRecord().revoke_user(name)  # its open chats end now, not when their tokens expire
    return saved


def env_users() -> dict[str, str]:
    """`TUNEWISE_USERS="alice:pw,bob:pw"` as name -> password. The password is what follows the first ':'
    (so it may contain ':'), and entries are split on ',' (so it may not)."""
    raw = os.environ.get(USERS_ENV, "").strip()
    users: dict[str, str] = {}
    for position, entry in enumerate(filter(None, (e.strip() for e in raw.split(","))), start=1):
        name, sep, password = entry.partition(":")
        if not sep or not password:
            raise AccountError(f"{USERS_ENV}: entry {position} ({name!r}) has no password; write NAME:PASSWORD")
        users[validate_name(name.strip())] = password
    return users


def list_users() -> list[dict[str, str]]:
    """Every account with where it comes from (`file` or `env`), file accounts first."""
    rows = [{"name": n, "role": e["role"], "source": "file", "created": str(e.get("created", ""))}
            for n, e in sorted(load_users().items())]
    taken = {r["name"] for r in rows}
    rows += [{"name": n, "role": "user", "source": "env", "created": ""}
             for n in sorted(env_users()) if n not in taken]
    return rows


# ----------------------------------------------------------------------------------------------- login
def check_password(username: str, password: str) -> dict[str, str] | None:
    """The account's {name, role, source} when the password is right, else None. Unknown names take as long
    as wrong passwords."""
    if not username or not password:
        return None
    file_users = load_users()
    entry = file_users.get(username)
    if entry is not None:
        if verify_password(password, entry["password"]):
            return {"name": username, "role": entry["role"], "source": "file"}
        return None
    expected = env_users().get(username)
    if expected is not None:
        # Hashed like a file account's, so an environment account costs one scrypt too and the time of an answer
        # does not tell which names exist.
        if verify_password(password, _env_hash(username, expected)):
            return {"name": username, "role": "user", "source": "env"}
        return None
    verify_password(password, _dummy_hash())
    return None


_ENV_HASHES: dict[tuple[str, str], str] = {}


def _env_hash(name: str, password: str) -> str:
    """The scrypt hash of an environment account's password, made once per process (and again if it changes)."""
    key = (name, hashlib.sha256(password.encode("utf-8")).hexdigest())
    if key not in _ENV_HASHES:
        _ENV_HASHES[key] = hash_password(password)
    return _ENV_HASHES[key]


def account_exists(name: str) -> bool:
    """Whether `name` is still an account (in the users file or TUNEWISE_USERS): a session of a removed account
    ends (sessions.check)."""
    try:
        return name in load_users() or name in env_users()
    except AccountError:
        return False  # an unreadable users file opens no session


class LoginThrottle:
    """Online guessing is bounded three ways, each refusing every attempt it covers while it holds (the right
    password included, so a guesser learns nothing meanwhile):

    - a name tried from one address: after `max_failures` wrong passwords within `window_s`, locked for
      `lockout_s` after the last failure. Keyed by name *and* address, so nobody can lock a user out from elsewhere;
    - an address: after `max_per_address` failures within `window_s` over any names (300 names from one place);
    - everyone: after `max_global` failures within `global_window_s` (a guesser spread over many addresses), until
      the oldest of them leaves the window.

    A success clears only its name-and-address record. In memory: one chat server process is one throttle."""

    def __init__(self, max_failures: int = 5, window_s: float = 900.0, lockout_s: float = 300.0,
                 max_per_address: int = 20, max_global: int = 100, global_window_s: float = 60.0,
                 clock=time.monotonic):
        self.max_failures, self.window_s, self.lockout_s, self.clock = max_failures, window_s, lockout_s, clock
        self.max_per_address, self.max_global, self.global_window_s = max_per_address, max_global, global_window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float, window: float) -> list[float]:
        kept = [t for t in self._failures.get(key, []) if now - t < window]
        self._failures[key] = kept
        return kept

    def locked_for(self, name: str, address: str = "") -> float:
        """Seconds before `name` may be tried from `address` (0: now)."""
        with self._lock:
            now = self.clock()
            waits = [0.0]
            for key, limit in ((f"name:{name}@{address}", self.max_failures),
                               (f"address:{address}", self.max_per_address)):
                recent = self._recent(key, now, self.window_s)
                if len(recent) >= limit:
                    waits.append(recent[-1] + self.lockout_s - now)
            recent = self._recent("global", now, self.global_window_s)
            if len(recent) >= self.max_global:
                waits.append(recent[-self.max_global] + self.global_window_s - now)
            return max(waits)

    def failed(self, name: str, address: str = "") -> None:
        with self._lock:
            now = self.clock()
            self._recent(f"name:{name}@{address}", now, self.window_s).append(now)
            self._recent(f"address:{address}", now, self.window_s).append(now)
            self._recent("global", now, self.global_window_s).append(now)

    def succeeded(self, name: str, address: str = "") -> None:
        with self._lock:
            self._failures.pop(f"name:{name}@{address}", None)


login_throttle = LoginThrottle()


def authenticate(username: str, password: str, address: str = "") -> cl.User | None:
    """For `@cl.password_auth_callback`: a Chainlit user for the right password, None otherwise (also while
    LoginThrottle refuses the name, the client's address or everyone). `address` is the client's IP address.

    Takes ~50 ms of CPU (scrypt); an async callback can run it with `asyncio.to_thread`."""
    key = (username or "").strip().lower()
    wait = login_throttle.locked_for(key, address)
    if wait > 0:
        print(f"Tunewise: login for {key!r} from {address or 'an unknown address'} refused: too many wrong "
              f"passwords, locked for {wait:.0f} s more", file=sys.stderr)
        return None
    account = check_password(username, password)
    if account is None:
        login_throttle.failed(key, address)
        return None
    login_throttle.succeeded(key, address)
    from chainlit.user import User  # chainlit takes seconds to import; the `tunewise users` CLI never logs in

    return User(identifier=account["name"], display_name=account["name"],
                metadata={"role": account["role"], "provider": "credentials", "source": account["source"]})


# ----------------------------------------------------------------------------------------------- first run
def admin_password_file() -> Path:
    return data_dir() / "admin-password.txt"


def ensure_default_admin(echo: bool = True) -> str | None:
    """When no account is configured anywhere, create `admin` with a random password, save it in a 0600 file
    under the data dir and print it once. Returns the new password, or None when accounts exist."""
    path = users_file()
    with _users_file_locked(path):
        if load_users(path) or env_users():
            return None
        password = secrets.token_urlsafe(12)
        users = {DEFAULT_ADMIN: {"password": hash_password(password), "role": "admin", "created": _now()}}
        save_users(users, path)
    _write_private(admin_password_file(), f"{DEFAULT_ADMIN}\n{password}\n", replace=True)
    if echo:
        print(f"\nTunewise: first run, created user '{DEFAULT_ADMIN}' with password: {password}\n"
              f"  (also in {admin_password_file()}; add accounts with `tunewise users add NAME`)\n",
              file=sys.stderr, flush=True)
    return password


def ensure_auth_secret() -> str:
    """The secret Chainlit signs session tokens with: `CHAINLIT_AUTH_SECRET` when set, otherwise the one kept
    in `$TUNEWISE_HOME/chainlit-auth-secret` (generated on first use, 0600). Sets the environment variable,
    which Chainlit checks after loading the app module."""
    secret = os.environ.get(AUTH_SECRET_ENV, "").strip()
    if secret:
        return secret
    path = data_dir() / "chainlit-auth-secret"
    try:
        _write_private(path, secrets.token_urlsafe(48) + "\n", replace=False)
    except FileExistsError:
        pass  # made before, or by a process that started at the same moment: use that one
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        # Anyone who can read the secret can forge a login for any user.
        raise AccountError(f"{path} is readable by other users (mode {mode:o}): run `chmod 600 {path}`, or delete "
                           "it to make a new one (everyone will have to log in again)")
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < 32:
        raise AccountError(f"{path}: the auth secret is empty or shorter than 32 characters; delete the file to "
                           f"make a new one, or set {AUTH_SECRET_ENV}")
    os.environ[AUTH_SECRET_ENV] = secret
    return secret


def prepare_accounts() -> None:
    """What the chat app calls at start-up: the auth secret, and a first account on a fresh machine.
    Fails with a message naming the file or variable when the accounts cannot be read."""
    ensure_auth_secret()
    ensure_default_admin()
    # Hash the environment accounts and the unknown-name stand-in now, so not even the first login's time tells
    # which names exist.
    for name, password in env_users().items():
        _env_hash(name, password)
    _dummy_hash()


def _write_private(path: Path, text: str, *, replace: bool) -> None:
    """Create `path` with mode 0600 from the start (no window in which it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    try:
        if replace:
            os.replace(tmp, path)
        else:
            # link() fails when the name exists, so a concurrent reader never sees a half-written file and the
            # first writer wins (FileExistsError for the others).
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
