"""The Tunewise chat (Chainlit): thin handlers that turn chat events into calls of plain functions.

    make chat  ->  chainlit run assistant/chat/app.py --host 127.0.0.1 --port 8000 --headless

The conversation logic is conversation.py (and interview, cards, data_upload, launch, results, playground);
accounts, chat history and per-user uploads are accounts.py, persistence.py and uploads.py. Here: Chainlit
objects in and out, the background task that follows a run, and nothing that needs a test of its own logic.
Heavy libraries (torch, transformers, chromadb) load lazily: the advisor is built in a background thread at
start-up, so the page is served at once and the first turn waits only if the advisor is not ready yet.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import chainlit as cl
from chainlit.input_widget import NumberInput, Select, TextInput

from assistant.chat import accounts, backends, conversation, data_upload, launch, persistence, playground, results
from assistant.chat.conversation import Conversation, Reply
from assistant.chat.uploads import store_upload, user_upload_dir
from executor.runs import autostart

log = logging.getLogger("tunewise.chat")
STATE_KEY = "conversation"   # JSON state in the user session (persisted with the thread's metadata)
BACKEND_KEY = "backend"
FOLLOW_INTERVAL_S = 0.5
PLAYGROUND_COMMAND = "Playground"

_advisor: Future = Future()
_playgrounds: dict[str, playground.Playground] = {}


def _build_advisor() -> None:
    try:
        from assistant.quiet import quiet_libraries
        from assistant.recommend import Advisor

        quiet_libraries()
        built = Advisor()
        if not _advisor.done():
            _advisor.set_result(built)
    except BaseException as exc:  # noqa: BLE001 - shown to the user on their first turn
        if not _advisor.done():
            _advisor.set_exception(exc)


async def advisor():
    return await asyncio.wrap_future(_advisor)


def set_advisor(shared) -> None:
    """Use an Advisor built elsewhere (tests and benchmarks share one instead of building another)."""
    if _advisor.done():
        return
    if not _advisor.running():
        _advisor.set_running_or_notify_cancel()
    _advisor.set_result(shared)


def _store():
    from executor.runs.store import RunStore

    return RunStore()


# ------------------------------------------------------------------ start-up, accounts, history

accounts.prepare_accounts()


@cl.on_app_startup
def startup() -> None:
    if not _advisor.running() and not _advisor.done():  # (tests may have set one already)
        _advisor.set_running_or_notify_cancel()
        threading.Thread(target=_build_advisor, name="tunewise-advisor", daemon=True).start()
    autostart.ensure_worker()  # approved plans must not wait for someone to run `tunewise worker`


@cl.password_auth_callback
async def login(username: str, password: str):
    return await asyncio.to_thread(accounts.authenticate, username, password)


@cl.data_layer
def data_layer():
    return persistence.make_data_layer()


# ------------------------------------------------------------------ session helpers


def _user():
    return cl.user_session.get("user")


def _owner() -> str:
    user = _user()
    return getattr(user, "identifier", "") or ""


async def _conversation() -> Conversation:
    conv = cl.user_session.get("_conversation")
    if conv is None:
        name = cl.user_session.get(BACKEND_KEY) or None
        adv = await advisor()
        conv = Conversation(adv, backends.make_backend(name, adv.knowledge), cl.user_session.get(STATE_KEY) or {})
        cl.user_session.set("_conversation", conv)
    return conv


def _save(conv: Conversation) -> None:
    cl.user_session.set(STATE_KEY, conv.to_state())
    cl.user_session.set(BACKEND_KEY, conv.backend.name)


async def _persist_metadata() -> None:
    """Write the session (run id included) into the thread's metadata now, not only at disconnect, so a
    thread resumed after a server restart still finds its run."""
    from chainlit.data import get_data_layer
    from chainlit.socket import persist_user_session

    session = cl.context.session
    if get_data_layer() and session.thread_id and getattr(session, "has_first_interaction", False):
        await persist_user_session(session.thread_id, session.to_persistable())


async def send(reply: Reply) -> cl.Message:
    elements: list[Any] = []
    for a in reply.attachments:
        if a.kind == "image":
            elements.append(cl.Image(name=a.name, path=a.path, display="inline", size="large"))
        else:
            # "page": the id in the text becomes a link to the passage; "side" would force the sidebar open on
            # every message (Chainlit 2.11+) and stack passages in it.
            passage = cl.Text(name=a.name, content=a.content, display="page")
            # Chainlit's SQL data layer reads `props` back with json.loads and fails on the NULL it stores for
            # elements without props, so the passage's page would not open; an empty mapping is stored as "{}".
            passage.props = {}
            elements.append(passage)
    actions = [cl.Action(name=b.name, label=b.label, payload=dict(b.payload)) for b in reply.buttons]
    message = cl.Message(content=reply.content, actions=actions, elements=elements)
    await message.send()
    if reply.refresh_settings:
        await push_settings(await _conversation())
    return message


async def send_all(replies: list[Reply]) -> None:
    for reply in replies:
        await send(reply)


async def push_settings(conv: Conversation) -> None:
    """The settings panel: the language backend and the plan's editable hyperparameters."""
    options = backends.available_backends()
    widgets: list[Any] = [Select(id=BACKEND_KEY, label="Language backend (reads and phrases; the rules decide)",
                                 items={backends.backend_label(o): o for o in options},
                                 initial_value=conv.backend.name)]
    if conv.interview.texts:
        values = conv.settings()
        for s in launch.SETTINGS:
            if s.key not in values:
                continue
            if s.kind == "text" or s.key == "learning_rate":
                widget = TextInput(id=s.key, label=s.label, initial=str(values[s.key]), description=s.description)
            else:
                widget = NumberInput(id=s.key, label=s.label, initial=values[s.key], description=s.description)
            widgets.append(widget)
    await cl.ChatSettings(widgets).send()


