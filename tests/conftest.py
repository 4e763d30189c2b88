"""Shared fixtures: one knowledge base and one Advisor (real Chroma, real MiniLM) per test session."""

from __future__ import annotations

import os

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
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    if not root.is_dir():
        pytest.skip("../shared/datasets is not available")
    return root


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
