"""The Conversation on its own, without Chainlit: uploads, launch checks, a run's outcome, cancel, resume, the
playground's votes and the settings panel all return replies that app.py only renders (issue #16)."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from assistant.chat import backends, conversation, followups, results
from assistant.chat.conversation import Conversation
from assistant.chat.launch import view_from_store
from executor.runs.store import RunStore

ORDERS = ("We want a model that answers customer questions about their orders in our house style. We have 3,000 "
          "question and answer pairs and no GPU.")


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


@pytest.fixture
def talk(advisor, knowledge, store):
    """A conversation of `user` (alice unless named) on the test store, with a seeded choice of examples."""
    def make(user="alice", state=None):
        return Conversation(advisor, backends.make_backend("offline", knowledge), state, user=user, store=store,
                            rng=random.Random(3))
    return make


@pytest.fixture
def finished(store, tmp_path, write_finished_run):
    """A succeeded run of alice's, with its report and evaluated examples on disk."""
    run_id = store.submit("approach: fine_tuning\n", owner="alice", runs_root=tmp_path / "runs")
    run_dir = tmp_path / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    write_finished_run(run_dir)
    store.finish(run_id, "succeeded")
    return run_id, run_dir


def orders_file(folder, n=30):
    path = folder / "orders.jsonl"
    rows = [{"instruction": f"Where is order {1000 + i}?", "output": f"Order {1000 + i} ships on day {i % 5 + 1}."}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def buttons(reply) -> list[str]:
    return [b.name for b in reply.buttons]


# ---------------------------------------------------------------------- data


def test_an_upload_is_kept_in_the_users_folder_prepared_and_remembered(talk, tmp_path, tunewise_home):
    conv = talk()
    [reply] = conv.upload("orders.jsonl", orders_file(tmp_path))
    out_dir = tunewise_home / "uploads" / "alice" / "prepared" / "orders.jsonl"
    report = json.loads((out_dir / "report.json").read_text())
    assert reply.content.startswith("### Data: orders.jsonl")
    assert f"**{report['input_rows']:,}** rows read → **{report['kept']:,}** kept" in reply.content
    assert reply.step == "30 rows kept of 30" and buttons(reply) == [conversation.PILOT_ACTION,
                                                                     conversation.LAUNCH_ACTION]
    assert [a.name for a in reply.attachments] == (["distributions"] if (out_dir / "report.png").exists() else [])
    assert (tunewise_home / "uploads" / "alice" / "orders.jsonl").exists()
    # The prepared data is part of the state, so a resumed thread launches on it.
    again = talk(state=json.loads(json.dumps(conv.to_state())))
    assert again.data == conv.data and again.data["out_dir"] == str(out_dir) and again.data["kept"] == 30


def test_an_upload_that_is_not_a_dataset_is_refused_with_the_reason(talk, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    [reply] = talk().upload("notes.txt", notes)
    assert reply.content == ("I could not take that file: notes.txt: upload a dataset file "
                             "(.jsonl, .json, .csv, .tsv, .parquet)")
    assert reply.step == "refused"


def test_an_upload_the_pipeline_rejects_says_why_and_keeps_no_data(talk, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    conv = talk()
    [reply] = conv.upload("empty.jsonl", empty)
    assert reply.content.startswith("The data could not be prepared: ") and conv.data is None


def test_an_upload_that_expands_past_the_budget_is_refused(talk, tmp_path):
    """A 100 MB upload limit counts compressed bytes: a tiny Parquet file of 50,000 identical 10 KB strings
    decodes to 512 MB; the chat refuses it at its decoded budget instead of filling memory and disk (#17)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from assistant.chat.data_upload import UPLOAD_DECODED_BUDGET

    bomb = tmp_path / "bomb.parquet"
    text = pa.array(["x" * 10_000] * 50_000).dictionary_encode()
    pq.write_table(pa.table({"text": text}), bomb, compression="zstd")
    assert bomb.stat().st_size < 100_000
    conv = talk()
    [reply] = conv.upload("bomb.parquet", bomb)
    assert reply.content.startswith("The data could not be prepared: bomb.parquet: more than 256 MiB of decoded")
    assert UPLOAD_DECODED_BUDGET == 256 << 20 and conv.data is None


# ---------------------------------------------------------------------- launch, cancel, outcome, resume


def test_launch_checks_come_before_the_run(talk):
    conv = talk()
    assert conv.launch()[0].content == "Describe your use case first; the run follows the recommended plan."
    conv.describe(ORDERS)
    conv.recommend_now()
    [reply] = conv.launch()
    assert reply.content == "A run needs data: upload a dataset first." and buttons(reply) == [
        conversation.UPLOAD_ACTION]
    assert conv.run_id is None


def test_launch_queues_the_plan_with_the_users_settings_and_data(talk, store, tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("TUNEWISE_MODEL_DIRS", str(tiny_model_dir))  # a folder the admin lists
    started = []
    monkeypatch.setattr(conversation.autostart, "ensure_worker", lambda: started.append(True))
    conv = talk()
    conv.describe(ORDERS)
    conv.recommend_now()
    conv.set_command({"base_model": str(tiny_model_dir), "max_steps": "3", "eval_limit": "4"})
    conv.upload("orders.jsonl", orders_file(tmp_path))
    [reply] = conv.launch()
    run = store.get(conv.run_id)
    plan = yaml.safe_load(run["plan"])
    assert reply.content.startswith(f"Launched run `{conv.run_id}` with:")
    assert run["owner"] == "alice" and run["status"] == "queued" and started == [True]
    assert plan["data"]["path"] == conv.data["out_dir"] and plan["training"]["max_steps"] == 3
    assert plan["evaluation"]["max_rows"] == 4 and plan["base_model"]["path"] == str(tiny_model_dir)


def test_another_users_run_and_an_unknown_one_get_the_same_answer(talk, store, finished):
    run_id, _ = finished
    bob = talk("bob")
    assert [r.content for r in bob.cancel(run_id)] == [f"Cannot cancel: {run_id}: no such run among your runs"]
    assert [r.content for r in bob.cancel("nope")] == ["Cannot cancel: nope: no such run among your runs"]
    bob.run_id = run_id  # a tampered state does not open alice's files either
    assert bob.run_dir() is None and bob.play_example()[0].content == "This run has no evaluated examples to compare."
    replies, follow = bob.resume()
    assert follow is None and replies[0].content == (
        f"The run of this chat is not available: {run_id}: no such run among your runs")


def test_cancel_of_ones_own_queued_run(talk, store, tmp_path):
    run_id = store.submit("approach: fine_tuning\n", owner="alice", runs_root=tmp_path)
    assert [r.content for r in talk().cancel(run_id)] == [f"Run `{run_id}`: cancelled."]
    assert store.get(run_id)["status"] == "cancelled"


def test_the_outcome_of_a_succeeded_run_shows_its_report_and_offers_the_ab(talk, store, finished):
    run_id, run_dir = finished
    conv = talk()
    [reply] = conv.outcome(view_from_store(store, run_id))
    found = results.RunResults.load(run_dir)
    assert reply.content == "\n\n".join([f"Run `{run_id}` finished. {results.training_markdown(found.metrics)}",
                                         results.report_markdown(found.report)])
    assert buttons(reply) == [conversation.PLAY_ACTION]


def test_the_outcome_of_a_failed_run_says_why(talk, store, tmp_path):
    run_id = store.submit("approach: fine_tuning\n", owner="alice", runs_root=tmp_path)
    store.finish(run_id, "failed", "CUDA out of memory")
    assert [r.content for r in talk().outcome(view_from_store(store, run_id))] == [
        f"Run `{run_id}` failed: CUDA out of memory."]


def test_resume_shows_an_ended_run_and_follows_a_live_one(talk, store, finished, tmp_path):
    run_id, _ = finished
    conv = talk(state={"run_id": run_id})
    replies, follow = conv.resume()
    assert follow is None and replies[0].content.startswith(f"Run `{run_id}` finished.")
    queued = store.submit("approach: fine_tuning\n", owner="alice", runs_root=tmp_path)
    assert talk(state={"run_id": queued}).resume() == ([], queued)
    assert talk().resume() == ([], None)


# ---------------------------------------------------------------------- playground


def test_an_ab_vote_on_an_evaluated_example_is_recorded_with_the_voter(talk, finished):
    run_id, run_dir = finished
    conv = talk(state={"run_id": run_id})
    assert conv.pick("A")[0].content == "There is no comparison waiting for a vote."
    [shown] = conv.play_example()
    pair = dict(conv.pair)
    assert shown.content.startswith(f"**Prompt** (test example #{pair['index']}): message {pair['index']}")
    assert [b.payload for b in shown.buttons] == [{"picked": "A"}, {"picked": "B"}, {"picked": "tie"}]
    [recorded] = conv.pick("A")
    votes = [json.loads(line) for line in (run_dir / "human_preferences.jsonl").read_text().splitlines()]
    assert [(v["index"], v["choice"], v["who"]) for v in votes] == [(pair["index"], pair["a_is"], "alice")]
    assert recorded.content.startswith(f"Recorded: you preferred the {pair['a_is']} model (A was the "
                                       f"{pair['a_is']} model). Human win rate of tuned over base so far: ")
    assert recorded.content.endswith("over 1 vote.") and conv.pair is None
    assert buttons(recorded) == [conversation.PLAY_ACTION]


def test_the_playground_needs_a_run_and_a_prompt(talk, finished):
    run_id, _ = finished
    assert talk().handle_text("try: where is my order?")[0].content == (
        "The playground needs a finished run: launch one first.")
    assert talk(state={"run_id": run_id}).handle_text("Try:")[0].content == (
        "Type a prompt after `try:` (or with the Playground command).")


# ---------------------------------------------------------------------- settings panel


def test_the_settings_panel_switches_the_backend_and_edits_the_launch_settings(talk):
    conv = talk()
    conv.describe(ORDERS)
    conv.recommend_now()
    panel = {**conv.settings(), "max_steps": 7}
    replies = conv.settings_panel("offline", panel)
    assert conv.edits == {"max_steps": 7} and replies[0].content.startswith("Launch settings:")
    assert conv.settings_panel("offline", {**conv.settings()}) == []  # nothing changed: nothing said


def test_a_local_base_model_must_be_the_users_own_or_listed_by_an_admin(talk, tmp_path, tiny_model_dir,
                                                                        tunewise_home, monkeypatch):
    """A chat user may not train on any folder of the server that holds a config.json (#17)."""
    import shutil

    monkeypatch.delenv("TUNEWISE_MODEL_DIRS", raising=False)
    conv = talk()
    conv.describe(ORDERS)
    conv.recommend_now()
    [refused] = conv.set_command({"base_model": str(tiny_model_dir)})
    assert refused.content == (
        f"Could not set: base_model: {str(tiny_model_dir)!r} is not a catalog model, and local folders are limited "
        "to your uploads, your runs and the folders an admin lists in TUNEWISE_MODEL_DIRS")
    assert "base_model" not in conv.edits
    mine = shutil.copytree(tiny_model_dir, tunewise_home / "uploads" / "alice" / "my-model", dirs_exist_ok=True)
    assert conv.set_command({"base_model": str(mine)})[0].content.startswith("Launch settings:")
    assert conv.edits["base_model"] == str(mine)
    assert talk("bob").model_roots()[0] == tunewise_home / "uploads" / "bob"  # bob's roots hold not alice's folder
    monkeypatch.setenv("TUNEWISE_MODEL_DIRS", str(tiny_model_dir.parent))
    assert conv.set_command({"base_model": str(tiny_model_dir)})[0].content.startswith("Launch settings:")
    assert conv.set_command({"base_model": "smollm2-135m-instruct"})[0].content.startswith("Launch settings:")


# ---------------------------------------------------------------------- questions about the recommendation

QUESTIONS = ["why Llama 8B and not a smaller model?", "Why not just use few-shot prompting?",
             "what does LoRA mean", "How long will the training take?", "Should we use RAG instead?",
             "is 12,000 examples enough?", "Could a 1B model do this", "which GPU would I need?",
             "Do we need to label more data?", "can we run it on a CPU instead?"]
STATEMENTS = ["We have 12,000 labeled messages.", "The data cannot leave our servers.",
              "Our GPU is an RTX 4090 with 24 GB.", "Replies must follow our brand voice",
              "The labels change every month.", "Latency must stay under 200 ms."]


@pytest.mark.parametrize("text", QUESTIONS)
def test_questions_are_told_apart(text):
    assert followups.is_question(text)


@pytest.mark.parametrize("text", STATEMENTS)
def test_statements_are_not_questions(text):
    assert not followups.is_question(text)


def test_a_question_about_the_recommendation_is_answered_and_changes_no_fact(talk):
    """#18: "why Llama 8B and not a smaller model?" was stored as preferred_model = llama-3.1-8b-instruct."""
    conv = talk()
    conv.describe("We route customer messages to one of 77 intents. We have 12,000 labeled messages and one "
                  "24 GB GPU; the data cannot leave our servers.")
    conv.recommend_now()
    facts = conv.interview.profile.model_dump_json()
    rec = conv.recommendation()
    [reply] = conv.handle_text("why Llama 8B and not a smaller model?")
    assert conv.interview.profile.model_dump_json() == facts  # nothing taken as a fact
    assert reply.content.startswith(f"**Recommended:** {conversation.cards.option_name(rec.approach, rec.technique)}"
                                    f" on `{rec.base_model}`")
    # The question is about the model: the answer says which one, why, and which catalog models fit the GPU.
    assert f"**Base model:** {rec.base_model_info['name']}" in reply.content and rec.base_model_info["why"] in \
        reply.content
    assert "on your 24 GB GPU:** SmolLM2-135M-Instruct (0.135B): fits" in reply.content
    assert reply.content.endswith("or use `set field=value`.)")
    # "why?" gets the decision's trace: every reason, every alternative and what would make it win.
    [why] = conv.handle_text("why?")
    assert all(r.text in why.content for r in rec.reasons)
    assert all(a.when_it_wins in why.content for a in rec.alternatives)
    assert conv.interview.profile.model_dump_json() == facts
    # A statement after the card is still a new fact.
    conv.handle_text("The labels change every month.")
    assert conv.interview.profile.model_dump_json() != facts


def test_every_fact_can_be_changed_and_new_marks_what_the_last_message_changed(talk, knowledge):
    """#18: only facts with a question had Change, and every fact of a first reading was "(new)" with no legend."""
    from assistant.chat import interview

    conv = talk()
    facts = conv.describe("We classify support emails into 5 categories. We have 3,000 labeled examples.")[0]
    assert "(new)" not in facts.content
    lines = interview.understood(conv.interview.profile, knowledge)
    assert [b.payload["field"] for b in facts.buttons] == [line.field for line in lines]
    asked = {q.field for q in knowledge.questions}
    plain = next(line for line in lines if line.field not in asked)  # a fact with no question to pick from
    [how] = conv.edit_fact(plain.field)
    assert how.content.startswith(f"**{plain.name}** is now ") and f"`set {plain.field}=VALUE`" in how.content
    again = conv.describe("We have one 24 GB GPU.")[0]
    assert "*(new)*: read from your last message; the other facts were known before it." in again.content
    marked = [row for row in again.content.splitlines() if "(new) |" in row]
    assert marked and all("gpu" in row for row in marked)
    assert "| Task" in again.content and all("Task" not in row for row in marked)


def test_why_not_few_shot_is_answered_with_tunewises_own_measurement(talk, knowledge):
    """#18: "why not just use few-shot prompting?" got a passage about having fewer than ~100 examples; the answer
    for a labeled classification case quotes Tunewise's own Banking77 measurements (knowledge/measurements.yaml)."""
    conv = talk()
    conv.describe("We route customer messages to one of 77 intents. We have 12,000 labeled messages and one "
                  "24 GB GPU.")
    conv.recommend_now()
    [reply] = conv.handle_text("Why not just use few-shot prompting?")
    assert "**Measured by Tunewise on a comparable task:**" in reply.content
    assert "few-shot prompting 7.7% (1,000 test rows)" in reply.content
    assert "the advised LoRA plan (r16, 2 epochs, 291 s of training) 86.3% [85.1%, 87.6%] (3,076 test rows)" \
        in reply.content
    assert [m.id for m in knowledge.measurements] == ["banking77-smollm2-h200", "banking77-smollm2-cpu"]
    # A generation case has no comparable measurement: none is quoted.
    other = talk()
    other.describe("We want a model that writes replies to customers' order emails in our house style. We have "
                   "3,000 past replies.")
    other.recommend_now()
    assert "Measured by Tunewise" not in other.handle_text("why not just prompt a bigger model?")[0].content