# ------------------------------------------------------------------ chat lifecycle


@cl.on_chat_start
async def start() -> None:
    # Greet at once; right after a cold start the advisor may still be loading (the first turn waits for it).
    backend = cl.user_session.get(BACKEND_KEY) or backends.available_backends()[0]
    await cl.context.emitter.set_commands([{"id": PLAYGROUND_COMMAND, "icon": "flask-conical", "button": False,
                                            "description": "Ask the tuned and the base model the same prompt"}])
    await cl.Message(content=f"Hi! Describe your use case and I will recommend how to tune a model for it. "
                             f"(Language backend: {backends.backend_label(backend)}.)").send()
    conv = await _conversation()
    _save(conv)
    await push_settings(conv)


@cl.on_chat_resume
async def resume(thread: dict) -> None:
    """Chainlit restored the session from the thread's metadata; reattach to the thread's run if any."""
    metadata = thread.get("metadata") or {}
    if isinstance(metadata, str):
        import json

        metadata = json.loads(metadata)
    if metadata.get(STATE_KEY):
        cl.user_session.set(STATE_KEY, metadata[STATE_KEY])
    cl.user_session.set("_conversation", None)
    conv = await _conversation()
    await push_settings(conv)
    if conv.run_id:
        try:
            run = await asyncio.to_thread(persistence.get_run_for, _user(), conv.run_id)
        except (KeyError, PermissionError) as exc:
            await cl.Message(content=f"The run of this chat is not available: {exc}").send()
            return
        if run["status"] in ("succeeded", "failed", "cancelled"):
            await show_outcome(conv, conv.run_id, launch.view_from_store(_store(), conv.run_id))
        else:
            start_following(conv.run_id)


@cl.on_settings_update
async def settings_update(settings: dict[str, Any]) -> None:
    conv = await _conversation()
    name = settings.get(BACKEND_KEY)
    if name and name != conv.backend.name:
        conv.backend = backends.make_backend(name, conv.advisor.knowledge)
        await cl.Message(content=f"Language backend: {conv.backend.label}.").send()
    if conv.interview.texts:
        edits = launch.changed_settings(conv.settings(), settings)
        if edits:
            await send_all(conv.set_command({k: str(v) for k, v in edits.items()}))
    _save(conv)


