"""Sessions that really end (#17): logout, `tunewise users remove` and a password change end a session's token at
once, tokens last `TUNEWISE_SESSION_HOURS`; logins cost the same for every account source; the login throttle
counts per name and address, per address and overall."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import pytest
from chainlit.user import User

from assistant.chat import accounts, sessions
from assistant.chat.sessions import SessionEnded, SessionRecord


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "test-secret-" + "x" * 40)
    for name in (accounts.USERS_ENV, accounts.USERS_FILE_ENV, sessions.LIFETIME_ENV):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def alice_exists(name: str) -> bool:
    return name == "alice"


# ---------------------------------------------------------------------- tokens


def test_a_token_opens_its_session_until_logout(home):
    record = SessionRecord(home / "s.sqlite")
    token = sessions.issue(User(identifier="alice", metadata={"role": "user"}))
    user = sessions.check(token, alice_exists, record)
    assert (user.identifier, user.metadata) == ("alice", {"role": "user"})
    other = sessions.issue(User(identifier="alice"))
    assert sessions.end(token, record)
    with pytest.raises(SessionEnded, match="logged out"):
        sessions.check(token, alice_exists, record)
    assert sessions.check(other, alice_exists, record).identifier == "alice"  # another browser stays logged in
    assert not sessions.end("not-a-token", record)


def test_revoking_an_account_ends_the_tokens_issued_before(home):
    now = [time.time()]
    record = SessionRecord(home / "s.sqlite", clock=lambda: now[0])
    before = sessions.issue(User(identifier="alice"), clock=lambda: now[0] - 5)
    record.revoke_user("alice")
    after = sessions.issue(User(identifier="alice"), clock=lambda: now[0] + 0.001)
    with pytest.raises(SessionEnded, match="removed or its password changed"):
        sessions.check(before, alice_exists, record)
    assert sessions.check(after, alice_exists, record).identifier == "alice"
    with pytest.raises(SessionEnded, match="'bob' no longer exists"):
        sessions.check(sessions.issue(User(identifier="bob")), alice_exists, record)


def test_tokens_expire_after_the_configured_lifetime(home, monkeypatch):
    assert sessions.lifetime_s() == 24 * 3600
    monkeypatch.setenv(sessions.LIFETIME_ENV, "0.5")
    assert sessions.lifetime_s() == 1800
    old = sessions.issue(User(identifier="alice"), clock=lambda: time.time() - 1801)
    with pytest.raises(jwt.ExpiredSignatureError):
        sessions.check(old, alice_exists, SessionRecord(home / "s.sqlite"))
    for bad in ("soon", "0", "-3", "5000"):
        monkeypatch.setenv(sessions.LIFETIME_ENV, bad)
        with pytest.raises(ValueError, match=sessions.LIFETIME_ENV):
            sessions.lifetime_s()


def test_the_session_record_is_private(home):
    record = SessionRecord()
    assert record.path == home / "sessions.sqlite" and record.path.stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------------- through Chainlit's server


def test_logout_removal_and_password_change_end_sessions_over_http(home, monkeypatch):
    import chainlit.auth
    import chainlit.auth.jwt
    import chainlit.server
    from chainlit.config import config

    for module in (chainlit.auth, chainlit.auth.jwt, chainlit.server):  # put back after the test
        monkeypatch.setattr(module, "create_jwt", module.create_jwt)
        monkeypatch.setattr(module, "decode_jwt", module.decode_jwt)
    monkeypatch.setattr(config.project, "user_session_timeout", config.project.user_session_timeout)
    import chainlit.data as cl_data

    monkeypatch.setattr(config.code, "data_layer", None)
    monkeypatch.setattr(cl_data, "_data_layer", None)
    monkeypatch.setattr(cl_data, "_data_layer_initialized", False)
    monkeypatch.setattr(config.code, "password_auth_callback", config.code.password_auth_callback)
    monkeypatch.setattr(config.code, "on_logout", config.code.on_logout)
    monkeypatch.setenv(accounts.USERS_ENV, "carol:carol-password")  # (no first-run admin in this home)
    import assistant.chat.app  # noqa: F401 - registers the chat's own login and logout callbacks

    sessions.install(accounts.account_exists)  # (again: an earlier import of the app installed it already)
    assert config.project.user_session_timeout == 24 * 3600 and config.code.on_logout is not None
    accounts.add_user("alice", "wonderland-42")
    accounts.add_user("bob", "builder-0077")

    async def scenario():
        transport = httpx.ASGITransport(app=chainlit.server.app)

        async def logged_in(user, password):
            client = httpx.AsyncClient(transport=transport, base_url="http://chat")
            response = await client.post("/login", data={"username": user, "password": password})
            assert response.status_code == 200, response.text
            return client, chainlit.auth.get_token_from_cookies(dict(client.cookies))

        async def opens(token) -> bool:
            async with httpx.AsyncClient(transport=transport, base_url="http://chat") as fresh:
                response = await fresh.get("/user", headers={"Authorization": f"Bearer {token}"})
                assert response.status_code in (200, 401), response.text
                return response.status_code == 200

        alice, alice_token = await logged_in("alice", "wonderland-42")
        _, alice_phone = await logged_in("alice", "wonderland-42")
        bob, bob_token = await logged_in("bob", "builder-0077")
        assert await opens(alice_token) and await opens(bob_token)
        assert (await alice.post("/logout")).status_code == 200
        assert not await opens(alice_token)  # the token itself, not just the cookie
        assert await opens(alice_phone)
        await asyncio.to_thread(accounts.add_user, "alice", "new-password-1", update=True)
        assert not await opens(alice_phone)
        _, fresh = await logged_in("alice", "new-password-1")
        assert await opens(fresh)
        await asyncio.to_thread(accounts.remove_user, "bob")
        assert not await opens(bob_token)
        for client in (alice, bob):
            await client.aclose()

    asyncio.run(scenario())


# ---------------------------------------------------------------------- logins


def test_every_account_source_costs_one_scrypt(home, monkeypatch):
    """An unknown name, a file account and an environment account each take one scrypt check: the answer's time
    does not tell which names exist."""
    accounts.add_user("alice", "wonderland-42")
    monkeypatch.setenv(accounts.USERS_ENV, "bob:builder-0077")
    accounts.prepare_accounts()  # hashes the environment accounts up front
    calls = []
    real = accounts._scrypt
    monkeypatch.setattr(accounts, "_scrypt", lambda *a, **k: calls.append(1) or real(*a, **k))
    for name, password, ok in (("alice", "wonderland-42", True), ("alice", "guess", False),
                               ("bob", "builder-0077", True), ("bob", "guess", False), ("mallory", "guess", False)):
        calls.clear()
        assert (accounts.check_password(name, password) is not None) == ok
        assert len(calls) == 1, (name, password)


def test_a_guesser_elsewhere_cannot_lock_a_user_out(home, monkeypatch):
    now = [1000.0]
    throttle = accounts.LoginThrottle(max_failures=3, window_s=60, lockout_s=30, max_per_address=5,
                                      max_global=8, global_window_s=10, clock=lambda: now[0])
    monkeypatch.setattr(accounts, "login_throttle", throttle)
    accounts.add_user("alice", "wonderland-42")
    for _ in range(3):
        assert accounts.authenticate("alice", "guess", "10.0.0.66") is None
    assert accounts.authenticate("alice", "wonderland-42", "10.0.0.66") is None  # that address is locked out
    assert accounts.authenticate("alice", "wonderland-42", "10.0.0.7").identifier == "alice"  # hers is not
    # One address trying many names is stopped after max_per_address failures in all.
    for name in ("n1", "n2"):
        assert accounts.authenticate(name, "guess", "10.0.0.66") is None
    assert throttle.locked_for("n3", "10.0.0.66") == 30 and throttle.locked_for("n3", "10.0.0.8") == 0
    # Guessers spread over many addresses meet the global bound (8 failures within 10 s), which lifts as the
    # oldest failures leave the window.
    for n in range(3):
        now[0] += 1
        assert accounts.authenticate(f"m{n}", "guess", f"10.0.1.{n}") is None
    assert throttle.locked_for("alice", "10.0.0.7") == pytest.approx(10 - 3)
    now[0] += 8
    assert throttle.locked_for("alice", "10.0.0.7") == 0
