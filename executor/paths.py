"""Where Tunewise keeps its state (retrieval index, run store, model cache).

One data directory, `TUNEWISE_HOME` or `.tunewise/` at the project root, so a checkout is
self-contained and a team can move state to a bigger disk with one variable.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    path = Path(os.environ.get("TUNEWISE_HOME") or PROJECT_ROOT / ".tunewise")
    path.mkdir(parents=True, exist_ok=True)
    return path
