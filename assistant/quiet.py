"""Hugging Face libraries without progress bars and tokenizer fork warnings, for output people read.

The advisor's command, the chat and the benchmarks call this before they load models; the libraries read
the environment when they start, so it runs first.
"""

from __future__ import annotations

import os


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging  # seconds to import: only when called

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        pass
