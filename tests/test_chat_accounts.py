"""Chat accounts: scrypt hashes in the users file, TUNEWISE_USERS, the first-run admin, the auth secret, the CLI."""

from __future__ import annotations

import json
import stat

import pytest
import yaml
from typer.testing import CliRunner

from assistant.chat import accounts
from assistant.chat.accounts import AccountError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    for name in (accounts.USERS_ENV, accounts.USERS_FILE_ENV, accounts.AUTH_SECRET_ENV):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_password_hash_is_salted_and_verifies():
    first, second = accounts.hash_password("correct horse"), accounts.hash_password("correct horse")
    assert first != second and "correct horse" not in first  # a fresh salt each time, never the password
    assert first.startswith("scrypt$16384$8$1$")
    assert accounts.verify_password("correct horse", first)
    assert not accounts.verify_password("correct horsE", first)
    assert not accounts.verify_password("correct horse", "scrypt$garbage")
    assert not accounts.verify_password("correct horse", first.replace("scrypt", "md5", 1))


def test_users_file_login_good_and_bad_password(home):
    accounts.add_user("alice", "wonderland-42")
    text = (home / "users.yaml").read_text()
    assert "wonderland-42" not in text and "scrypt$" in text
    assert mode(home / "users.yaml") == 0o600

    user = accounts.authenticate("alice", "wonderland-42")
    assert user is not None and user.identifier == "alice" and user.metadata["role"] == "user"
    assert accounts.authenticate("alice", "wonderland-43") is None
    assert accounts.authenticate("alice", "") is None
    assert accounts.authenticate("mallory", "wonderland-42") is None


def test_add_refuses_duplicates_short_passwords_and_bad_names(home):
    accounts.add_user("alice", "wonderland-42")
    with pytest.raises(AccountError, match="exists; use --update"):
        accounts.add_user("alice", "another-password")
    accounts.add_user("alice", "another-password", update=True, role="admin")
    assert accounts.authenticate("alice", "wonderland-42") is None
    assert accounts.authenticate("alice", "another-password").metadata["role"] == "admin"
    with pytest.raises(AccountError, match="at least 8"):
        accounts.add_user("bob", "short")
    for bad in ("../bob", "bob/x", "", ".hidden", "a b", "x" * 65):
        with pytest.raises(AccountError, match="not allowed"):
            accounts.add_user(bad, "long enough password")


def test_plaintext_or_malformed_users_file_is_refused_with_the_field(home, monkeypatch):
    path = home / "team-users.yaml"
    monkeypatch.setenv(accounts.USERS_FILE_ENV, str(path))
    path.write_text(yaml.safe_dump({"users": {"carol": {"password": "hunter22"}}}))
    with pytest.raises(AccountError, match=r"team-users.yaml: users.carol.password is not a scrypt hash"):
        accounts.authenticate("carol", "hunter22")
    path.write_text("users: [carol]\n")
    with pytest.raises(AccountError, match="team-users.yaml: expected a mapping"):
        accounts.load_users()
    path.write_text(yaml.safe_dump({"users": {"carol": {"password": accounts.hash_password("x" * 8),
                                                        "role": "root"}}}))
    with pytest.raises(AccountError, match="users.carol.role is 'root'"):
        accounts.load_users()


def test_env_users(home, monkeypatch):
    monkeypatch.setenv(accounts.USERS_ENV, "alice:pw1, bob:with:colon")
    assert accounts.authenticate("alice", "pw1").identifier == "alice"
    assert accounts.authenticate("bob", "with:colon").identifier == "bob"
    assert accounts.authenticate("bob", "with") is None
    assert accounts.authenticate("carol", "pw1") is None
    # A name in the users file is decided by the file alone.
    accounts.add_user("alice", "file-password")
    assert accounts.authenticate("alice", "pw1") is None
    assert accounts.authenticate("alice", "file-password").metadata["source"] == "file"
    monkeypatch.setenv(accounts.USERS_ENV, "alice:pw1,bob")
    with pytest.raises(AccountError, match="TUNEWISE_USERS: entry 2 .'bob'. has no password"):
        accounts.env_users()


