"""Chat history on SQLite and element files on local disk.

`make_data_layer()` is what app.py returns from `@cl.data_layer`: Chainlit's own `SQLAlchemyDataLayer` on
`sqlite+aiosqlite:///$TUNEWISE_HOME/chat.sqlite`, with the schema it reads and writes created here (Chainlit
documents it for PostgreSQL and leaves creating it to the app), and a `LocalStorageClient` keeping element files
under `$TUNEWISE_HOME/chat-files/`, served back through short-lived signed URLs.

Who sees what is Chainlit's job for threads: `list_threads` is called with the logged-in user's id and
returns only threads whose `userId` matches; reading, resuming, renaming or deleting a thread checks
`get_thread_author` (the thread's `userIdentifier`) against the logged-in user. tests/test_chat_persistence.py
checks both on this layer. Which runs a user may see is user_runs.py.

Lazy imports: chainlit.server, fastapi and accounts are imported by the functions that add routes to a running
Chainlit server (or read its signing secret), so the data layer alone loads without them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import mimetypes
import os
import re
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from chainlit.data.storage_clients.base import BaseStorageClient

from assistant.chat.uploads import safe_filename
from executor.paths import data_dir

# Chainlit 2.12's tables, as its SQLAlchemy layer reads and writes them (chainlit/data/sql_alchemy.py) and as
# docs.chainlit.io/data-layers/sqlalchemy lists them, in SQLite's types: UUIDs and timestamps are TEXT, JSONB
# and TEXT[] are JSON text. Chainlit inserts every non-empty key of a StepDict / ElementDict as a column, so
# each key of those TypedDicts has a column here (a missing one makes the INSERT fail, which Chainlit only logs);
# the test suite checks that against the installed Chainlit. Foreign keys are declared as documented but not
# enforced (SQLite's default): Chainlit deletes a thread's rows itself, in its own order.
SCHEMA: dict[str, list[tuple[str, str]]] = {
    "users": [("id", "TEXT PRIMARY KEY"), ("identifier", "TEXT NOT NULL UNIQUE"), ("metadata", "TEXT NOT NULL"),
              ("createdAt", "TEXT")],
    "threads": [("id", "TEXT PRIMARY KEY"), ("createdAt", "TEXT"), ("name", "TEXT"),
                ("userId", "TEXT REFERENCES users(id) ON DELETE CASCADE"), ("userIdentifier", "TEXT"),
                ("tags", "TEXT"), ("metadata", "TEXT")],
    "steps": [("id", "TEXT PRIMARY KEY"), ("name", "TEXT NOT NULL"), ("type", "TEXT NOT NULL"),
              ("threadId", "TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE"), ("parentId", "TEXT"),
              ("streaming", "BOOLEAN NOT NULL DEFAULT 0"), ("waitForAnswer", "BOOLEAN"), ("isError", "BOOLEAN"),
              ("metadata", "TEXT"), ("tags", "TEXT"), ("input", "TEXT"), ("output", "TEXT"), ("createdAt", "TEXT"),
              ("command", "TEXT"), ("modes", "TEXT"), ("start", "TEXT"), ("end", "TEXT"), ("generation", "TEXT"),
              ("showInput", "TEXT"), ("language", "TEXT"), ("indent", "INTEGER"), ("defaultOpen", "BOOLEAN"),
              ("autoCollapse", "BOOLEAN"), ("icon", "TEXT")],
    "elements": [("id", "TEXT PRIMARY KEY"), ("threadId", "TEXT REFERENCES threads(id) ON DELETE CASCADE"),
                 ("type", "TEXT"), ("url", "TEXT"), ("chainlitKey", "TEXT"), ("name", "TEXT NOT NULL"),
                 ("display", "TEXT"), ("objectKey", "TEXT"), ("size", "TEXT"), ("page", "INTEGER"),
                 ("language", "TEXT"), ("forId", "TEXT"), ("mime", "TEXT"), ("props", "TEXT"), ("autoPlay", "BOOLEAN"),
                 ("playerConfig", "TEXT"), ("path", "TEXT")],
    "feedbacks": [("id", "TEXT PRIMARY KEY"), ("forId", "TEXT NOT NULL"),
                  ("threadId", "TEXT REFERENCES threads(id) ON DELETE CASCADE"), ("value", "INTEGER NOT NULL"),
                  ("comment", "TEXT")],
}
INDEXES = [
    'CREATE INDEX IF NOT EXISTS threads_by_user ON threads ("userId")',
    'CREATE INDEX IF NOT EXISTS steps_by_thread ON steps ("threadId", "createdAt")',
    'CREATE INDEX IF NOT EXISTS elements_by_thread ON elements ("threadId")',
    'CREATE INDEX IF NOT EXISTS feedbacks_by_step ON feedbacks ("forId")',
]
FILES_URL_PREFIX = "/tunewise/files"
URL_LIFETIME_S = int(os.environ.get("STORAGE_EXPIRY_TIME", 3600))  # the variable Chainlit's cloud clients read


def chat_db_path() -> Path:
    return data_dir() / "chat.sqlite"


def create_schema(db_path: Path) -> None:
    """Create Chainlit's tables (idempotent), add columns a newer schema has and an older file lacks, and put
    the database in WAL mode so the chat's reads do not wait on its writes."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    # Conversations are private: owner-only, like the users file. SQLite gives its -wal/-shm files the same mode.
    os.close(os.open(db_path, os.O_RDWR | os.O_CREAT, 0o600))
    with sqlite3.connect(db_path, timeout=30) as db:
        db.execute("PRAGMA journal_mode=WAL")
        for table, columns in SCHEMA.items():
            body = ", ".join(f'"{name}" {kind}' for name, kind in columns)
            db.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({body})')
            present = {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}
            for name, kind in columns:
                if name not in present:
                    # ALTER TABLE cannot add PRIMARY KEY / UNIQUE / NOT NULL-without-default columns; new Chainlit
                    # columns are plain nullable ones, so only the type is carried over.
                    db.execute(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {kind.split()[0]}')
        for statement in INDEXES:
            db.execute(statement)


# ------------------------------------------------------------------------------------------ the data layer
_JSON_THREAD_FIELDS = ("tags", "metadata")
NOBODY = "\0nobody"  # the author of a thread that does not exist
_JSON_STEP_FIELDS = ("tags", "metadata", "generation")


class SQLiteDataLayer(SQLAlchemyDataLayer):
    """Chainlit's SQLAlchemy layer, with the two things SQLite needs that PostgreSQL does not: lists and dicts
    (thread tags, message modes, player configs) are stored as JSON text (sqlite3 cannot bind them, and
    Chainlit would log the failed INSERT and drop the step), and JSON text is decoded again when threads
    are read, so the UI gets the same shapes as from PostgreSQL."""

    async def execute_sql(self, query: str, parameters: dict) -> list[dict[str, Any]] | int | None:
        parameters = {key: json.dumps(value) if isinstance(value, list | dict) else value
                      for key, value in parameters.items()}
        result = await super().execute_sql(query, parameters)
        if isinstance(result, list):
            # Elements stored without props read back as NULL, and Chainlit's get_element json.loads()es it:
            # an element page (a clicked citation) would answer 500.
            for row in result:
                if "props" in row and row["props"] is None:
                    row["props"] = "{}"
        return result

    async def update_thread(self, thread_id: str, *args, **kwargs):
        # Chainlit pastes the ids of a user's threads into its step and element queries as text
        # ("WHERE s.threadId IN ('id1','id2')"), and a thread id can come from the browser (the websocket's
        # threadId). A crafted id would be SQL in that query (a UNION reading other users' steps), so only
        # UUIDs, which is what Chainlit itself generates, may create or change a thread. create_step goes
        # through here too.
        _require_uuid(thread_id)
        return await super().update_thread(thread_id, *args, **kwargs)

    async def get_thread_author(self, thread_id: str) -> str:
        """An unknown thread's author is nobody's name (user names cannot hold NUL), so Chainlit answers 401 as for
        another user's thread (it answered 500, or 404 for an empty author): a probe cannot tell which ids exist."""
        try:
            return await super().get_thread_author(thread_id)
        except ValueError:
            return NOBODY

    async def create_step(self, step_dict):
        # Chainlit upserts a step by its id, taking the thread from the writer's session: a message id of another
        # user's thread, sent by a crafted websocket edit, would move that message into the writer's thread.
        if await self.step_thread(step_dict.get("id")) not in (None, step_dict.get("threadId")):
            raise PermissionError(f"message {step_dict.get('id')} belongs to another thread")
        return await super().create_step(step_dict)

    async def step_thread(self, step_id: str | None) -> str | None:
        """The thread a stored step belongs to (None: no such step)."""
        rows = await self.execute_sql('SELECT "threadId" FROM steps WHERE "id" = :id', {"id": step_id})
        return rows[0]["threadId"] if isinstance(rows, list) and rows else None

    async def feedback_step(self, feedback_id: str) -> str | None:
        rows = await self.execute_sql('SELECT "forId" FROM feedbacks WHERE "id" = :id', {"id": feedback_id})
        return rows[0]["forId"] if isinstance(rows, list) and rows else None

    async def owns_step(self, user: str, step_id: str | None) -> bool:
        thread = await self.step_thread(step_id)
        return thread is not None and await self.get_thread_author(thread) == user

    async def get_all_user_threads(self, user_id: str | None = None, thread_id: str | None = None):
        threads = await super().get_all_user_threads(user_id=user_id, thread_id=thread_id)
        for thread in threads or []:
            _decode(thread, _JSON_THREAD_FIELDS)
            for step in thread.get("steps", []):
                _decode(step, _JSON_STEP_FIELDS)
            for element in thread.get("elements", []):
                _decode(element, ("props",))
        return threads


def _require_uuid(thread_id: str) -> None:
    try:
        uuid.UUID(str(thread_id))
    except ValueError:
        raise ValueError(f"thread id {thread_id!r} is not a UUID; refused") from None
    if not re.fullmatch(r"[0-9a-fA-F-]{32,36}", str(thread_id)):  # UUID() also accepts braces and 'urn:uuid:'
        raise ValueError(f"thread id {thread_id!r} is not a plain UUID; refused")


def _decode(row: dict, fields: tuple[str, ...]) -> None:
    for field in fields:
        value = row.get(field)
        if isinstance(value, str):
            try:
                row[field] = json.loads(value)
            except json.JSONDecodeError:
                pass  # plain text stored by an older version: leave it as it is


def make_data_layer(db_path: Path | None = None, files_root: Path | None = None) -> SQLiteDataLayer:
    """The data layer for `@cl.data_layer`: chat history in SQLite, element files on local disk.

    When the Chainlit server is running in this process, the route serving element files is added to it."""
    db_path = Path(db_path) if db_path else chat_db_path()
    create_schema(db_path)
    # Chainlit serves under CHAINLIT_ROOT_PATH when mounted below a prefix; the file URLs must carry it too.
    prefix = os.environ.get("CHAINLIT_ROOT_PATH", "").rstrip("/") + FILES_URL_PREFIX
    storage = LocalStorageClient(files_root or data_dir() / "chat-files", url_prefix=prefix)
    layer = SQLiteDataLayer(f"sqlite+aiosqlite:///{db_path}", connect_args={"timeout": 30},
                            storage_provider=storage)
    server = sys.modules.get("chainlit.server")
    if server is not None:
        install_file_route(server.app, storage)
        install_feedback_checks(server)
    return layer


def install_feedback_checks(server) -> None:
    """Chainlit's PUT and DELETE /feedback write whatever message or feedback id the browser sends; these routes,
    put in front of them, first check that the message belongs to one of the logged-in user's threads."""
    from chainlit.server import UserParam
    from chainlit.types import DeleteFeedbackRequest, UpdateFeedbackRequest
    from fastapi import HTTPException, Request

    app = server.app
    if any(getattr(r, "name", "") == "tunewise_update_feedback" for r in app.router.routes):
        return

    async def refuse_unless_owner(current_user, step_id: str | None) -> None:
        layer = server.get_data_layer()
        if layer is None or not await layer.owns_step(getattr(current_user, "identifier", ""), step_id):
            raise HTTPException(status_code=401, detail="Unauthorized")  # the answer for another user's thread

    async def update_feedback(request: Request, update: UpdateFeedbackRequest, current_user: UserParam):
        await refuse_unless_owner(current_user, update.feedback.forId)
        if update.feedback.id and await server.get_data_layer().feedback_step(update.feedback.id) not in (
                None, update.feedback.forId):
            raise HTTPException(status_code=401, detail="Unauthorized")  # another message's feedback id
        return await server.update_feedback(request, update, current_user)

    async def delete_feedback(request: Request, payload: DeleteFeedbackRequest, current_user: UserParam):
        await refuse_unless_owner(current_user, await server.get_data_layer().feedback_step(payload.feedbackId))
        return await server.delete_feedback(request, payload, current_user)

    # (This module's annotations are strings, which FastAPI resolves in the module's globals: give it the types.)
    update_feedback.__annotations__ = {"request": Request, "update": UpdateFeedbackRequest, "current_user": UserParam}
    delete_feedback.__annotations__ = {"request": Request, "payload": DeleteFeedbackRequest,
                                       "current_user": UserParam}
    for path, method, handler, name in (("/feedback", "PUT", update_feedback, "tunewise_update_feedback"),
                                        ("/feedback", "DELETE", delete_feedback, "tunewise_delete_feedback")):
        app.router.add_api_route(path, handler, methods=[method], name=name)
        app.router.routes.insert(0, app.router.routes.pop())  # before Chainlit's own


# ------------------------------------------------------------------------------------------ element files
class LocalStorageClient(BaseStorageClient):
    """Element files under a local folder, for Chainlit's `BaseStorageClient` interface (which its S3, GCS and
    Azure clients implement). Read URLs are signed and expire like S3's presigned URLs: only a user who was
    allowed to load the thread gets one, and the route serving them checks the signature, not a cookie.

    Object keys come from Chainlit as `<user id>/<element id>/<file name>`, and the file name is the browser's:
    each component is cleaned like an upload name, so a key cannot reach outside the folder."""

    def __init__(self, root: Path, url_prefix: str = FILES_URL_PREFIX, lifetime_s: int = URL_LIFETIME_S):
        self.root = Path(root)
        self.url_prefix = url_prefix.rstrip("/")
        self.lifetime_s = lifetime_s
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path_for(self, object_key: str) -> Path:
        parts = [safe_filename(part) for part in str(object_key).replace("\\", "/").split("/")
                 if part not in ("", ".", "..")]
        if not parts:
            raise ValueError(f"empty object key {object_key!r}")
        path = self.root.joinpath(*parts)
        root = self.root.resolve()
        if not path.resolve().is_relative_to(root):  # a symlink planted inside the folder
            raise ValueError(f"object key {object_key!r} resolves outside {self.root}")
        return path

    async def upload_file(self, object_key: str, data: bytes | str, mime: str = "application/octet-stream",
                          overwrite: bool = True, content_disposition: str | None = None) -> dict[str, Any]:
        path = self.path_for(object_key)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists and overwrite is False")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
        return {"object_key": object_key, "url": await self.get_read_url(object_key)}

    async def delete_file(self, object_key: str) -> bool:
        try:
            self.path_for(object_key).unlink()
        except (FileNotFoundError, ValueError):
            return False
        return True

    async def get_read_url(self, object_key: str) -> str:
        # The key travels as one base64url segment: a raw key may hold '../' or '%2e%2e', which browsers
        # collapse as dot segments before the request is sent.
        token = base64.urlsafe_b64encode(object_key.encode("utf-8")).decode("ascii").rstrip("=")
        expires = int(time.time()) + self.lifetime_s
        return f"{self.url_prefix}/{token}?expires={expires}&signature={self.sign(object_key, expires)}"

    @staticmethod
    def key_from_token(token: str) -> str:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")

    def sign(self, object_key: str, expires: int) -> str:
        return hmac.new(_url_key(), f"{object_key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def verify(self, object_key: str, expires: int, signature: str) -> bool:
        if expires < time.time():
            return False
        return hmac.compare_digest(self.sign(object_key, expires), signature)

    async def close(self) -> None:
        return None


def _url_key() -> bytes:
    """A key for file URLs derived from the chat's auth secret (one secret to keep, one to rotate)."""
    from assistant.chat.accounts import ensure_auth_secret

    return hashlib.sha256(b"tunewise-chat-files\0" + ensure_auth_secret().encode()).digest()


# Served inline only where a browser cannot run it as a page on our origin; everything else is a download.
_INLINE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain", "text/csv",
                 "application/json", "audio/", "video/")


def install_file_route(app, storage: LocalStorageClient) -> None:
    """Serve `storage`'s files at `<url prefix>/<base64url key>?expires=..&signature=..` on a FastAPI app.

    The route goes first: Chainlit's catch-all `/{full_path:path}` (the UI) would otherwise answer it."""
    from fastapi import HTTPException
    from fastapi.responses import FileResponse

    path = f"{storage.url_prefix}/{{token}}"
    # The route reads the storage of the newest data layer: a data layer made again (another data directory)
    # must not leave the route serving the first one's folder.
    app.state.tunewise_chat_storage = storage
    if any(getattr(route, "path", None) == path for route in app.router.routes):
        return

    async def serve_chat_file(token: str, expires: int, signature: str):
        storage = app.state.tunewise_chat_storage
        try:
            object_key = storage.key_from_token(token)
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise HTTPException(status_code=404, detail="file not found") from None
        if not storage.verify(object_key, expires, signature):
            raise HTTPException(status_code=403, detail="link expired or not valid: reload the thread")
        try:
            file = storage.path_for(object_key)
        except ValueError:
            raise HTTPException(status_code=404, detail="file not found") from None
        if not file.is_file():
            raise HTTPException(status_code=404, detail="file not found")
        mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        inline = mime.startswith(_INLINE_TYPES)
        headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
        return FileResponse(file, media_type=mime if inline else "application/octet-stream", headers=headers,
                            filename=file.name, content_disposition_type="inline" if inline else "attachment")

    app.router.add_api_route(path, serve_chat_file, methods=["GET"], name="tunewise_chat_file")
    app.router.routes.insert(0, app.router.routes.pop())
