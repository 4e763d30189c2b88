"""The data directory is private (#17): 0700 when made, made private again when found open, and the chat server
writes every file for its own user alone."""

from __future__ import annotations

import os
import stat

from executor.paths import data_dir


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_directory_is_made_private(tmp_path, monkeypatch):
    home = tmp_path / "a" / "home"
    monkeypatch.setenv("TUNEWISE_HOME", str(home))
    assert data_dir() == home and mode(home) == 0o700
    home.chmod(0o755)  # an older Tunewise, or a hand-made folder
    assert data_dir() == home and mode(home) == 0o700


def test_the_chat_server_writes_private_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_USERS", "alice:alice-password")
    import assistant.chat.app  # noqa: F401 - sets the process umask when the chat starts

    previous = os.umask(0o077)
    os.umask(previous)
    assert previous == 0o077
    written = tmp_path / "element.txt"
    written.write_text("alice's notes")
    assert mode(written) == 0o600
