"""Per-user upload folders: `$TUNEWISE_HOME/uploads/<user>/<file>`, with names that cannot leave the folder.

A file name comes from the browser, so it is hostile until cleaned: only its last path component is kept
(after treating '\\' as a separator too), control characters (NUL included) are dropped, leading dots go (no
'..', no hidden files), characters outside a conservative set become '_', Windows device names are
prefixed, and an empty result becomes 'upload'. Writing never follows a symlink and never overwrites: a
second upload of the same name gets a numbered name.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Any

from executor.paths import data_dir

MAX_NAME_BYTES = 200  # well under the 255-byte limit of common filesystems, leaving room for a "-N" suffix
_UNSAFE = re.compile(r"[^\w.+()@\- ]", re.UNICODE)
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


class UploadError(ValueError):
    """An upload that cannot be stored or prepared; the message names the file, why, and what is accepted."""


def user_identifier(user: Any) -> str:
    """The identifier of a Chainlit `User`/`PersistedUser`, or a plain string."""
    identifier = user if isinstance(user, str) else getattr(user, "identifier", None)
    if not isinstance(identifier, str) or not identifier:
        raise UploadError(f"no user identifier in {user!r}")
    return identifier


def safe_filename(name: str) -> str:
    """A file name that stays inside the folder it is joined to (see the module docstring)."""
    name = unicodedata.normalize("NFC", str(name))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")  # NUL, newlines, bidi overrides
    name = _UNSAFE.sub("_", name).strip(" .")  # leading dots: no '..', no hidden files; trailing: Windows drops them
    if not name:
        return "upload"
    if name.partition(".")[0].upper() in _WINDOWS_DEVICES:
        name = "_" + name
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        if not dot or len(ext) > 16:
            stem, ext = name, ""
        suffix = f".{ext}" if ext else ""
        budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
        stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(" .")
        name = (stem or "upload") + suffix
    return name


def safe_dirname(identifier: str) -> str:
    """A folder name for a user: the identifier itself when it is already safe, otherwise the cleaned name plus
    a short hash of the original, so two identifiers never share a folder ('a/b' and 'a_b' stay apart)."""
    cleaned = safe_filename(identifier)
    if cleaned == identifier:
        return identifier
    return f"{cleaned}-{hashlib.sha256(identifier.encode('utf-8')).hexdigest()[:10]}"


def uploads_root() -> Path:
    return data_dir() / "uploads"


def user_upload_dir(user: Any) -> Path:
    """The user's upload folder (created, 0700). Refuses a folder that was replaced by a symlink."""
    root = uploads_root()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / safe_dirname(user_identifier(user))
    if folder.is_symlink():
        raise UploadError(f"{folder} is a symlink; uploads go to real folders only (remove the link)")
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.resolve().parent != root.resolve():
        raise UploadError(f"{folder} resolves outside {root}")
    return folder


def store_upload(user: Any, filename: str, data: bytes | str | os.PathLike) -> Path:
    """Store an upload in the user's folder and return its path.

    `data` is the content (bytes or text) or the path of a file to copy (Chainlit keeps uploads in a
    temporary session folder that is deleted when the session ends)."""
    folder = user_upload_dir(user)
    name = safe_filename(filename)
    stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
    for attempt in range(1000):
        candidate = name if attempt == 0 else f"{stem}-{attempt}{dot}{ext}"
        target = folder / candidate
        try:
            # O_EXCL + O_NOFOLLOW: never overwrite an earlier upload, never write through a planted symlink.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(data, bytes | bytearray):
                    out.write(data)
                elif isinstance(data, str):
                    out.write(data.encode("utf-8"))
                else:
                    with open(data, "rb") as source:
                        shutil.copyfileobj(source, out, length=1 << 20)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target
    raise UploadError(f"{folder}: 1000 uploads named {name!r} already; rename the file")


def list_uploads(user: Any) -> list[Path]:
    """The user's uploaded files, oldest first."""
    folder = user_upload_dir(user)
    files = [p for p in folder.iterdir() if p.is_file() and not p.is_symlink()]
    return sorted(files, key=lambda p: p.stat().st_mtime)


def upload_path_for(user: Any, name: str) -> Path:
    """The path of one of the user's uploads by name; never a path outside their folder."""
    folder = user_upload_dir(user)
    cleaned = safe_filename(name)
    path = folder / cleaned
    if cleaned != name or not path.is_file() or path.is_symlink():
        raise FileNotFoundError(f"no upload named {name!r} for {user_identifier(user)}")
    return path
