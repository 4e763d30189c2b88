"""The assistant's OpenAI backend pointed at `tunewise serve` (OPENAI_BASE_URL): phrasing goes through the
served model over real HTTP; structured extraction, which the server refuses, falls back to the offline rules
with a note instead of ending the conversation."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.chat.backends import make_backend
from assistant.extract import RegexExtractor
from executor.models.loader import tiny_llama
from executor.serve.server import make_engine, start_in_thread

MODEL = "team-model"


class Counting:
    """Wraps the engine's submit to count the requests that reached the served model."""

    def __init__(self, engine):
        self.calls = 0
        self.inner = engine.submit_all

        async def submit_all(requests):
            self.calls += len(requests)
            return await self.inner(requests)

        engine.submit_all = submit_all


@pytest.fixture(scope="module")
def served(tmp_path_factory, smol_tokenizer):
    folder: Path = tmp_path_factory.mktemp("served-model")
    tiny_llama(smol_tokenizer, seed=3).save_pretrained(folder)
    smol_tokenizer.save_pretrained(folder)
    engine = make_engine(str(folder), device="cpu", model_id=MODEL, batch_wait_ms=1)
    counter = Counting(engine)
    handle = start_in_thread(engine, api_key="local-key")
    yield handle, counter
    handle.stop()


@pytest.fixture
def openai_env(served, monkeypatch):
    handle, _ = served
    monkeypatch.setenv("OPENAI_API_KEY", "local-key")
    monkeypatch.setenv("OPENAI_BASE_URL", handle.base_url)
    monkeypatch.setenv("TUNEWISE_OPENAI_MODEL", MODEL)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


def test_phrasing_is_answered_by_the_served_model(openai_env, served, knowledge):
    _, counter = served
    backend = make_backend("openai", knowledge)
    assert MODEL in backend.label and served[0].base_url.removesuffix("/v1") in backend.label  # (host, no path)
    before = counter.calls
    text = backend.phrase("Recommendation: fine-tuning with LoRA on SmolLM2-135M-Instruct.")
    assert backend.notes == [] and isinstance(text, str) and text
    assert counter.calls == before + 1


def test_extraction_falls_back_to_the_rules_with_a_note(openai_env, knowledge):
    backend = make_backend("openai", knowledge)
    text = "We have 5,000 labeled support tickets and one 24 GB GPU; the answers must cite our manuals."
    profile = backend.extract(text)
    assert profile == RegexExtractor(knowledge).extract(text)
    assert len(backend.notes) == 1 and "offline rules" in backend.notes[0]


def test_the_chat_playground_asks_both_models_through_their_servers(tmp_path, smol_tokenizer):
    """A full fine-tuning run (its weights in model/) against its base: the playground starts one server per
    model, reuses them, and each answer is exactly what that server gives any OpenAI client."""
    import json

    import openai

    from assistant.chat.playground import _API_KEY, Playground
    from executor.plan import TrainingPlan
    from executor.serve import server as servers

    base, run = tmp_path / "base", tmp_path / "run"
    tiny_llama(smol_tokenizer, seed=5).save_pretrained(base)
    smol_tokenizer.save_pretrained(base)
    tiny_llama(smol_tokenizer, seed=6).save_pretrained(run / "model")
    smol_tokenizer.save_pretrained(run / "model")
    (run / "plan.yaml").write_text(TrainingPlan.model_validate({
        "approach": "fine_tuning", "technique": "full", "training": {"method": "full"},
        "base_model": {"id": str(base), "source": "local", "path": str(base)},
        "hardware": {"device": "cpu"}}).to_yaml())
    (run / "result.json").write_text(json.dumps({"technique": "full", "weights": "model", "steps": 1}))
    playground = Playground(run, device="cpu")
    base_answer, tuned_answer = playground.answers("Where is my order 1003?", max_new_tokens=8)
    started = {k: v for k, v in servers._running.items() if k[0] in (str(base.resolve()), str(run.resolve()))}
    assert len(started) == 2
    assert playground.answers("Where is my order 1003?", max_new_tokens=8) == (base_answer, tuned_answer)
    assert len([k for k in servers._running if k[0] in (str(base.resolve()), str(run.resolve()))]) == 2
    for key, answer in (((str(base.resolve()), "cpu"), base_answer), ((str(run.resolve()), "cpu"), tuned_answer)):
        handle = servers._running[key]
        direct = openai.OpenAI(base_url=handle.base_url, api_key=_API_KEY, max_retries=0).chat.completions.create(
            model=handle.engine.model_id, messages=[{"role": "user", "content": "Where is my order 1003?"}],
            temperature=0, max_tokens=8)
        assert direct.choices[0].message.content == answer
    assert len({h.base_url for h in started.values()}) == 2  # two servers, one per model
    for key in started:
        servers._running.pop(key).stop()
