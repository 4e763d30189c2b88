"""Where Tunewise keeps its state (retrieval index, run store, model cache).

One data directory, `TUNEWISE_HOME` or `.tunewise/` at the project root, so a checkout is
self-contained and a team can move state to a bigger disk with one variable.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The data directory, private to its owner (0700): it holds the users' data, runs, chats and secrets."""
    path = Path(os.environ.get("TUNEWISE_HOME") or PROJECT_ROOT / ".tunewise")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = path.stat()
    if found.st_mode & 0o077 and found.st_uid == os.getuid():  # made before, or by hand, with group/other access
        path.chmod(0o700)
    return path
