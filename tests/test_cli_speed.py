"""What the command line's fast paths import (issue #18): the cheap, deterministic side of start-up time.

The timings themselves are in bench/cold_start.py; here each path runs in a fresh interpreter and the test
names the heavy libraries it must not load: `tunewise --help` none of them, `tunewise recommend` (which
retrieves from the Chroma index) neither torch nor transformers (~4-6 s of imports on the 2-core machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "sentence_transformers", "peft", "chromadb", "numpy")


def loaded_after(args: list[str], home: Path) -> list[str]:
    """Run the `tunewise` app with `args` in a new interpreter; the HEAVY modules loaded when it ended."""
    code = (
        "import json, sys\n"
        "from assistant.cli import app\n"
        "try:\n"
        f"    app({args!r})\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.stderr)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "TUNEWISE_HOME": str(home), "HF_HUB_OFFLINE": "1",
           "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_help_loads_no_heavy_library(tmp_path):
    assert loaded_after(["--help"], tmp_path) == []


def test_recommend_loads_neither_torch_nor_transformers(tmp_path):
    loaded = loaded_after(["recommend", "Route 12,000 labeled bank support messages to 77 intents.", "--json"],
                          tmp_path)
    assert "chromadb" in loaded and "numpy" in loaded  # it did retrieve and read by meaning
    assert not {"torch", "transformers", "sentence_transformers", "peft"} & set(loaded), loaded