@cl.on_message
async def message(msg: cl.Message) -> None:
    conv = await _conversation()
    files = [e for e in msg.elements or [] if getattr(e, "path", None)]
    text = (msg.content or "").strip()
    if files:
        await handle_upload(conv, files[0].name, Path(files[0].path))
    if msg.command == PLAYGROUND_COMMAND or text.lower().startswith("try:"):
        await play_prompt(conv, text[4:].strip() if text.lower().startswith("try:") else text)
    elif text:
        run_dir = await _run_dir(conv)
        replies = await asyncio.to_thread(conv.handle_text, text, run_dir)
        await send_all(replies)
    _save(conv)


async def _run_dir(conv: Conversation) -> str | None:
    if not conv.run_id:
        return None
    try:
        return (await asyncio.to_thread(persistence.get_run_for, _user(), conv.run_id))["run_dir"]
    except (KeyError, PermissionError):
        return None


# ------------------------------------------------------------------ interview actions


@cl.action_callback(conversation.ANSWER_ACTION)
async def on_answer(action: cl.Action) -> None:
    conv = await _conversation()
    p = action.payload
    await action.remove()
    await cl.Message(content=f"{p['label']}", type="user_message").send()
    await send_all(await asyncio.to_thread(conv.answer, p["field"], p["value"], p.get("label")))
    _save(conv)


@cl.action_callback(conversation.EDIT_ACTION)
async def on_edit_fact(action: cl.Action) -> None:
    conv = await _conversation()
    await send_all(conv.edit_fact(action.payload["field"]))


@cl.action_callback(conversation.RECOMMEND_ACTION)
async def on_recommend_now(action: cl.Action) -> None:
    conv = await _conversation()
    await send_all(await asyncio.to_thread(conv.recommend_now))
    _save(conv)


@cl.action_callback(conversation.KEEP_WHAT_IF_ACTION)
async def on_keep_what_if(action: cl.Action) -> None:
    conv = await _conversation()
    await send_all(await asyncio.to_thread(conv.keep_what_if))
    _save(conv)


@cl.action_callback(conversation.PLAN_ACTION)
async def on_show_plan(action: cl.Action) -> None:
    conv = await _conversation()
    await send_all(conv.show_plan())


# ------------------------------------------------------------------ data


@cl.action_callback(conversation.UPLOAD_ACTION)
async def on_upload(action: cl.Action) -> None:
    conv = await _conversation()
    files = await cl.AskFileMessage(
        content="Upload your dataset (JSONL, JSON, CSV, TSV or Parquet; up to 100 MB). You can also attach it to "
                "any message.", accept=data_upload.ACCEPT_MIME, max_size_mb=100, timeout=600).send()
    if files:
        await handle_upload(conv, files[0].name, Path(files[0].path))
    _save(conv)
    # An ask marks the chat busy again when answered (task_start); an action callback has no task of its own
    # to end that, so the buttons would stay disabled.
    await cl.context.emitter.task_end()


async def handle_upload(conv: Conversation, name: str, path: Path) -> None:
    try:
        data_upload.check_suffix(name)
        stored = await asyncio.to_thread(store_upload, _user(), name, path)
    except (data_upload.UploadError, ValueError) as exc:
        await cl.Message(content=f"I could not take that file: {exc}").send()
        return
    model = conv.settings().get("base_model") if conv.interview.texts else None
    out_dir = user_upload_dir(_user()) / "prepared" / stored.name
    async with cl.Step(name=f"Preparing {name}", type="tool") as step:
        try:
            prepared = await asyncio.to_thread(data_upload.prepare_upload, stored, out_dir, model=model)
        except data_upload.UploadError as exc:
            step.output = str(exc)
            await cl.Message(content=f"The data could not be prepared: {exc}").send()
            return
        step.output = f"{prepared.report['kept']:,} rows kept of {prepared.report['input_rows']:,}"
    conv.upload = prepared.to_state()
    elements = []
    if prepared.chart:
        elements.append(cl.Image(name="distributions", path=str(prepared.chart), display="inline", size="large"))
    actions = [cl.Action(name=conversation.LAUNCH_ACTION, label="Approve & launch", payload={})]
    await cl.Message(content=data_upload.summary_markdown(prepared), elements=elements, actions=actions).send()
    _save(conv)


