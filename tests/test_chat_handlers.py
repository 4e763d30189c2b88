"""The chat's handlers through Chainlit's own server paths, without a browser.

A real `WebsocketSession` whose `emit` records what the browser would receive, and Chainlit's own entry
points: `socket.connection_successful` (chat start), `socket.process_message` (a typed message),
`server.call_action` (a clicked button), `socket.change_settings` (the settings panel). So the decorators,
the context, the emitter and the element files are Chainlit's; only the socket is replaced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path

import pytest
import yaml

MANUALS = ("We answer questions from our product manuals in our brand voice. We have 2,000 past support "
           "conversations and one 24 GB GPU. The manuals change every quarter.")
# Not enough to be sure (below the confidence threshold): the interview asks before it answers.
SUPPORT_BOT = ("We want an assistant that answers questions for our support team. The manuals change every "
               "quarter. We have one 24 GB GPU.")
DESCRIPTION = ("We classify customer support emails into 5 categories. We have 3,000 labeled examples and "
               "no GPU, so it must train on a CPU.")


@pytest.fixture(scope="module")
def chat_app(advisor, tunewise_home, tmp_path_factory):
    import os

    import chainlit.config

    chainlit.config.FILES_DIRECTORY = tmp_path_factory.mktemp("chainlit-files")
    # The app prepares accounts when imported: with accounts in the environment it creates no admin file in the
    # shared data directory. The variable is put back afterwards (the scenarios do not log in).
    previous = os.environ.get("TUNEWISE_USERS")
    os.environ["TUNEWISE_USERS"] = "alice:alice-password,bob:bob-password"
    try:
        from assistant.chat import app
    finally:
        if previous is None:
            del os.environ["TUNEWISE_USERS"]
        else:
            os.environ["TUNEWISE_USERS"] = previous

    app.set_advisor(advisor)
    return app


class Browser:
    """What one logged-in browser tab sees: every event Chainlit emits to it, and the answers it gives."""

    def __init__(self, user="alice", thread_id: str | None = None):
        from chainlit.session import WebsocketSession
        from chainlit.user import User

        self.events: list[tuple[str, dict]] = []
        self.files_to_upload: list[dict] = []
        self.session = WebsocketSession(
            id=str(uuid.uuid4()), socket_id=str(uuid.uuid4()), emit=self._emit, emit_call=self._emit_call,
            user_env={}, client_type="webapp", user=User(identifier=user) if isinstance(user, str) else user,
            thread_id=thread_id)
        self.errors: list[str] = []

    async def _emit(self, event: str, data) -> None:
        self.events.append((event, data))

    async def _emit_call(self, event: str, data, timeout):
        self.events.append((f"call:{event}", data))
        if data["spec"]["type"] == "file":
            return [{"id": f["id"]} for f in self.files_to_upload]
        raise AssertionError(f"unexpected ask {data['spec']}")

    # ---------------------------------------------------------------- the user's side
    async def open(self) -> None:
        from chainlit.socket import connection_successful

        self.session.restored = True  # a fresh tab: Chainlit starts the chat
        await connection_successful(self.session.socket_id)
        await self.session.current_task

    async def reconnect(self) -> None:
        """A tab reopening a thread: Chainlit loads it from the data layer and calls on_chat_resume."""
        from chainlit.socket import connection_successful

        await connection_successful(self.session.socket_id)

    async def say(self, text: str, files: list[Path] | None = None, command: str | None = None) -> None:
        from chainlit.socket import process_message

        refs = [{"id": self._file(p)} for p in files or []]
        payload = {"message": {"id": str(uuid.uuid4()), "threadId": self.session.thread_id, "name": "alice",
                               "type": "user_message", "output": text, "createdAt": "",
                               **({"command": command} if command else {})},
                   "fileReferences": refs or None}
        await process_message(self.session, payload)

    def _file(self, path: Path) -> str:
        fid = str(uuid.uuid4())
        self.session.files[fid] = {"id": fid, "name": path.name, "path": path, "size": path.stat().st_size,
                                   "type": "application/octet-stream"}
        return fid

    async def recommend_now(self) -> None:
        """Skip the remaining questions, when the advisor asked any: a confident reading answers at once."""
        if any(e == "action" and a["name"] == "recommend_now" for e, a in self.events):
            await self.click("recommend_now")
        assert any(m.startswith("### ") for m in self.messages()), "no recommendation card was shown"

    async def click(self, name: str, label: str | None = None) -> None:
        """Click the most recent button with this name (and label)."""
        from chainlit.server import call_action
        from chainlit.types import CallActionRequest

        action = next(a for e, a in reversed(self.events)
                      if e == "action" and a["name"] == name and (label is None or a["label"] == label))
        await call_action(CallActionRequest(action=action, sessionId=self.session.id), current_user=None)

    async def upload_via_button(self, path: Path) -> None:
        self.files_to_upload = [{"id": self._file(path)}]
        await self.click("upload_data")

    async def change_settings(self, settings: dict) -> None:
        from chainlit.socket import change_settings

        await change_settings(self.session.socket_id, settings)

    # ---------------------------------------------------------------- what was shown
    def messages(self) -> list[str]:
        """The assistant's messages in the order they appeared, each as it reads now (updates applied)."""
        now: dict[str, str] = {}
        for e, d in self.events:
            if not isinstance(d, dict) or d.get("type") != "assistant_message":
                continue
            if e == "new_message" or (e == "update_message" and d["id"] in now):
                now[d["id"]] = d["output"]
        return list(now.values())

    def last(self, containing: str) -> str:
        return next(m for m in reversed(self.messages()) if containing in m)

    def actions(self) -> list[dict]:
        return [d for e, d in self.events if e == "action"]

    def elements(self, kind: str | None = None) -> list[dict]:
        return [d for e, d in self.events if e == "element" and (kind is None or d["type"] == kind)]

    def element_text(self, element: dict) -> str:
        """The content Chainlit stored for an element (the browser fetches it by its key)."""
        return Path(self.session.files[element["chainlitKey"]]["path"]).read_text(encoding="utf-8")

    def steps(self) -> list[dict]:
        return [d for e, d in self.events if e in ("new_message", "update_message") and d["type"] not in (
            "assistant_message", "user_message")]

    def clear(self) -> None:
        self.events.clear()


