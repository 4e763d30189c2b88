"""Chat persistence: Chainlit's SQLAlchemy layer on SQLite (schema, round trip, restart), local element files behind
signed URLs, per-user uploads with hostile names, and two users who cannot see each other's threads, files or runs."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import uuid
from pathlib import Path

import chainlit as cl
import httpx
import pytest
from chainlit.context import ChainlitContext, context_var
from chainlit.element import ElementDict
from chainlit.session import HTTPSession
from chainlit.step import StepDict
from chainlit.types import Feedback
from chainlit.user import User
from fastapi import FastAPI
from fastapi.testclient import TestClient

from assistant.chat import accounts, persistence
from assistant.chat.persistence import LocalStorageClient
from assistant.chat.uploads import (
    UploadError,
    list_uploads,
    safe_filename,
    store_upload,
    upload_path_for,
    uploads_root,
    user_upload_dir,
)
from assistant.chat.user_runs import RunNotVisible, get_run_for, runs_for
from executor.runs.store import RunStore


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "test-secret-" + "x" * 40)
    monkeypatch.delenv("CHAINLIT_ROOT_PATH", raising=False)
    return tmp_path


def columns(db: Path, table: str) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}


def in_session(thread_id: str, user) -> None:
    """A Chainlit context outside a websocket, so the layer writes at once (it queues writes in a websocket
    session until the user's first message)."""
    context_var.set(ChainlitContext(HTTPSession(id=str(uuid.uuid4()), thread_id=thread_id, user=user,
                                                client_type="webapp")))


async def seed_thread(layer, identifier: str, name: str, text: str) -> tuple[str, str]:
    """A thread owned by `identifier` with one user message; returns (thread id, message id)."""
    user = await layer.create_user(User(identifier=identifier))
    thread_id = str(uuid.uuid4())
    in_session(thread_id, user)
    await layer.update_thread(thread_id, name=name, user_id=user.id, metadata={"run_id": "r-1"}, tags=["advisor"])
    message = cl.Message(content=text, author=identifier, type="user_message")
    message.created_at = "2026-11-29T10:00:00Z"
    step = message.to_dict()
    step["modes"] = {"model": "smollm2"}  # a dict column: sqlite3 cannot bind it without the layer's JSON encoding
    step["tags"] = ["question"]
    await layer.create_step(step)
    return thread_id, message.id


# ------------------------------------------------------------------------------------------ schema and round trip
def test_schema_has_a_column_for_everything_chainlit_writes(home):
    persistence.make_data_layer()
    db = home / "chat.sqlite"
    assert set(StepDict.__annotations__) - {"feedback"} <= columns(db, "steps")
    assert set(ElementDict.__annotations__) <= columns(db, "elements")
    assert {f.name for f in dataclasses.fields(Feedback)} <= columns(db, "feedbacks")
    assert columns(db, "users") == {"id", "identifier", "metadata", "createdAt"}
    assert columns(db, "threads") == {"id", "createdAt", "name", "userId", "userIdentifier", "tags", "metadata"}
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.stat().st_mode & 0o777 == 0o600


def test_schema_upgrade_adds_missing_columns(home):
    db = home / "old.sqlite"
    with sqlite3.connect(db) as conn:  # a file written before Chainlit added `modes` and `autoCollapse`
        conn.execute('CREATE TABLE steps ("id" TEXT PRIMARY KEY, "name" TEXT NOT NULL, "type" TEXT NOT NULL, '
                     '"threadId" TEXT NOT NULL, "output" TEXT)')
        conn.execute("INSERT INTO steps VALUES ('s1', 'n', 'user_message', 't1', 'kept')")
    persistence.create_schema(db)
    persistence.create_schema(db)  # idempotent
    assert {"modes", "autoCollapse", "defaultOpen"} <= columns(db, "steps")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT output FROM steps").fetchall() == [("kept",)]


def test_thread_steps_and_files_survive_a_restart(home):
    async def write():
        layer = persistence.make_data_layer()
        thread_id, message_id = await seed_thread(layer, "alice", "LoRA for legal Q&A", "We have 5,000 pairs.")
        step = cl.Step(name="training", type="run")
        step.output = "loss 4.43 -> 0.63"
        await layer.create_step(step.to_dict())
        element = cl.File(name="../../report.csv", content=b"metric,value\naccuracy,0.52\n", for_id=message_id,
                          mime="text/csv")
        element.thread_id = thread_id
        await layer.create_element(element)
        await layer.close()
        return thread_id

    async def read(thread_id):
        layer = persistence.make_data_layer()  # a new process would build a new layer on the same files
        try:
            return await layer.get_thread(thread_id), layer
        finally:
            await layer.close()

    thread_id = asyncio.run(write())
    thread, layer = asyncio.run(read(thread_id))
    assert thread["name"] == "LoRA for legal Q&A" and thread["userIdentifier"] == "alice"
    assert thread["tags"] == ["advisor"] and thread["metadata"] == {"run_id": "r-1"}  # JSON decoded, as on Postgres
    assert [s["output"] for s in thread["steps"]] == ["We have 5,000 pairs.", "loss 4.43 -> 0.63"]
    assert thread["steps"][0]["tags"] == ["question"]
    [element] = thread["elements"]
    assert element["name"] == "../../report.csv"
    stored = layer.storage_provider.path_for(element["objectKey"])
    files_root = (home / "chat-files").resolve()
    assert stored.resolve().is_relative_to(files_root) and stored.name == "report.csv"
    assert stored.read_bytes() == b"metric,value\naccuracy,0.52\n"
    assert element["url"].startswith("/tunewise/files/") and "signature=" in element["url"]

    async def delete():
        layer = persistence.make_data_layer()
        await layer.delete_thread(thread_id)
        gone = await layer.get_thread(thread_id)
        await layer.close()
        return gone

    assert asyncio.run(delete()) is None and not stored.exists()


def test_an_element_stored_without_props_reads_back(home):
    """A citation element opened as its own page: Chainlit json.loads() the props column, NULL when none were set."""

    async def scenario():
        layer = persistence.make_data_layer()
        thread_id, message_id = await seed_thread(layer, "alice", "plan", "hello")
        element = cl.Text(name="lora#when-to-use-it", content="LoRA trains a fraction of the weights.",
                          for_id=message_id)
        element.thread_id = thread_id
        element.props = None
        await layer.create_element(element)
        return await layer.get_element(thread_id, element.id)

    stored = asyncio.run(scenario())
    assert stored is not None and stored["props"] == {} and stored["name"] == "lora#when-to-use-it"


def test_a_crafted_thread_id_cannot_read_other_users_messages(home):
    """Chainlit's layer pastes thread ids into SQL text; a thread id comes from the browser. Without the layer's
    UUID check this UNION, sent as Bob's thread id, returns Alice's messages as elements of Bob's thread."""
    import json

    async def attack():
        layer = persistence.make_data_layer()
        await seed_thread(layer, "alice", "alice's plan", "ALICE-SECRET: the merger closes Friday")
        bob = await layer.create_user(User(identifier="bob"))
        own = str(uuid.uuid4())
        in_session(own, bob)
        await layer.update_thread(own, name="bob's thread", user_id=bob.id)
        payload = (f"') UNION SELECT s2.id, '{own}', 'text', NULL, NULL, NULL, s2.output, 'inline', NULL, NULL, "
                   "NULL, NULL, NULL, NULL FROM steps s2 --")
        with pytest.raises(ValueError, match="not a UUID"):
            await layer.update_thread(payload, name="x", user_id=bob.id)
        seen = await layer.get_all_user_threads(user_id=bob.id)
        await layer.close()
        return seen

    seen = asyncio.run(attack())
    assert [t["name"] for t in seen] == ["bob's thread"]
    assert "ALICE-SECRET" not in json.dumps(seen)


# ------------------------------------------------------------------------------------------ element files
def test_element_files_are_served_only_with_a_valid_signature(home):
    app = FastAPI()

    @app.get("/{full_path:path}")  # Chainlit's UI catch-all is registered before the data layer exists
    def ui(full_path: str):
        return {"ui": full_path}

    storage = LocalStorageClient(home / "files")
    persistence.install_file_route(app, storage)
    persistence.install_file_route(app, storage)  # idempotent
    assert sum(getattr(r, "path", "") == "/tunewise/files/{token}" for r in app.router.routes) == 1
    other = LocalStorageClient(home / "files", lifetime_s=-10)

    async def urls():
        await storage.upload_file("u1/e1/notes.txt", b"private notes", mime="text/plain")
        await storage.upload_file("u1/e2/page.html", b"<script>alert(1)</script>", mime="text/html")
        return (await storage.get_read_url("u1/e1/notes.txt"), await storage.get_read_url("u1/e2/page.html"),
                await other.get_read_url("u1/e1/notes.txt"))

    good, html, expired = asyncio.run(urls())
    client = TestClient(app)
    response = client.get(good)
    assert response.status_code == 200 and response.content == b"private notes"
    assert response.headers["content-type"].startswith("text/plain")
    # A page a user uploaded must not run as a page of the chat's origin.
    response = client.get(html)
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment")
    assert client.get(good[:-1] + ("0" if good[-1] != "0" else "1")).status_code == 403  # tampered signature
    token_of_html = html.split("/")[-1].split("?")[0]
    assert client.get(good.replace(good.split("/")[-1].split("?")[0], token_of_html)).status_code == 403
    assert client.get(expired).status_code == 403
    assert client.get("/tunewise/files/not-base64!?expires=1&signature=x").status_code in (403, 404)


@pytest.mark.parametrize("key", ["../../etc/passwd", "/etc/passwd", "u1/../../../x", "u1\\..\\..\\x",
                                 "u1/e1/a\0b", "u1/e1/..", "u1/./e1/CON"])
def test_object_keys_stay_inside_the_files_folder(home, key):
    storage = LocalStorageClient(home / "files")
    asyncio.run(storage.upload_file(key, b"data"))
    path = storage.path_for(key)
    assert path.resolve().is_relative_to((home / "files").resolve()) and path.read_bytes() == b"data"


# ------------------------------------------------------------------------------------------ two users, one server
def test_user_b_cannot_list_read_rename_or_delete_user_a_threads(home, monkeypatch):
    """Through Chainlit's own HTTP API with real logins: the filtering by user id and the author checks."""
    import chainlit.data as cl_data
    from chainlit.config import config
    from chainlit.server import app

    monkeypatch.setenv(accounts.USERS_ENV, "alice:alice-password,bob:bob-password")

    async def login_callback(username, password):
        return accounts.authenticate(username, password)

    monkeypatch.setattr(config.code, "password_auth_callback", login_callback)
    monkeypatch.setattr(config.code, "data_layer", persistence.make_data_layer)
    monkeypatch.setattr(cl_data, "_data_layer", None)
    monkeypatch.setattr(cl_data, "_data_layer_initialized", False)
    page = {"pagination": {"first": 20}, "filter": {}}

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        clients = {name: httpx.AsyncClient(transport=transport, base_url="http://chat") for name in ("a", "b", "x")}
        try:
            for name, user, password in (("a", "alice", "alice-password"), ("b", "bob", "bob-password")):
                response = await clients[name].post("/login", data={"username": user, "password": password})
                assert response.status_code == 200, response.text
            assert (await clients["x"].post("/login", data={"username": "bob", "password": "alice-password"})
                    ).status_code == 401
            layer = cl_data.get_data_layer()
            thread_id, message_id = await seed_thread(layer, "alice", "alice's plan", "our data is confidential")
            element = cl.Text(name="notes.txt", content="alice's notes", for_id=message_id)
            element.thread_id = thread_id
            await layer.create_element(element)

            a, b = clients["a"], clients["b"]
            listed = (await a.post("/project/threads", json=page)).json()["data"]
            assert [t["id"] for t in listed] == [thread_id]
            assert (await a.get(f"/project/thread/{thread_id}")).status_code == 200

            assert (await b.post("/project/threads", json=page)).json()["data"] == []
            assert (await b.get(f"/project/thread/{thread_id}")).status_code == 401
            assert (await b.get(f"/project/thread/{thread_id}/element/{element.id}")).status_code == 401
            assert (await b.put("/project/thread", json={"threadId": thread_id, "name": "mine"})).status_code == 401
            response = await b.request("DELETE", "/project/thread", json={"threadId": thread_id})
            assert response.status_code == 401
            assert (await clients["x"].post("/project/threads", json=page)).status_code == 401  # not logged in

            # Resuming a thread over the websocket: Chainlit's connect handler checks the author too.
            from chainlit.session import WebsocketSession
            from chainlit.socket import connect

            def socket_login(client):
                return {"HTTP_COOKIE": "; ".join(f"{k}={v}" for k, v in client.cookies.items())}

            resume = {"threadId": thread_id, "clientType": "webapp"}
            with pytest.raises(ConnectionRefusedError, match="authorization failed"):
                await connect("sid-bob", socket_login(b), {**resume, "sessionId": "session-bob"})
            assert await connect("sid-alice", socket_login(a), {**resume, "sessionId": "session-alice"}) is True
            await WebsocketSession.get_by_id("session-alice").delete()

            # Unknown thread ids get the answer another user's thread gets (it was 500), so ids cannot be probed.
            assert (await b.get(f"/project/thread/{uuid.uuid4()}")).status_code == 401
            # Feedback only on one's own threads' messages (#17): Bob can neither rate nor delete Alice's.
            feedback = {"feedback": {"forId": message_id, "value": 1, "comment": "great"}, "sessionId": "s"}
            assert (await b.put("/feedback", json=feedback)).status_code == 401
            rated = await a.put("/feedback", json=feedback)
            assert rated.status_code == 200, rated.text
            feedback_id = rated.json()["feedbackId"]
            bobs_thread, bobs_message = await seed_thread(layer, "bob", "bob's plan", "hello")
            overwrite = {"feedback": {"id": feedback_id, "forId": bobs_message, "value": 0}, "sessionId": "s"}
            assert (await b.put("/feedback", json=overwrite)).status_code == 401  # her feedback id on his message
            assert (await b.request("DELETE", "/feedback", json={"feedbackId": feedback_id})).status_code == 401
            # A message id of Alice's sent from Bob's thread (a crafted websocket edit) does not move it.
            crafted = cl.Message(content="rewritten by bob", type="user_message", id=message_id).to_dict()
            with pytest.raises(PermissionError, match="belongs to another thread"):
                await layer.create_step({**crafted, "threadId": bobs_thread})

            thread = (await a.get(f"/project/thread/{thread_id}")).json()
            assert thread["name"] == "alice's plan" and thread["steps"][0]["output"] == "our data is confidential"
            assert thread["steps"][0]["feedback"]["value"] == 1
            # The file link Alice was given works; Bob gets no link, and guessing one fails.
            file_url = thread["elements"][0]["url"]
            assert (await a.get(file_url)).content == b"alice's notes"
            assert (await b.get(file_url.split("?")[0] + "?expires=9999999999&signature=0")).status_code == 403
            await layer.close()
        finally:
            for client in clients.values():
                await client.aclose()

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------ uploads
HOSTILE_NAMES = ["../../etc/passwd", "/etc/passwd", "..\\..\\windows\\system.ini", "C:\\evil.dll", "a\0b.jsonl",
                 "..", ".", "", "   ", ".bashrc", "CON", "nul.txt", "x" * 400 + ".csv", "dir/sub/data.csv",
                 "evil\u202egpj.exe", "new\nline.csv"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_upload_names_stay_in_the_user_folder(home, name):
    path = store_upload("alice", name, b"rows")
    folder = user_upload_dir("alice")
    assert path.parent == folder and path.resolve().parent == folder.resolve()
    assert path.read_bytes() == b"rows" and path.name and not path.name.startswith(".")
    assert "\0" not in path.name and "/" not in path.name and "\\" not in path.name and "\n" not in path.name
    assert len(path.name.encode()) <= 255
    assert path.name.split(".")[0].upper() not in ("CON", "NUL")
    assert sorted(p.name for p in home.rglob("*") if p.is_file() and "uploads" in p.parts) == [path.name]


def test_upload_names_keep_what_is_harmless():
    assert safe_filename("banking77 train (v2).jsonl") == "banking77 train (v2).jsonl"
    assert safe_filename("données.csv") == "données.csv"
    assert safe_filename("C:\\Users\\me\\data.parquet") == "data.parquet"


def test_uploads_never_overwrite_or_follow_symlinks(home, tmp_path):
    first = store_upload("alice", "data.csv", b"one")
    second = store_upload("alice", "data.csv", "two")
    assert (first.name, second.name) == ("data.csv", "data-1.csv") and first.read_bytes() == b"one"

    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    (user_upload_dir("alice") / "planted.csv").symlink_to(outside)
    written = store_upload("alice", "planted.csv", b"attack")
    assert outside.read_text() == "untouched" and written.name == "planted-1.csv"
    assert written.read_bytes() == b"attack"

    source = tmp_path / "chainlit-temp-file"
    source.write_bytes(b"copied from the session folder")
    assert store_upload("alice", "copy.jsonl", source).read_bytes() == b"copied from the session folder"

    uploads_root().mkdir(exist_ok=True)
    (uploads_root() / "mallory").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UploadError, match="is a symlink"):
        store_upload("mallory", "x.csv", b"x")


def test_user_b_cannot_see_user_a_uploads(home):
    alice, bob = User(identifier="alice"), User(identifier="bob")
    stored = store_upload(alice, "secret.jsonl", b'{"q": "a"}\n')
    assert [p.name for p in list_uploads(alice)] == ["secret.jsonl"]
    assert list_uploads(bob) == []
    assert upload_path_for(alice, "secret.jsonl") == stored
    for name in ("secret.jsonl", "../alice/secret.jsonl", str(stored)):
        with pytest.raises(FileNotFoundError):
            upload_path_for(bob, name)
    # Identifiers that would be paths get folders of their own, never Alice's.
    for sneaky in ("../alice", "alice/..", "./alice", "alice\\"):
        folder = user_upload_dir(sneaky)
        assert folder != user_upload_dir(alice) and folder.parent == uploads_root()
        assert list_uploads(sneaky) == []


# ------------------------------------------------------------------------------------------ runs
def test_user_b_cannot_see_user_a_runs(home):
    store = RunStore(home / "runs.sqlite")
    plan = "approach: prompting\ntechnique: none\n"
    alices = [store.submit(plan, owner="alice") for _ in range(2)]
    bobs = store.submit(plan, owner="bob")
    store.submit(plan)  # from the CLI: nobody's in the chat

    assert [r["id"] for r in runs_for(User(identifier="alice"), store)] == alices
    assert [r["id"] for r in runs_for("bob", store)] == [bobs]
    assert get_run_for("alice", alices[0], store)["owner"] == "alice"
    # Another user's run and an unknown id get the same answer: no probing which ids exist.
    answers = []
    for run_id in (alices[0], "no-such-run"):
        with pytest.raises(RunNotVisible) as refused:
            get_run_for("bob", run_id, store)
        answers.append(str(refused.value).replace(run_id, "ID"))
    assert answers == ["ID: no such run among your runs"] * 2