# ------------------------------------------------------------------ launch and progress


@cl.action_callback(conversation.LAUNCH_ACTION)
async def on_launch(action: cl.Action) -> None:
    conv = await _conversation()
    if not conv.interview.texts:
        await cl.Message(content="Describe your use case first; the run follows the recommended plan.").send()
        return
    if not conv.upload:
        await cl.Message(content="A run needs data: upload a dataset first.", actions=[
            cl.Action(name=conversation.UPLOAD_ACTION, label="Upload a dataset", payload={})]).send()
        return
    settings = conv.settings()
    try:
        plan = launch.plan_with_settings(conv.recommendation().plan, settings, conv.advisor.knowledge,
                                         conv.upload["out_dir"])
        run_id = await asyncio.to_thread(launch.submit_run, _store(), plan, _owner())
        await asyncio.to_thread(autostart.ensure_worker)  # (a worker that died since start-up is replaced)
    except launch.LaunchError as exc:
        await cl.Message(content=f"Not launched: {exc}").send()
        return
    conv.run_id = run_id
    _save(conv)
    await _persist_metadata()
    await cl.Message(content=f"Launched run `{run_id}` with:\n\n{launch.settings_markdown(settings)}").send()
    start_following(run_id)


def start_following(run_id: str) -> asyncio.Task:
    """Follow the run in the background, so the chat stays usable (questions, cancel) while it trains. A session
    that reconnects keeps its follower: it is not started twice for the same run."""
    task = cl.user_session.get("_follow_task")
    if task is not None and not task.done() and cl.user_session.get("_follow_run") == run_id:
        return task
    task = asyncio.create_task(follow_run(run_id))
    cl.user_session.set("_follow_task", task)
    cl.user_session.set("_follow_run", run_id)
    return task


async def follow_run(run_id: str) -> None:
    store = _store()
    view = launch.RunView(run_id)
    cancel = cl.Action(name=conversation.CANCEL_ACTION, label="Cancel run", payload={"run_id": run_id})
    msg = cl.Message(content=f"Run `{run_id}`", actions=[cancel])
    await msg.send()
    step = cl.Step(name=f"Run {run_id}", type="run", parent_id=msg.id, default_open=True)
    step.output = view.markdown()
    await step.send()
    curve, drawn = None, 0

    async def draw(persist: bool) -> None:
        nonlocal curve, drawn
        points = len(view.losses) + len(view.eval_losses)
        if points and (points != drawn or persist):
            drawn = points
            curve = cl.Plotly(name="loss_curve", figure=view.figure(), display="inline", size="large",
                              **({"id": curve.id} if curve else {}))  # the same id: redrawn in place
            await curve.send(for_id=msg.id, persist=persist)  # stored with the thread once, at the end

    async for batch in launch.follow_batches(store, run_id, FOLLOW_INTERVAL_S):
        for event in batch:
            view.fold(event)
        step.output = view.markdown()
        await step.update()
        await draw(persist=False)
    view.status = (await asyncio.to_thread(store.get, run_id))["status"]
    step.output = view.markdown()
    await step.update()
    await draw(persist=True)
    await cancel.remove()
    conv = await _conversation()
    await show_outcome(conv, run_id, view)