class ChainlitErrors(logging.Handler):
    """Chainlit's wrappers log handler exceptions instead of raising them: collect them to fail the test."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def run_chat(chat_app, monkeypatch):
    """Run an async scenario with a browser; fails on any exception Chainlit swallowed."""
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):  # these scenarios are about the offline backend
        monkeypatch.delenv(key, raising=False)
    import chainlit.data
    from chainlit.logger import logger

    handler = ChainlitErrors()
    logger.addHandler(handler)

    def run(scenario, browser: Browser | None = None):
        browser = browser or Browser()
        # The data layer's engine belongs to one event loop; each scenario runs in a fresh one.
        chainlit.data._data_layer, chainlit.data._data_layer_initialized = None, False

        async def main():
            await scenario(browser)

        asyncio.run(main())
        errors = [r.getMessage() + (f"\n{r.exc_text}" if r.exc_text else "") for r in handler.records]
        assert not errors, errors
        return browser

    yield run
    logger.removeHandler(handler)


# ---------------------------------------------------------------------- interview and recommendation


def test_chat_start_shows_the_backend_and_the_settings(run_chat):
    async def scenario(b: Browser):
        await b.open()

    b = run_chat(scenario)
    assert "Language backend: Offline" in b.messages()[-1]
    settings = next(d for e, d in b.events if e == "chat_settings")
    backend = next(w for w in settings if w["id"] == "backend")
    assert backend["initial"] == "offline"
    assert backend["items"] == [{"label": "Offline: rules and templates (no API key)", "value": "offline"}]


def test_interview_asks_decision_changing_questions_then_recommends(run_chat, advisor):
    async def scenario(b: Browser):
        await b.open()
        await b.say(SUPPORT_BOT)
        facts = b.last("What I understood")
        assert "| GPU memory (GB) `gpu_memory_gb` | 24 |" in facts and "(new)" not in facts  # a first reading
        assert "“The manuals change every quarter.”" in facts
        # The questions are exactly the advisor's most decision-changing ones, with their options as buttons.
        first_reading = advisor.recommend(profile=await b_profile(b))
        assert first_reading.confidence < advisor.knowledge.calibration.ask_below
        asked = first_reading.ask_first[:2]
        shown = [m for m in b.messages() if m.startswith("**")]
        assert shown[-2:] == [f"**{q.text}**" for q in asked]
        labels = [a["label"] for a in b.actions() if a["name"] == "answer" and a["payload"]["field"] == asked[0].field]
        assert labels == [o["label"] for o in asked[0].options]
        # Answer the first question with its button: the answer becomes a user fact.
        first = asked[0]
        option = first.options[0]
        await b.click("answer", option["label"])
        profile = await b_profile(b)
        assert getattr(profile, first.field).value == option["value"]
        assert getattr(profile, first.field).source == "user"
        # The answered question shows its answer, and none of its buttons stays clickable (#18).
        removed = [a["label"] for e, a in b.events if e == "remove_action" and a["payload"].get("field") == first.field]
        assert sorted(removed) == sorted(o["label"] for o in first.options)
        updated = [d["output"] for e, d in b.events if e == "update_message"]
        assert f"**{first.text}**\n\n→ {option['label']}" in updated
        await b.click("recommend_now")
        card = b.last("**Why**")
        final = advisor.recommend(SUPPORT_BOT, profile=profile)  # the text steers retrieval
        from assistant.chat.cards import option_name

        assert card.startswith(f"### {option_name(final.approach, final.technique)}")
        assert final.base_model_info["name"] in card
        for reason in final.reasons:
            assert reason.text in card
        # Citations travel as page elements named by their ids, and the ids are in the card's text.
        cited = {e["name"]: e for e in b.elements("text")}
        assert {c.id for c in final.citations} <= set(cited)
        assert all(cid in card and cited[cid]["display"] == "side" for cid in (c.id for c in final.citations))
        first_cited = final.citations[0]
        assert first_cited.passage.strip()[:60] in b.element_text(cited[first_cited.id])
        assert {"Upload a dataset", "Approve & launch"} <= {a["label"] for a in b.actions()}

    run_chat(scenario)


async def b_profile(b: Browser):
    from chainlit.user_session import user_sessions

    from assistant.chat.interview import Interview

    return Interview.from_state(user_sessions[b.session.id]["conversation"]["interview"]).profile


def test_what_if_redecides_and_can_be_kept(run_chat, advisor):
    async def scenario(b: Browser):
        await b.open()
        await b.say(MANUALS)
        await b.recommend_now()
        before = advisor.recommend(profile=await b_profile(b))
        await b.say("What if we only had a 12 GB GPU?")
        text = b.last("**What if**")
        assert text.startswith("**What if** GPU memory (GB): 24 → 12")
        after = advisor.recommend(profile=(await b_profile(b)).with_fact("gpu_memory_gb", 12.0))
        # 12 GB does not hold the 24 GB choice: the right-sized model stays, its base goes to 4 bits (or a
        # smaller model is taken), never a larger one.
        assert (before.base_model, before.technique) != (after.base_model, after.technique)
        assert after.base_model_info["params_b"] <= before.base_model_info["params_b"]
        assert "to **" in text and after.base_model_info["name"] in text
        assert (await b_profile(b)).gpu_memory_gb.value == 24.0  # nothing kept yet
        await b.click("keep_what_if")
        assert (await b_profile(b)).gpu_memory_gb.value == 12.0
        assert after.base_model_info["name"] in b.last("**Why**")
        # A fact is corrected with its own buttons: the question again, then the answer replaces the fact.
        await b.click("edit_fact", "Change: Knowledge changes")
        assert b.messages()[-1] == "**Does the knowledge the model needs change often?** (now: Monthly or quarterly)"
        cards_before = [d for e, d in b.events if e == "update_message" and d["output"].startswith("### ")]
        await b.click("answer", "Daily or faster")
        assert (await b_profile(b)).knowledge_freshness.value == "changing"
        # The interview was over: the one card is updated in place (#18), never posted again.
        assert sum(m.startswith("### ") for m in b.messages()) == 1
        cards_after = [d for e, d in b.events if e == "update_message" and d["output"].startswith("### ")]
        assert len(cards_after) > len(cards_before)

    run_chat(scenario)


def test_set_command_corrects_facts_and_edits_launch_settings(run_chat):
    async def scenario(b: Browser):
        await b.open()
        await b.say(DESCRIPTION)
        await b.recommend_now()
        await b.say("set example_count=12k max_steps=7 learning_rate=3e-4 lora_r=banana")
        reply = b.last("Noted")
        assert "`example_count` = 12,000" in reply
        assert "| Max steps (0 = the whole plan) `max_steps` | 7 |" in reply
        assert "| Learning rate `learning_rate` | 0.0003 |" in reply
        assert "Could not set: lora_r: expected a whole number, got 'banana'" in reply
        settings = [d for e, d in b.events if e == "chat_settings"][-1]
        assert next(w for w in settings if w["id"] == "max_steps")["initial"] == 7
        # The settings panel edits the same values.
        await b.change_settings({"backend": "offline", "max_steps": 9})
        assert "| Max steps (0 = the whole plan) `max_steps` | 9 |" in b.messages()[-1]
        # The panel sends every field back (numbers as floats): unchanged values are not edits.
        panel = [d for e, d in b.events if e == "chat_settings"][-1]
        shown = len(b.messages())
        await b.change_settings({w["id"]: float(w["initial"]) if isinstance(w["initial"], int) else w["initial"]
                                 for w in panel})
        assert len(b.messages()) == shown

    run_chat(scenario)


# ---------------------------------------------------------------------- data


def support_rows(n: int = 40) -> list[dict]:
    rows = [{"instruction": f"Customer {i} asks: where is my order number {1000 + i}?",
             "output": f"Order {1000 + i} ships on day {i % 7 + 1}; you will get a tracking link."} for i in range(n)]
    rows[3]["instruction"] = "Please reply to jane.doe@example.com about order 1003, where is it?"
    rows.append(dict(rows[5]))                       # an exact duplicate
    rows.append({"instruction": "   ", "output": ""})  # empty after cleaning
    return rows


@pytest.fixture
def dataset(tmp_path) -> Path:
    path = tmp_path / "support.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in support_rows()), encoding="utf-8")
    return path


def test_upload_shows_the_preparation_report(run_chat, dataset, tunewise_home):
    async def scenario(b: Browser):
        await b.open()
        await b.say(DESCRIPTION)
        await b.recommend_now()
        await b.upload_via_button(dataset)
        summary = b.last("### Data: support.jsonl")
        out = tunewise_home / "uploads" / "alice" / "prepared" / "support.jsonl"
        report = json.loads((out / "report.json").read_text())
        assert f"**{report['input_rows']:,}** rows read → **{report['kept']:,}** kept" in summary
        assert report["input_rows"] == 42 and report["accounted_for"]
        assert "| duplicate | 1 | line 41: same content as support.jsonl:6 |" in summary
        assert "| empty | 1 | line 42: no text left after cleaning |" in summary
        assert "**PII redacted:** 1 email" in summary
        review = (out / "review.csv").read_text().splitlines()[1].split(",")
        assert "**Review sample** (40 random rows" in summary and f"| 1 | {review[5]} |" in summary
        assert any(e["name"] == "distributions" for e in b.elements("image"))
        # The upload is stored in the user's own folder.
        assert (tunewise_home / "uploads" / "alice" / "support.jsonl").exists()

    run_chat(scenario)


def test_typed_commands_upload_and_reset_do_what_their_buttons_do(run_chat, dataset, tunewise_home):
    """#18: "upload our data" opens the same file dialog as the button; "start over" forgets the use case, and the
    old card loses its buttons while the next description gets a card of its own."""
    async def scenario(b: Browser):
        await b.open()
        await b.say(DESCRIPTION)
        await b.recommend_now()
        b.files_to_upload = [{"id": b._file(dataset)}]
        await b.say("I want to upload our data")
        assert any(e == "call:ask" and d["spec"]["type"] == "file" for e, d in b.events)
        assert b.messages()[-1].startswith("### Data: support")  # (support-1.jsonl when an earlier test kept one)
        card_id = next(d["id"] for e, d in b.events if e == "new_message" and "**Confidence:**" in d["output"])
        removed = len([d for e, d in b.events if e == "remove_action" and d.get("forId") == card_id])
        await b.say("let's start over")
        assert b.messages()[-1].startswith("Started over: the facts, answers, launch settings and uploaded data")
        assert len([d for e, d in b.events if e == "remove_action" and d.get("forId") == card_id]) > removed
        assert session_state(b)["conversation"]["interview"]["texts"] == []
        assert session_state(b)["conversation"]["upload"] is None
        await b.say(MANUALS)
        await b.recommend_now()
        cards = [d["id"] for e, d in b.events if e == "new_message" and "**Confidence:**" in d["output"]]
        assert len(cards) == 2 and cards[-1] != card_id  # a new card, not the forgotten use case's one updated

    run_chat(scenario)


def test_a_non_dataset_upload_is_refused_with_the_reason(run_chat, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")

    async def scenario(b: Browser):
        await b.open()
        await b.say("here is my file", files=[notes])
        assert "I could not take that file: notes.txt: upload a dataset file (.jsonl, .json, .csv, .tsv, .parquet)" \
            in b.messages()

    run_chat(scenario)


# ---------------------------------------------------------------------- launch, progress, results, playground

ORDERS = ("We want a model that answers customer questions about their orders in our house style. We have 3,000 "
          "question and answer pairs and no GPU.")


@pytest.fixture(scope="module")
def worker_lock(tunewise_home):
    """This process is the store's worker (a hand-started one), so the chat's autostart does not start another:
    the tests run the queue themselves with Worker(...).run(once=True)."""
    from executor.runs.autostart import hold_worker_lock

    assert hold_worker_lock()


def session_state(b: Browser) -> dict:
    from chainlit.user_session import user_sessions

    return user_sessions[b.session.id]


async def prepared_launch(b: Browser, tiny_model_dir: Path, dataset: Path, max_steps: int) -> str:
    import os

    os.environ["TUNEWISE_MODEL_DIRS"] = str(tiny_model_dir)  # an admin lists the tiny model's folder (kept: harmless)
    await b.open()
    await b.say(ORDERS)
    await b.recommend_now()
    await b.say(f"set base_model={tiny_model_dir} max_steps={max_steps} eval_limit=4")
    await b.upload_via_button(dataset)
    await b.click("launch_run")
    run_id = session_state(b)["conversation"]["run_id"]
    assert run_id and any(m.startswith(f"Launched run `{run_id}` with:") for m in b.messages())
    return run_id


def run_worker() -> None:
    from executor.runs.store import RunStore
    from executor.runs.worker import Worker

    Worker(RunStore(), heartbeat_seconds=0.2).run(once=True, timeout=600)


@pytest.mark.slow
def test_launch_follows_the_run_then_answers_from_its_report_and_records_a_preference(
        run_chat, dataset, tiny_model_dir, worker_lock):
    from assistant.chat import results

    async def scenario(b: Browser):
        run_id = await prepared_launch(b, tiny_model_dir, dataset, max_steps=4)
        await asyncio.gather(session_state(b)["_follow_task"], asyncio.to_thread(run_worker))
        from executor.runs.store import RunStore

        run = RunStore().get(run_id)
        assert run["status"] == "succeeded" and run["owner"] == "alice"
        plan = yaml.safe_load(run["plan"])  # the launch settings are fields of the stored plan
        evaluation = plan["evaluation"]
        assert evaluation["after_training"] and (evaluation["max_rows"], plan["training"]["max_steps"]) == (4, 4)
        # Live progress: a step per run, updated to the end, and the Plotly loss curve.
        step = [s for s in b.steps() if s["name"] == f"Run {run_id}"][-1]
        assert step["output"].startswith("**succeeded** · step 4/4 · epoch")
        assert "loss " in step["output"]
        curves = [e for e in b.elements("plotly") if e["name"] == "loss_curve"]
        assert curves and len({c["id"] for c in curves}) == 1  # one chart, redrawn in place
        figure = json.loads(b.element_text(curves[-1]))
        metrics = [json.loads(line) for line in Path(run["run_dir"], "metrics.jsonl").read_text().splitlines()]
        assert figure["data"][0]["y"] == [m["loss"] for m in metrics if m.get("loss") is not None]
        # The evaluation report, from the run's own report.json.
        report = json.loads(Path(run["run_dir"], "report.json").read_text())
        finished = b.last(f"Run `{run_id}` finished.")
        assert results.report_markdown(report) in finished and report["n"] == 4
        assert any(e["name"] == "eval_comparison" for e in b.elements("image"))
        # A follow-up question is answered from that report.
        await b.say("Is it better than few-shot prompting?")
        expected = results.compare_systems(results.RunResults.load(run["run_dir"]), "few-shot prompting")
        assert "**Measured in your run:**\n" + expected.text in b.messages()[-1]
        assert any(e["name"] == "report.json" for e in b.elements("text"))
        # A/B on an evaluated example; the vote lands in the run's human preferences.
        await b.click("play_example")
        pair = session_state(b)["conversation"]["pair"]
        assert pair["index"] in range(4) and "Which answer is better?" in b.messages()[-1]
        await b.click("pick", "A is better")
        votes = [json.loads(x) for x in Path(run["run_dir"], "human_preferences.jsonl").read_text().splitlines()]
        assert votes == [{**votes[0], "index": pair["index"], "choice": pair["a_is"], "who": "alice"}]
        assert f"Recorded: you preferred the {pair['a_is']} model" in b.messages()[-1]
        # The playground on a prompt of one's own: both models answer it live; a tie is recorded too.
        await b.say("try: Where is my order 1003?")
        assert b.messages()[-1].startswith("**Prompt** (your prompt): Where is my order 1003?\n\n| A | B |")
        await b.click("pick", "Tie")
        votes = [json.loads(x) for x in Path(run["run_dir"], "human_preferences.jsonl").read_text().splitlines()]
        assert [(v["index"], v["choice"]) for v in votes][1:] == [(-1, "tie")]
        assert "over 2 votes" in b.messages()[-1]
        await b.say("Where is my order 1004?", command="Playground")  # the composer's Playground command
        assert b.messages()[-1].startswith("**Prompt** (your prompt): Where is my order 1004?")

    run_chat(scenario)


@pytest.mark.slow
def test_cancel_stops_a_running_run(run_chat, dataset, tiny_model_dir, worker_lock):
    from executor.runs.store import RunStore

    async def scenario(b: Browser):
        run_id = await prepared_launch(b, tiny_model_dir, dataset, max_steps=100000)
        store = RunStore()
        worker = asyncio.create_task(asyncio.to_thread(run_worker))
        while not any(e["kind"] == "progress" for e in store.events(run_id)):
            await asyncio.sleep(0.2)
        await b.click("cancel_run")
        assert b.messages()[-1] == f"Run `{run_id}`: cancelling."
        await asyncio.gather(session_state(b)["_follow_task"], worker)
        assert store.get(run_id)["status"] == "cancelled"
        assert b.messages()[-1] == f"Run `{run_id}` cancelled."

    run_chat(scenario)


def test_resumed_thread_reattaches_to_its_run(run_chat, dataset, tiny_model_dir, worker_lock):
    """Leave, come back: Chainlit restores the thread from the data layer and on_chat_resume follows the run."""
    from chainlit.data import get_data_layer
    from chainlit.user import User

    from executor.runs.store import RunStore

    async def scenario(_):
        user = await get_data_layer().create_user(User(identifier="alice"))
        first = Browser(user=user)
        run_id = await prepared_launch(first, tiny_model_dir, dataset, max_steps=2)
        session_state(first)["_follow_task"].cancel()  # the tab is closed
        again = Browser(user=user, thread_id=first.session.thread_id)
        await again.reconnect()
        task = session_state(again)["_follow_task"]
        assert session_state(again)["conversation"]["run_id"] == run_id
        assert RunStore().request_cancel(run_id) == "cancelled"  # still queued: ends at once
        await task
        assert again.messages()[-1] == f"Run `{run_id}` cancelled."
        assert any(s["name"] == f"Run {run_id}" for s in again.steps())

    run_chat(scenario)


def test_another_users_run_cannot_be_cancelled_or_read(run_chat, tunewise_home, tmp_path):
    """Buttons carry their payload through the browser: a crafted cancel for someone else's run is refused."""
    from chainlit.server import call_action
    from chainlit.types import CallActionRequest

    from executor.runs.store import RunStore

    store = RunStore()
    alices = store.submit("approach: prompting\n", owner="alice", runs_root=tmp_path / "runs")

    async def scenario(bob: Browser):
        await bob.open()
        action = {"name": "cancel_run", "payload": {"run_id": alices}, "label": "Cancel run", "id": "x"}
        await call_action(CallActionRequest(action=action, sessionId=bob.session.id), current_user=None)
        assert bob.messages()[-1] == f"Cannot cancel: {alices}: no such run among your runs"
        session_state(bob)["conversation"]["run_id"] = alices  # even a tampered session state
        session_state(bob)["_conversation"] = None
        await bob.say("Is it better than few-shot prompting?")
        assert bob.messages()[-1].startswith("From the guidance:")  # not from her report
        assert store.get(alices)["status"] == "queued"

    run_chat(scenario, Browser(user="bob"))


