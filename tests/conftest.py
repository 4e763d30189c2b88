"""Shared fixtures: one knowledge base and one Advisor (real Chroma, real MiniLM) per test session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite runs offline whatever keys the machine has: a key in the environment (or in a .env that Chainlit
# loads in a chat subprocess; load_dotenv never overrides a variable that is set, even to "") would switch
# the chat and the evaluation judge to an API this machine cannot reach. Tests that want a backend set one.
for _key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
    os.environ[_key] = ""
os.environ.pop("OPENAI_BASE_URL", None)


@pytest.fixture(scope="session")
def tunewise_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("tunewise-home")
    os.environ["TUNEWISE_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def knowledge():
    from assistant.knowledge import load_knowledge

    return load_knowledge()


@pytest.fixture(scope="session")
def advisor(knowledge, tunewise_home):
    from assistant.recommend import Advisor

    return Advisor(knowledge)


@pytest.fixture(scope="session")
def extractor(knowledge):
    from assistant.extract import RegexExtractor

    return RegexExtractor(knowledge)


@pytest.fixture(scope="session")
def smol_tokenizer(tunewise_home):
    """The bundled SmolLM2 tokenizer (from the GGUF once, then from the cached folder)."""
    from executor.models.registry import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def shared_datasets():
    """../shared/datasets, or the slice of it the repository ships when it is absent (tests/real_data.py)."""
    import real_data

    return real_data.ROOT


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smol_tokenizer):
    """A tiny random Llama with the SmolLM2 tokenizer, saved once: the model of every queue, chat and launch test."""
    from executor.models.loader import tiny_llama

    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_llama(smol_tokenizer).save_pretrained(folder)
    smol_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def _fresh_login_throttle(monkeypatch):
    """Wrong passwords in one test must not lock a user name out in the next (the throttle is per process)."""
    import sys

    accounts = sys.modules.get("assistant.chat.accounts")
    if accounts is not None:
        monkeypatch.setattr(accounts, "login_throttle", accounts.LoginThrottle())


@pytest.fixture(scope="session")
def write_finished_run():
    """Fills a folder with a finished run's files: its validation loss bottoms out at epoch 2 and rises after
    while training loss keeps falling; a classification report of 50 rows; 10 evaluated examples."""
    return _write_finished_run


def _metric(value, low, high, n=50):
    return {"value": value, "ci_low": low, "ci_high": high, "n": n}


def _write_finished_run(folder: Path) -> Path:
    log = [
        {"step": 10, "epoch": 0.5, "loss": 2.4}, {"step": 20, "epoch": 1.0, "loss": 1.9},
        {"step": 20, "epoch": 1.0, "eval_loss": 1.8}, {"step": 30, "epoch": 1.5, "loss": 1.3},
        {"step": 40, "epoch": 2.0, "loss": 1.0}, {"step": 40, "epoch": 2.0, "eval_loss": 1.5},
        {"step": 50, "epoch": 2.5, "loss": 0.6}, {"step": 60, "epoch": 3.0, "loss": 0.3},
        {"step": 60, "epoch": 3.0, "eval_loss": 1.65},
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    report = {
        "run_dir": str(folder), "task": "classification", "n": 50, "technique": "lora",
        "base_model": "smollm2-135m-instruct", "headline_metric": "accuracy",
        "systems": {"base": {"accuracy": _metric(0.1, 0.04, 0.18)},
                    "zero_shot": {"accuracy": _metric(0.5, 0.36, 0.64)},
                    "few_shot": {"accuracy": _metric(0.3, 0.18, 0.42)},
                    "tuned": {"accuracy": _metric(0.62, 0.48, 0.74)}},
        "regressions": 2, "improvements": 27, "worst_regressions": [7, 3],
    }
    (folder / "report.json").write_text(json.dumps(report))
    examples = [{"index": i, "input": f"message {i}", "reference": "refund", "base": "refund" if i in (3, 7) else "x",
                 "tuned": "card" if i in (3, 7) else "refund", "base_score": 1.0 if i in (3, 7) else 0.0,
                 "tuned_score": 0.0 if i in (3, 7) else 1.0} for i in range(10)]
    (folder / "eval_examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    return folder