def test_first_run_creates_admin_once(home, capsys):
    password = accounts.ensure_default_admin()
    assert password and password in capsys.readouterr().err
    saved = home / "admin-password.txt"
    assert saved.read_text().split() == ["admin", password] and mode(saved) == 0o600
    assert accounts.authenticate("admin", password).metadata["role"] == "admin"
    assert password not in (home / "users.yaml").read_text()
    assert accounts.ensure_default_admin() is None  # not on the next start
    assert password not in capsys.readouterr().err


def test_no_default_admin_when_users_exist(home, monkeypatch):
    monkeypatch.setenv(accounts.USERS_ENV, "alice:pw")
    assert accounts.ensure_default_admin() is None
    assert not (home / "users.yaml").exists() and not (home / "admin-password.txt").exists()


def test_auth_secret_generated_once_and_kept_private(home, monkeypatch):
    secret = accounts.ensure_auth_secret()
    path = home / "chainlit-auth-secret"
    assert len(secret) >= 32 and path.read_text().strip() == secret and mode(path) == 0o600
    import os

    assert os.environ[accounts.AUTH_SECRET_ENV] == secret
    monkeypatch.delenv(accounts.AUTH_SECRET_ENV)
    assert accounts.ensure_auth_secret() == secret  # the same one after a restart: sessions survive it
    monkeypatch.setenv(accounts.AUTH_SECRET_ENV, "set-by-the-operator")
    assert accounts.ensure_auth_secret() == "set-by-the-operator"

    monkeypatch.delenv(accounts.AUTH_SECRET_ENV)
    path.chmod(0o644)
    with pytest.raises(AccountError, match="readable by other users .mode 644.: run `chmod 600"):
        accounts.ensure_auth_secret()
    path.chmod(0o600)
    path.write_text("short\n")
    with pytest.raises(AccountError, match="shorter than 32 characters"):
        accounts.ensure_auth_secret()


def test_users_cli_add_list_remove(home, monkeypatch):
    from assistant.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["users", "add", "alice", "--password", "wonderland-42"])
    assert result.exit_code == 0, result.output
    assert "added alice" in result.output
    # Prompted (hidden, with confirmation) when --password is left out.
    result = runner.invoke(app, ["users", "add", "bob", "--role", "admin"], input="builder-007\nbuilder-007\n")
    assert result.exit_code == 0, result.output
    assert "builder-007" not in (home / "users.yaml").read_text()
    assert accounts.authenticate("bob", "builder-007").metadata["role"] == "admin"

    result = runner.invoke(app, ["users", "add", "alice", "--password", "wonderland-42"])
    assert result.exit_code == 2 and "exists; use --update" in result.output

    monkeypatch.setenv(accounts.USERS_ENV, "carol:pw")
    result = runner.invoke(app, ["users", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["name"], r["role"], r["source"]) for r in rows] == [
        ("alice", "user", "file"), ("bob", "admin", "file"), ("carol", "user", "env")]
    assert "wonderland" not in result.output and "scrypt" not in result.output

    result = runner.invoke(app, ["users", "remove", "alice"])
    assert result.exit_code == 0 and accounts.authenticate("alice", "wonderland-42") is None
    result = runner.invoke(app, ["users", "remove", "alice"])
    assert result.exit_code == 2 and "no user 'alice'" in result.output


def test_repeated_wrong_passwords_lock_the_name_out_for_a_while(home, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(accounts, "login_throttle", accounts.LoginThrottle(max_failures=3, window_s=60,
                                                                           lockout_s=30, clock=lambda: now[0]))
    accounts.add_user("alice", "wonderland-42")
    for _ in range(2):
        assert accounts.authenticate("alice", "guess") is None
    assert accounts.authenticate("alice", "wonderland-42").identifier == "alice"  # a success clears the record
    for _ in range(3):
        assert accounts.authenticate("alice", "guess") is None
    assert accounts.authenticate("alice", "wonderland-42") is None  # locked: the right password too
    assert accounts.login_throttle.locked_for("alice") == 30
    assert accounts.authenticate("bob", "guess") is None and accounts.login_throttle.locked_for("bob") == 0
    now[0] += 31
    assert accounts.authenticate("alice", "wonderland-42").identifier == "alice"
    # Failures spread wider than the window never add up to a lockout.
    for _ in range(5):
        assert accounts.authenticate("alice", "guess") is None
        now[0] += 61
    assert accounts.authenticate("alice", "wonderland-42").identifier == "alice"
