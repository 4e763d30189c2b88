"""The Tunewise chat (Chainlit): thin handlers that turn chat events into calls of plain functions.

    make chat  ->  chainlit run assistant/chat/app.py --host 127.0.0.1 --port 8000 --headless

The conversation logic is conversation.py (and interview, cards, data_upload, launch, results, playground);
accounts, chat history and per-user uploads are accounts.py, persistence.py and uploads.py. Here: Chainlit
objects in and out, the background task that follows a run, and nothing that needs a test of its own logic.
Heavy libraries (torch, transformers, chromadb) load lazily: the advisor is built in a background thread at
start-up, so the page is served at once and the first turn waits only if the advisor is not ready yet.

Lazy imports: the advisor (assistant.recommend, with torch and chromadb) is imported in the thread that builds it,
so the page is served at once; chainlit.data and chainlit.socket where a thread's metadata is written.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import chainlit as cl
import jwt
from chainlit.auth import get_token_from_cookies
from chainlit.config import config
from chainlit.input_widget import NumberInput, Select, TextInput
from chainlit.server import app as server_app

from assistant.chat import accounts, backends, conversation, data_upload, guard, launch, page, persistence, sessions
from assistant.chat.conversation import Conversation, Reply
from executor.runs import autostart
from executor.runs.store import StoreError

log = logging.getLogger("tunewise.chat")
STATE_KEY = "conversation"   # JSON state in the user session (persisted with the thread's metadata)
BACKEND_KEY = "backend"
FOLLOW_INTERVAL_S = 0.5
PLAYGROUND_COMMAND = "Playground"
PLAY_STEP = "Tuned and base model answering"
ASKED_KEY = "_asked"  # interview questions on screen with their buttons, by message id
CARD_KEY = "_card"  # the recommendation card on screen (this session's), updated in place

_advisor: Future = Future()


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


# ------------------------------------------------------------------ start-up, accounts, history

os.umask(0o077)  # chats, uploads, prepared data and element files: readable by the server's user alone
accounts.prepare_accounts()
sessions.install(accounts.account_exists)  # tokens that end on logout, removal and password change
page.install()  # nothing on the page loads from outside the server
SESSION_ENDED = "Your session has ended (logged out, or the account was changed or removed): log in again."
if server_app.middleware_stack is None:  # (a server already serving in this process keeps its stack)
    server_app.add_middleware(guard.RequestGuard, allowed_origins=config.project.allow_origins)


@cl.on_app_startup
def startup() -> None:
    if not _advisor.running() and not _advisor.done():  # (tests may have set one already)
        _advisor.set_running_or_notify_cancel()
        threading.Thread(target=_build_advisor, name="tunewise-advisor", daemon=True).start()
    autostart.ensure_worker()  # approved plans must not wait for someone to run `tunewise worker`


@cl.password_auth_callback
async def login(username: str, password: str):
    return await asyncio.to_thread(accounts.authenticate, username, password, guard.client_address.get())


@cl.on_logout
async def logout(request, response):
    """The session's token stops working at once, not only the browser's cookie."""
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    for token in (get_token_from_cookies(dict(request.cookies)), bearer):
        if token:
            await asyncio.to_thread(sessions.end, token)
    return {"success": True}


def live(handler):
    """A handler that first checks that the socket's session is still open: a socket opened before a logout,
    a removal or a password change must not keep reading and writing threads."""
    @functools.wraps(handler)
    async def checked(*args, **kwargs):
        token = getattr(cl.context.session, "token", None)
        if token:
            try:
                await asyncio.to_thread(sessions.check, token, accounts.account_exists)
            except jwt.InvalidTokenError:
                await cl.Message(content=SESSION_ENDED).send()
                return None
        return await handler(*args, **kwargs)
    return checked


@cl.data_layer
def data_layer():
    return persistence.make_data_layer()


# ------------------------------------------------------------------ session helpers


def _user():
    return cl.user_session.get("user")


async def _conversation() -> Conversation:
    conv = cl.user_session.get("_conversation")
    if conv is None:
        name = cl.user_session.get(BACKEND_KEY) or None
        adv = await advisor()
        conv = Conversation(adv, backends.make_backend(name, adv.knowledge), cl.user_session.get(STATE_KEY) or {},
                            user=_user())
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
            elements.append(cl.Image(name=a.name, path=a.path, display="inline", size=a.size))
        else:
            # "side": the id in the text becomes a link that opens the passage beside the chat. Chainlit 2.11+
            # would also open the panel by itself on every message with passages; side_sources.js (page.py)
            # lets it open only on a click.
            passage = cl.Text(name=a.name, content=a.content, display="side")
            # Chainlit's SQL data layer reads `props` back with json.loads and fails on the NULL it stores for
            # elements without props, so the passage's page would not open; an empty mapping is stored as "{}".
            passage.props = {}
            elements.append(passage)
    actions = [cl.Action(name=b.name, label=b.label, payload=dict(b.payload)) for b in reply.buttons]
    if reply.reset:  # started over: the old card stays in the history, without buttons; the next card is new
        old = cl.user_session.get(CARD_KEY)
        if old is not None:
            await old.remove_actions()
        cl.user_session.set(CARD_KEY, None)
    card = cl.user_session.get(CARD_KEY) if reply.card else None
    if card is not None:  # one live recommendation: the card changes in place, its old buttons and sources go
        await card.remove_actions()
        for element in card.elements:
            await element.remove()
        card.content, card.actions, card.elements = reply.content, actions, elements
        await card.update()
        message = card
    else:
        message = cl.Message(content=reply.content, actions=actions, elements=elements)
        await message.send()
        if reply.card:
            cl.user_session.set(CARD_KEY, message)
    if any(b.name == conversation.ANSWER_ACTION for b in reply.buttons):
        asked = cl.user_session.get(ASKED_KEY) or {}
        asked[message.id] = message  # an interview question: once answered, all its buttons go (on_answer)
        cl.user_session.set(ASKED_KEY, asked)
    if reply.refresh_settings:
        await push_settings(await _conversation())
    if reply.ask_upload:  # "upload data" was typed: the same dialog as the Upload button
        await ask_for_upload(await _conversation())
    return message


async def send_all(replies: list[Reply]) -> None:
    for reply in replies:
        await send(reply)


async def reply_to(work, *args, step: str | None = None) -> None:
    """Run a blocking Conversation method off the event loop, optionally inside a progress step, and send
    its replies; the session state is saved after."""
    conv = await _conversation()
    try:
        if step is None:
            replies = await asyncio.to_thread(work, *args)
        else:
            async with cl.Step(name=step, type="tool") as shown:
                replies = await asyncio.to_thread(work, *args)
                shown.output = next((r.step for r in replies if r.step), "")
    except StoreError as exc:  # the run store is unreadable: say so (it names the file and the recovery)
        log.error("%s", exc)
        replies = [Reply(f"Runs are unavailable until an admin repairs the run store: {exc}")]
    await send_all(replies)
    _save(conv)


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
@live
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
@live
async def resume(thread: dict) -> None:
    """Chainlit restored the session from the thread's metadata; reattach to the thread's run if any."""
    metadata = thread.get("metadata") or {}
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    if metadata.get(STATE_KEY):
        cl.user_session.set(STATE_KEY, metadata[STATE_KEY])
    cl.user_session.set("_conversation", None)
    conv = await _conversation()
    await push_settings(conv)
    replies, follow = await asyncio.to_thread(conv.resume)
    await send_all(replies)
    if follow:
        start_following(follow)


@cl.on_settings_update
@live
async def settings_update(settings: dict[str, Any]) -> None:
    conv = await _conversation()
    await reply_to(conv.settings_panel, settings.get(BACKEND_KEY), settings)


@cl.on_message
@live
async def message(msg: cl.Message) -> None:
    conv = await _conversation()
    files = [e for e in msg.elements or [] if getattr(e, "path", None)]
    text = (msg.content or "").strip()
    if files:
        await reply_to(conv.upload, files[0].name, Path(files[0].path), step=f"Preparing {files[0].name}")
    if msg.command == PLAYGROUND_COMMAND:
        await reply_to(conv.play, text, step=PLAY_STEP)
    elif text.lower().startswith(conversation.PLAY_PREFIX):
        await reply_to(conv.handle_text, text, step=PLAY_STEP)
    elif text:
        await reply_to(conv.handle_text, text)


# ------------------------------------------------------------------ interview actions


@cl.action_callback(conversation.ANSWER_ACTION)
@live
async def on_answer(action: cl.Action) -> None:
    conv = await _conversation()
    p = action.payload
    question = (cl.user_session.get(ASKED_KEY) or {}).pop(action.forId, None)
    if question is None:
        await action.remove()
    else:  # the question shows its answer, and none of its buttons stays clickable
        for button in question.actions:
            await button.remove()
        question.actions = []
        question.content += f"\n\n→ {p['label']}"
        await question.update()
    await cl.Message(content=f"{p['label']}", type="user_message").send()
    await send_all(await asyncio.to_thread(conv.answer, p["field"], p["value"], p.get("label")))
    _save(conv)


@cl.action_callback(conversation.EDIT_ACTION)
@live
async def on_edit_fact(action: cl.Action) -> None:
    await reply_to((await _conversation()).edit_fact, action.payload["field"])


@cl.action_callback(conversation.RECOMMEND_ACTION)
@live
async def on_recommend_now(action: cl.Action) -> None:
    await reply_to((await _conversation()).recommend_now)


@cl.action_callback(conversation.KEEP_WHAT_IF_ACTION)
@live
async def on_keep_what_if(action: cl.Action) -> None:
    await reply_to((await _conversation()).keep_what_if)


@cl.action_callback(conversation.PLAN_ACTION)
@live
async def on_show_plan(action: cl.Action) -> None:
    await reply_to((await _conversation()).show_plan)


# ------------------------------------------------------------------ data


@cl.action_callback(conversation.UPLOAD_ACTION)
@live
async def on_upload(action: cl.Action) -> None:
    await ask_for_upload(await _conversation())
    # An ask marks the chat busy again when answered (task_start); an action callback has no task of its own
    # to end that, so the buttons would stay disabled.
    await cl.context.emitter.task_end()


async def ask_for_upload(conv: Conversation) -> None:
    """Ask for a dataset file and prepare it (the Upload button, or "upload data" typed)."""
    files = await cl.AskFileMessage(
        content="Upload your dataset (JSONL, JSON, CSV, TSV or Parquet; up to 100 MB). You can also attach it to "
                "any message.", accept=data_upload.ACCEPT_MIME, max_size_mb=100, timeout=600).send()
    if files:
        await reply_to(conv.upload, files[0].name, Path(files[0].path), step=f"Preparing {files[0].name}")


# ------------------------------------------------------------------ launch and progress


@cl.action_callback(conversation.LAUNCH_ACTION)
@live
async def on_launch(action: cl.Action) -> None:
    await _queue_and_follow("launch")


@cl.action_callback(conversation.PILOT_ACTION)
@live
async def on_pilot(action: cl.Action) -> None:
    await _queue_and_follow("pilot")


async def _queue_and_follow(kind: str) -> None:
    """Approve & launch, or Pilot first: queue the chat's run, remember it in the thread, follow it."""
    conv = await _conversation()
    before = conv.run_id
    await reply_to(conv.pilot if kind == "pilot" else conv.launch)
    if conv.run_id and conv.run_id != before:
        await _persist_metadata()
        start_following(conv.run_id)


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
    conv = await _conversation()
    store = conv.store
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
    await reply_to(conv.outcome, view)


@cl.action_callback(conversation.CANCEL_ACTION)
@live
async def on_cancel(action: cl.Action) -> None:
    await reply_to((await _conversation()).cancel, action.payload["run_id"])


# ------------------------------------------------------------------ playground


@cl.action_callback(conversation.PLAY_ACTION)
@live
async def on_play_example(action: cl.Action) -> None:
    await reply_to((await _conversation()).play_example)


@cl.action_callback(conversation.PICK_ACTION)
@live
async def on_pick(action: cl.Action) -> None:
    await reply_to((await _conversation()).pick, action.payload["picked"])