def test_the_settings_panel_offers_and_switches_the_llm_backend(run_chat, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # set after run_chat cleared the keys: an OpenAI set-up

    async def scenario(b: Browser):
        await b.open()
        panel = [d for e, d in b.events if e == "chat_settings"][-1]
        items = next(w for w in panel if w["id"] == "backend")["items"]
        assert [i["value"] for i in items] == ["openai", "offline"]
        assert "Language backend: OpenAI gpt-4o-mini" in b.messages()[-1]  # the best available is the default
        await b.change_settings({"backend": "offline"})
        assert b.messages()[-1] == "Language backend: Offline: rules and templates (no API key)."
        assert session_state(b)["backend"] == "offline"

    run_chat(scenario)


def test_an_open_socket_stops_working_when_its_session_ends(run_chat, monkeypatch):
    """A tab opened before a logout, a removal or a password change cannot keep using the chat (#17)."""
    from assistant.chat import sessions
    from assistant.chat.app import SESSION_ENDED

    monkeypatch.setenv("TUNEWISE_USERS", "alice:alice-password")
    browser = Browser()
    browser.session.token = sessions.issue(browser.session.user)

    async def scenario(b: Browser):
        await b.open()
        await b.say(DESCRIPTION)
        assert b.messages()[-1] != SESSION_ENDED
        assert sessions.end(b.session.token)
        b.clear()
        await b.say(DESCRIPTION)
        assert b.messages() == [SESSION_ENDED]

    run_chat(scenario, browser)


def test_a_broken_run_store_is_said_not_raised(run_chat, tmp_path, monkeypatch):
    """The run store cannot be read (#17): the chat says so, naming the file and the recovery, without a traceback."""
    from assistant.chat import conversation
    from executor.runs.store import RunStore

    broken = tmp_path / "runs.sqlite"
    broken.write_bytes(b"SQLite format 3\0" + b"\xff" * 4096)  # a header, then garbage

    async def scenario(b: Browser):
        await b.open()
        monkeypatch.setattr(conversation, "RunStore", lambda: RunStore(broken))
        session_state(b)["_conversation"]._store = None
        from chainlit.server import call_action
        from chainlit.types import CallActionRequest

        action = {"name": "cancel_run", "payload": {"run_id": "r-1"}, "label": "Cancel run", "id": "x"}
        await call_action(CallActionRequest(action=action, sessionId=b.session.id), current_user=None)
        said = b.messages()[-1]
        assert said.startswith("Runs are unavailable until an admin repairs the run store: ")
        assert str(broken) in said and "tunewise runs recover" in said

    run_chat(scenario)