async def show_outcome(conv: Conversation, run_id: str, view: launch.RunView) -> None:
    run = await asyncio.to_thread(_store().get, run_id)
    if view.status != "succeeded":
        why = f": {view.error or run.get('error')}" if (view.error or run.get("error")) else ""
        await cl.Message(content=f"Run `{run_id}` {view.status}{why}.").send()
        return
    found = await asyncio.to_thread(results.RunResults.load, run["run_dir"])
    parts = [f"Run `{run_id}` finished. {results.training_markdown(found.metrics)}"]
    elements: list[Any] = []
    loss_png = Path(run["run_dir"]) / "loss_curve.png"
    if found.report is not None:
        parts.append(results.report_markdown(found.report))
        if found.chart:
            elements.append(cl.Image(name="eval_comparison", path=str(found.chart), display="inline", size="large"))
    elif view.evaluation_error:
        parts.append(f"Evaluation failed: {view.evaluation_error}")
    else:
        parts.append("No evaluation was requested for this run (set `eval_limit` above 0 next time).")
    if loss_png.exists():
        elements.append(cl.Image(name="loss_curve.png", path=str(loss_png), display="inline", size="medium"))
    actions = [cl.Action(name=conversation.PLAY_ACTION, label="Compare tuned vs base (A/B)", payload={})] \
        if found.examples else []
    await cl.Message(content="\n\n".join(parts), elements=elements, actions=actions).send()


@cl.action_callback(conversation.CANCEL_ACTION)
async def on_cancel(action: cl.Action) -> None:
    run_id = action.payload["run_id"]
    try:
        await asyncio.to_thread(persistence.get_run_for, _user(), run_id)
    except (KeyError, PermissionError) as exc:
        await cl.Message(content=f"Cannot cancel: {exc}").send()
        return
    state = await asyncio.to_thread(_store().request_cancel, run_id)
    await cl.Message(content=f"Run `{run_id}`: {state}.").send()


# ------------------------------------------------------------------ playground


async def _playground(conv: Conversation) -> tuple[str, playground.Playground] | None:
    run_dir = await _run_dir(conv)
    if run_dir is None:
        await cl.Message(content="The playground needs a finished run: launch one first.").send()
        return None
    if run_dir not in _playgrounds:
        _playgrounds[run_dir] = playground.Playground(run_dir)
    return run_dir, _playgrounds[run_dir]


async def _ask_vote(conv: Conversation, pair: playground.Pair) -> None:
    conv.pair = pair.to_state()
    _save(conv)
    actions = [cl.Action(name=conversation.PICK_ACTION, label=label, payload={"picked": value})
               for label, value in (("A is better", "A"), ("B is better", "B"), ("Tie", "tie"))]
    await cl.Message(content=pair.markdown(), actions=actions).send()


async def play_prompt(conv: Conversation, prompt: str) -> None:
    found = await _playground(conv)
    if found is None:
        return
    if not prompt:
        await cl.Message(content="Type a prompt after `try:` (or with the Playground command).").send()
        return
    _, play = found
    async with cl.Step(name="Tuned and base model answering", type="llm"):
        base, tuned = await asyncio.to_thread(play.answers, prompt)
    await _ask_vote(conv, playground.blind(prompt, base, tuned))


@cl.action_callback(conversation.PLAY_ACTION)
async def on_play_example(action: cl.Action) -> None:
    conv = await _conversation()
    run_dir = await _run_dir(conv)
    examples = results.RunResults.load(run_dir).examples if run_dir else []
    if not examples:
        await cl.Message(content="This run has no evaluated examples to compare.").send()
        return
    await _ask_vote(conv, playground.pair_from_example(random.choice(examples)))


@cl.action_callback(conversation.PICK_ACTION)
async def on_pick(action: cl.Action) -> None:
    conv = await _conversation()
    run_dir = await _run_dir(conv)
    if not conv.pair or run_dir is None:
        await cl.Message(content="There is no comparison waiting for a vote.").send()
        return
    pair = playground.Pair.from_state(conv.pair)
    picked = action.payload["picked"]
    rate = await asyncio.to_thread(playground.record, run_dir, pair, picked, _owner())
    conv.pair = None
    _save(conv)
    chosen = pair.choice_for(picked)
    await cl.Message(content=(
        f"Recorded: {'a tie' if chosen == 'tie' else f'you preferred the {chosen} model'} (A was the {pair.a_is} "
        f"model). Human win rate of tuned over base so far: {rate['value']:.2f} "
        f"[{rate['ci_low']:.2f}, {rate['ci_high']:.2f}] over {rate['n']} vote{'s' if rate['n'] != 1 else ''}."),
        actions=[cl.Action(name=conversation.PLAY_ACTION, label="Another A/B example", payload={})]).send()

