"""The chat's plain modules: results Q&A (exact answers from a known run), progress folding, settings, the
interview's parsing and state, the card, the playground's blind pairs and the LLM backends."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from assistant.chat import backends, cards, interview, launch, playground, results


@pytest.fixture
def run_dir(tmp_path, write_finished_run) -> Path:
    return write_finished_run(tmp_path)


def test_why_did_eval_loss_go_up(run_dir):
    answer = results.answer_question("Why did eval loss go up after epoch 2?", results.RunResults.load(run_dir))
    assert answer.text == (
        "Validation loss was lowest at step 40, epoch 2: 1.5000. After that it rose to 1.6500 at step 60, epoch 3 "
        "(+0.1500, 10%). Over the same steps training loss kept falling (1.0000 → 0.3000): the model is fitting the "
        "training split more closely while doing worse on rows it has not seen, which is overfitting. The checkpoint "
        "with the best validation loss is the one kept; fewer epochs, more data, a lower learning rate or a smaller "
        "LoRA rank are the usual remedies.")
    cited = answer.citations[0]
    assert cited.name == "metrics.jsonl" and '{"step": 60, "epoch": 3.0, "eval_loss": 1.65}' in cited.content


def test_eval_loss_that_only_fell_is_said_so(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "metrics.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # drop the rise
    answer = results.answer_question("why did the validation loss increase?", results.RunResults.load(run_dir))
    assert answer.text == ("Validation loss did not go up in this run: it fell from 1.8000 (step 20, epoch 1) to "
                           "1.5000 (step 40, epoch 2), its lowest.")


def test_is_it_better_than_few_shot_prompting(run_dir):
    answer = results.answer_question("Is it better than few-shot prompting?", results.RunResults.load(run_dir))
    assert answer.text == (
        "On the 50 test examples (accuracy, bootstrap 95% confidence intervals):\n"
        "- Against few-shot prompting: tuned 0.620 [0.480, 0.740] vs 0.300 [0.180, 0.420] (accuracy) — yes: the "
        "tuned model is better, and the confidence intervals do not overlap.")
    assert answer.citations[0].name == "report.json"


def test_overlapping_intervals_are_not_called_a_win(run_dir):
    answer = results.answer_question("how does it compare with zero-shot?", results.RunResults.load(run_dir))
    assert answer.text.endswith("Against zero-shot prompting: tuned 0.620 [0.480, 0.740] vs 0.500 [0.360, 0.640] "
                                "(accuracy) — slightly higher, but the intervals overlap: not a clear win on this "
                                "many examples.")


def test_which_examples_got_worse(run_dir):
    answer = results.answer_question("Which examples got worse?", results.RunResults.load(run_dir))
    assert answer.text == (
        "The tuned model scored lower than the base model on 2 of 50 test examples (higher on 27). The worst:\n"
        "- #7: “message 7” — expected “refund”; base said “refund” (score 1), tuned said “card” (score 0).\n"
        "- #3: “message 3” — expected “refund”; base said “refund” (score 1), tuned said “card” (score 0).")
    assert answer.citations[0].name == "eval_examples.jsonl" and '"index": 7' in answer.citations[0].content


def test_other_questions_go_to_the_guidance_with_citations(run_dir, advisor):
    answer = results.answer_question("What rank should LoRA use?", results.RunResults.load(run_dir),
                                     advisor.index.search)
    assert answer.text.startswith("From the guidance:")
    assert answer.citations and all(c.name in answer.text for c in answer.citations)


def test_results_questions_are_told_apart_from_descriptions():
    assert results.is_results_question("Why did eval loss go up after epoch 2?")
    assert results.is_results_question("which examples got worse?")
    assert not results.is_results_question("We have 5,000 labeled support tickets and one 24 GB GPU.")


def test_report_markdown_lists_every_system(run_dir):
    text = results.report_markdown(json.loads((run_dir / "report.json").read_text()))
    assert "| the tuned model | 0.620 [0.480, 0.740] |" in text
    assert "| few-shot prompting | 0.300 [0.180, 0.420] |" in text
    assert "Tuned better than base on 27 examples, worse on 2." in text


# ---------------------------------------------------------------------- progress


def test_run_view_folds_events_into_progress_and_eta():
    view = launch.RunView("r1")
    events = [
        {"id": 1, "time": 100.0, "kind": "status", "data": {"status": "queued"}},
        {"id": 2, "time": 101.0, "kind": "status", "data": {"status": "running"}},
        {"id": 3, "time": 110.0, "kind": "progress", "data": {"step": 10, "total": 50, "epoch": 0.2, "loss": 2.0,
                                                             "tokens_per_second": 1500.0}},
        {"id": 4, "time": 130.0, "kind": "progress", "data": {"step": 30, "total": 50, "epoch": 0.6, "loss": 1.2,
                                                             "tokens_per_second": 1520.4}},
        {"id": 5, "time": 131.0, "kind": "progress", "data": {"step": 30, "total": 50, "eval_loss": 1.4}},
    ]
    for event in events:
        view.fold(event)
    assert view.eta_seconds() == pytest.approx(21.0)  # 20 steps to go at 21 s per 20 steps (evaluation included)
    assert view.markdown() == ("**running** · step 30/50 · epoch 0.60 · loss 1.2000 · eval loss 1.4000 · "
                               "1,520 tokens/s · ETA 21 s")
    fig = view.figure()
    assert [list(t.y) for t in fig.data] == [[2.0, 1.2], [1.4]]
    view.fold({"id": 6, "time": 140, "kind": "eval_progress", "data": {"system": "few_shot", "done": 2, "total": 4}})
    assert view.markdown().endswith("Evaluating on the test split: few-shot prompting 2/4")
    view.fold({"id": 7, "time": 150, "kind": "status", "data": {"status": "failed", "error": "out of memory"}})
    assert view.finished and view.markdown().endswith("Error: out of memory") and "ETA" not in view.markdown()


def test_follow_batches_streams_a_run_until_it_ends(tmp_path):
    import asyncio

    from executor.runs.store import RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.submit("approach: prompting\n", runs_root=tmp_path / "runs")

    async def follow() -> list[list[dict]]:
        batches = []
        async for batch in launch.follow_batches(store, run_id, interval=0.05):
            batches.append(batch)
            if len(batches) == 1:  # the run moves on while the chat follows it
                store.add_event(run_id, "progress", {"step": 1, "total": 2, "loss": 1.5})
                store.add_event(run_id, "progress", {"step": 2, "total": 2, "loss": 1.0})
                store.finish(run_id, "succeeded")
        return batches

    batches = asyncio.run(follow())
    kinds = [[e["kind"] for e in b] for b in batches]
    assert kinds[0] == ["status"] and [k for b in kinds[1:] for k in b] == ["progress", "progress", "status"]
    assert batches[-1][-1]["data"] == {"status": "succeeded"}


def test_settings_edit_the_plan_and_refuse_bad_values(advisor, tmp_path):
    rec = advisor.recommend("We have 3,000 question and answer pairs and no GPU; answers in our house style.")
    assert rec.plan.training is not None
    settings = launch.default_settings(rec.plan)
    assert settings["max_steps"] == launch.CPU_DEMO_MAX_STEPS  # a CPU demo is small by default
    new, problems = launch.update_settings(settings, {"learning_rate": "1e-4", "lora_r": "4", "epochs": "x"})
    assert problems == ["epochs: expected a number, got 'x'"]
    plan = launch.plan_with_settings(rec.plan, new, advisor.knowledge, tmp_path)
    assert plan.training.learning_rate == 1e-4 and plan.training.lora.r == 4 and plan.data.path == str(tmp_path)
    with pytest.raises(launch.LaunchError, match="base_model: 'nope' is neither a catalog model"):
        launch.plan_with_settings(rec.plan, {**new, "base_model": "nope"}, advisor.knowledge, tmp_path)
    with pytest.raises(launch.LaunchError, match="training.per_device_batch_size"):
        launch.plan_with_settings(rec.plan, {**new, "per_device_batch_size": 0}, advisor.knowledge, tmp_path)


# ---------------------------------------------------------------------- interview


def test_what_if_and_set_parsing():
    assert interview.what_if_clause("What if we only had a 12 GB GPU?") == "we only had a 12 GB GPU"
    assert interview.what_if_clause("and suppose the data is sensitive") == "the data is sensitive"
    assert interview.what_if_clause("We have 12 GB") is None
    assert interview.parse_set_command("set gpu_memory_gb=24, learning_rate: 1e-4") == {
        "gpu_memory_gb": "24", "learning_rate": "1e-4"}
    assert interview.parse_fact_value("example_count", "12k") == 12000
    assert interview.parse_fact_value("needs_citations", "yes") is True
    with pytest.raises(ValueError, match="use one of static, periodic, changing"):
        interview.parse_fact_value("knowledge_freshness", "weekly")


def test_facts_are_shown_in_plain_words(knowledge):
    assert interview.show_value(knowledge, "gpu_memory_gb", 24.0) == "24"
    assert interview.show_value(knowledge, "example_count", 2000) == "2,000"  # the count, not its bucket's label
    assert interview.show_value(knowledge, "needs_citations", True) == "Yes"
    assert interview.show_value(knowledge, "knowledge_freshness", "periodic") == "Monthly or quarterly"
    assert interview.show_value(knowledge, "domain", "legal_contracts") == "legal contracts"


def test_answers_outrank_text_and_the_state_round_trips(extractor):
    state = interview.Interview()
    state.describe("We have one 24 GB GPU.", extractor.extract("We have one 24 GB GPU."))
    state.answer("gpu_memory_gb", 80.0)
    changed = state.describe("Actually it is a 16 GB GPU.", extractor.extract("Actually it is a 16 GB GPU."))
    assert "gpu_memory_gb" not in changed and state.profile.gpu_memory_gb.value == 80.0  # the answer stands
    again = interview.Interview.from_state(json.loads(json.dumps(state.to_state())))
    assert again.profile == state.profile and again.asked == ["gpu_memory_gb"]


def test_the_card_names_reasons_estimates_alternatives_and_sources(advisor):
    rec = advisor.recommend("We classify support tickets into 12 categories; 8,000 labeled tickets; one 24 GB GPU.")
    card = cards.recommendation_card(rec)
    assert card.content.startswith(f"### {cards.option_name(rec.approach, rec.technique)}")
    assert all(r.text in card.content for r in rec.reasons)
    assert f"| {cards.memory(rec.estimates)} | {cards.hours(rec.estimates['train_hours'])} |" in card.content
    assert all(cards.option_name(a.approach, a.technique) in card.content for a in rec.alternatives)
    assert [c.name for c in card.citations] == [c.id for c in rec.citations]
    assert rec.citations[0].passage.strip() in card.citations[0].content


# ---------------------------------------------------------------------- playground


def test_blind_pairs_map_the_pick_back_to_the_model(tmp_path):
    pair = playground.blind("hi", "base says", "tuned says", rng=random.Random(1))
    tuned_side = "A" if pair.a_is == "tuned" else "B"
    assert pair.answer(tuned_side) == "tuned says" and pair.choice_for(tuned_side) == "tuned"
    assert pair.choice_for("tie") == "tie"
    rate = playground.record(tmp_path, pair, tuned_side, who="alice")
    rate = playground.record(tmp_path, playground.Pair.from_state(pair.to_state()), "tie", who="bob")
    assert rate["value"] == 0.75 and rate["n"] == 2
    votes = [json.loads(x) for x in (tmp_path / "human_preferences.jsonl").read_text().splitlines()]
    assert [(v["index"], v["choice"], v["who"]) for v in votes] == [(-1, "tuned", "alice"), (-1, "tie", "bob")]
    assert [v["prompt"] for v in votes] == ["hi", "hi"]  # a free prompt's vote keeps the prompt


# ---------------------------------------------------------------------- backends


def test_backends_follow_the_keys(monkeypatch, knowledge):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert backends.available_backends() == ["offline"]
    assert backends.make_backend(None, knowledge).label == "Offline: rules and templates (no API key)"
    with pytest.raises(ValueError, match="backend 'openai' is not available here"):
        backends.make_backend("openai", knowledge)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1")
    assert backends.available_backends() == ["openai", "offline"]
    assert backends.make_backend(None, knowledge).label == "OpenAI gpt-4o-mini at http://127.0.0.1:9999 (LangChain)"


def test_llm_backend_phrases_and_extracts_but_falls_back_offline(knowledge):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from assistant.llm_extract import ExtractedProfile

    class Structured:
        def invoke(self, messages):
            return ExtractedProfile(privacy="sensitive", privacy_quote="patient records")

    backend = backends.Backend("openai", knowledge, structured_llm=Structured(),
                               chat_model=FakeListChatModel(responses=["Use LoRA on SmolLM2: it fits your CPU."]))
    profile = backend.extract("We fine-tune on patient records; we have 2,000 examples.")
    assert profile.privacy.value == "sensitive" and profile.privacy.source == "llm"
    assert profile.example_count.value == 2000  # the regex reading fills what the LLM left
    assert backend.phrase("templated") == "Use LoRA on SmolLM2: it fits your CPU."

    class Broken:
        def invoke(self, messages):
            raise ConnectionError("no network")

    broken = backends.Backend("openai", knowledge, structured_llm=Broken(), chat_model=Broken())
    assert broken.extract("We have 2,000 examples.").example_count.value == 2000
    assert broken.phrase("templated") == "templated"
    assert broken.notes == ["The openai backend failed (ConnectionError); read with the offline rules.",
                            "The openai backend failed to phrase the summary (ConnectionError)."]


def test_the_card_of_a_hosted_api_plan_renders(advisor):
    rec = advisor.recommend("We must use the OpenAI API. We have 5,000 labeled support tickets to classify.")
    assert rec.base_model_info["params_b"] is None  # hosted models publish no size
    card = cards.recommendation_card(rec)
    assert f"**Base model:** {rec.base_model_info['name']} ({rec.base_model_info['license']})" in card.content


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_tables_upload_and_report(tmp_path, suffix, smol_tokenizer):
    from assistant.chat import data_upload

    rows = [{"question": f"Where is order {i}?", "answer": f"It ships on day {i % 5 + 1}."} for i in range(30)]
    rows.append({"question": "Mail me at jo@example.com", "answer": "Done, jo."})
    path = tmp_path / f"orders.{suffix}"
    if suffix == "csv":
        import csv

        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, ["question", "answer"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    prepared = data_upload.prepare_upload(path, tmp_path / "out", tokenizer=smol_tokenizer)
    summary = data_upload.summary_markdown(prepared)
    assert prepared.report["kept"] == 31 and "**31** rows read → **31** kept, **0** rejected" in summary
    assert "**PII redacted:** 1 email" in summary
    assert (tmp_path / "out" / "train.jsonl").exists() and prepared.chart is not None
    with pytest.raises(data_upload.UploadError, match="upload a dataset file"):
        data_upload.prepare_upload(tmp_path / "notes.txt", tmp_path / "out2")


def test_settings_are_plan_paths_and_bad_values_get_the_plans_message(advisor, tmp_path):
    rec = advisor.recommend("We have 3,000 question and answer pairs and no GPU; answers in our house style.")
    settings = {**launch.default_settings(rec.plan), "lora_r": 32, "max_steps": 0, "eval_limit": 5}
    assert launch.plan_overrides(rec.plan, settings, advisor.knowledge)["training.lora.r"] == 32
    plan = launch.plan_with_settings(rec.plan, settings, advisor.knowledge, tmp_path)
    assert (plan.training.lora.r, plan.training.max_steps) == (32, None)  # 0 steps: the whole plan
    assert (plan.evaluation.after_training, plan.evaluation.max_rows) == (True, 5)
    assert not launch.plan_with_settings(rec.plan, {**settings, "eval_limit": 0}, advisor.knowledge,
                                         tmp_path).evaluation.after_training
    with pytest.raises(launch.LaunchError, match=r"^invalid plan: training\.lora\.r: Input should be greater"):
        launch.plan_with_settings(rec.plan, {**settings, "lora_r": 0}, advisor.knowledge, tmp_path)
    # The panel sends every field back, numbers as floats: only real changes are edits.
    panel = {**{k: float(v) if isinstance(v, int) else v for k, v in settings.items()}, "epochs": "7", "backend": "x"}
    assert launch.changed_settings(settings, panel) == {"epochs": "7"}


def test_set_refuses_a_value_the_plan_refuses(advisor, knowledge, monkeypatch):
    from assistant.chat.conversation import Conversation

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    conv = Conversation(advisor, backends.make_backend("offline", knowledge))
    conv.describe("We have 3,000 question and answer pairs and no GPU; answers in our house style.")
    assert conv.recommendation().plan.training.lora is not None
    reply = conv.set_command({"lora_r": "0", "lora_alpha": "64"})[0].content
    assert "Could not set: invalid plan: training.lora.r: Input should be greater than or equal to 1" in reply
    assert conv.edits == {"lora_alpha": 64}


def test_the_backend_label_never_shows_credentials_of_the_endpoint():
    """Every chat user sees the label: the base URL is cut to scheme, host and port (#17)."""
    for url, shown in (("https://alice:s3cret@llm.example.com:8443/v1?api-key=k", "https://llm.example.com:8443"),
                       ("http://127.0.0.1:8000/tenant-7/v1", "http://127.0.0.1:8000"),
                       ("https://llm.example.com:notaport/v1", "a custom endpoint"), ("garbage", "a custom endpoint")):
        label = backends.backend_label("openai", {"OPENAI_BASE_URL": url, "TUNEWISE_OPENAI_MODEL": "m"})
        assert label == f"OpenAI m at {shown} (LangChain)"
