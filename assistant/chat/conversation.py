"""One user's conversation with Tunewise, as plain Python: messages in, replies out.

The Chainlit handlers (app.py) turn events into calls here and `Reply` objects into Chainlit messages, so
everything a user can say and every answer can be tested without a UI. The state is JSON (`to_state`),
kept in Chainlit's user session and thread metadata, so a resumed thread continues where it stopped.

    every typed message is first classified (followups.classify, cues in knowledge/followups.yaml):
    a new fact           -> describe the use case (extract, merge, show what was understood, ask or recommend)
    a correction         -> the stated facts replace the known ones ("actually it's 2,000 examples", `set k=v`)
    "what if ..."        -> the decision with the changed facts, next to the current one (kept only on request)
    a question           -> answered from the decision's trace, the recorded measurements and the run's files
    a command            -> done ("start the training", "show the plan", "upload data", "reset", "cancel the run")
    an uploaded file     -> prepared with the plan's tokenizer, its report shown (`upload`)
    Approve & launch     -> the plan queued as a run (`launch`); its end shown by `outcome`
    "try: ..." / A/B     -> the playground: tuned and base answer, the person's vote recorded

Methods that read files, train, or ask a model block: the app calls them off its event loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.chat import (
    backends,
    cards,
    data_upload,
    followups,
    interview,
    launch,
    pilot_view,
    playground,
    results,
    user_runs,
)
from assistant.chat.followups import Understood
from assistant.chat.interview import Interview
from assistant.chat.uploads import UploadError, store_upload, user_identifier, user_upload_dir
from assistant.pilot_advice import Revision, pilot_evidence
from executor.runs import autostart
from executor.runs.store import RunStore

UPLOAD_ACTION = "upload_data"
LAUNCH_ACTION = "launch_run"
PILOT_ACTION = "pilot_run"
CANCEL_ACTION = "cancel_run"
ANSWER_ACTION = "answer"
RECOMMEND_ACTION = "recommend_now"
KEEP_WHAT_IF_ACTION = "keep_what_if"
PLAN_ACTION = "show_plan"
PLAY_ACTION = "play_example"
PICK_ACTION = "pick"
EDIT_ACTION = "edit_fact"
PLAY_PREFIX = "try:"  # a typed prompt for the playground


@dataclass(frozen=True)
class Button:
    name: str
    label: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attachment:
    kind: str                 # "text" (a cited passage, opened from the message) | "image"
    name: str
    content: str | None = None
    path: str | None = None
    size: str = "large"       # of an image: "small" | "medium" | "large"


@dataclass
class Reply:
    content: str
    buttons: list[Button] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    refresh_settings: bool = False  # the launch settings changed: push them to the settings panel
    step: str | None = None  # one line on the work behind this reply, for the progress step that showed it
    card: bool = False  # the recommendation card: one per conversation, updated in place as the advice changes
    ask_upload: bool = False  # "upload data" was typed: the chat opens its file dialog
    reset: bool = False  # the conversation started over: the card on screen is no longer live


def citation_attachments(citations: list[cards.CitationElement]) -> list[Attachment]:
    return [Attachment("text", c.name, c.content) for c in citations]


def per_class_follows(profile, changes: dict[str, tuple[Any, Any]], stated: dict[str, Any]) -> dict[str, tuple]:
    """A corrected example or class count carries the examples per class with it, when that was their quotient
    (as the extractor derives it) and the correction does not state it itself."""
    per_class, classes, count = profile.examples_per_class, profile.class_count, profile.example_count
    if "examples_per_class" in stated or not (per_class.known and classes.known and count.known and classes.value):
        return {}
    if not {"example_count", "class_count"} & set(changes) or per_class.value != count.value // classes.value:
        return {}
    new_count = changes.get("example_count", (None, count.value))[1]
    new_classes = changes.get("class_count", (None, classes.value))[1]
    if not new_classes or new_count // new_classes == per_class.value:
        return {}
    return {"examples_per_class": (per_class.value, new_count // new_classes)}


class Conversation:
    def __init__(self, advisor, backend, state: dict[str, Any] | None = None, *, user: Any = None,
                 store: RunStore | None = None, rng: random.Random | None = None):
        state = state or {}
        self.advisor = advisor
        self.backend = backend
        self.user = user  # the logged-in user: whose uploads and runs these are
        self._store = store
        self.rng = rng or random.Random()  # which evaluated example the A/B button shows
        self.interview = Interview.from_state(state.get("interview"))
        self.edits: dict[str, Any] = dict(state.get("edits") or {})  # launch settings the user changed
        self.data: dict[str, Any] | None = state.get("upload")  # the prepared upload (PreparedUpload.to_state)
        self.run_id: str | None = state.get("run_id")
        self.pilot_id: str | None = state.get("pilot_id")  # this chat's last pilot: its numbers answer questions
        self.what_if: dict[str, Any] | None = state.get("what_if")  # the last hypothetical, until kept or replaced
        self.pair: dict[str, Any] | None = state.get("pair")  # the playground comparison awaiting a vote
        self._rec = None
        self._rec_key = None
        self._stated = None  # (message, what it states): the last message's extraction, read once

    def to_state(self) -> dict[str, Any]:
        return {"interview": self.interview.to_state(), "edits": self.edits, "upload": self.data,
                "run_id": self.run_id, "pilot_id": self.pilot_id, "what_if": self.what_if, "pair": self.pair}

    # ------------------------------------------------------------------ the advice
    def recommendation(self, profile=None):
        profile = profile or self.interview.profile
        key = profile.model_dump_json()
        if profile is not self.interview.profile:
            return self.advisor.recommend(self.interview.text, profile=profile)
        if key != self._rec_key:
            self._rec, self._rec_key = self.advisor.recommend(self.interview.text, profile=profile), key
        return self._rec

    def settings(self) -> dict[str, Any]:
        """The launch settings: the recommended plan's values with the user's edits on top."""
        plan = self.recommendation().plan
        return {**launch.default_settings(plan), **self.edits}

    def card(self) -> Reply:
        rec = self.recommendation()
        intro = self.backend.phrase(cards.summary(rec))
        card = cards.recommendation_card(rec, intro)
        buttons = [Button(UPLOAD_ACTION, "Upload a dataset"), Button(PILOT_ACTION, "Pilot first"),
                   Button(PLAN_ACTION, "Show the plan")]
        if rec.plan.training is not None:
            buttons.insert(2, Button(LAUNCH_ACTION, "Approve & launch"))
        # (A plan that trains nothing has no run to approve, but a pilot measures it on the team's data: whether
        # prompting holds up, and what a short tuned run would add.)
        content = card.content + "".join(f"\n\n> {note}" for note in self.backend.notes)
        return Reply(content, buttons, citation_attachments(card.citations), refresh_settings=True, card=True)

    def _questions_or_card(self) -> list[Reply]:
        rec = self.recommendation()
        asked = self.interview.next_questions(rec.ask_first)
        if not asked:
            self.interview.done = True
            return [self.card()]
        self.interview.mark_asked([q.field for q in asked])
        replies = []
        for n, q in enumerate(asked, start=1):
            buttons = [Button(ANSWER_ACTION, o["label"], {"field": q.field, "value": o["value"], "label": o["label"]})
                       for o in q.options]
            if n == len(asked):
                buttons.append(Button(RECOMMEND_ACTION, "Skip: recommend now"))
            replies.append(Reply(f"**{q.text}**", buttons))
        return replies

    # ------------------------------------------------------------------ turns
    def describe(self, text: str) -> list[Reply]:
        extracted, _ = self.stated(text)
        first = not self.interview.texts
        changed = self.interview.describe(text, extracted)
        knowledge = self.advisor.knowledge
        # "(new)" marks what this message changed in facts known before; in the first reading everything is new.
        facts = interview.understood_markdown(self.interview.profile, knowledge, None if first else changed)
        notes = "".join(f"\n\n> {note}" for note in self.backend.notes)
        lines = interview.understood(self.interview.profile, knowledge)
        if not lines:
            return [Reply(facts + notes)]
        # Every fact can be changed: one with a question offers its options, any other says how to `set` it.
        edits = [Button(EDIT_ACTION, f"Change: {line.name}", {"field": line.field}) for line in lines]
        return [Reply(facts + notes, edits), *self._questions_or_card()]

    def edit_fact(self, field_name: str) -> list[Reply]:
        """A known fact's question again, with its options as buttons (the answer replaces the fact)."""
        question = next((q for q in self.advisor.knowledge.questions if q.field == field_name), None)
        current = getattr(self.interview.profile, field_name).value
        shown = "unknown" if current is None else interview.show_value(self.advisor.knowledge, field_name, current)
        if question is None:
            return [Reply(f"**{interview.FIELD_NAMES.get(field_name, field_name)}** is now {shown}. To change it, type "
                          f"`set {field_name}=VALUE`, or say it in a sentence.")]
        buttons = [Button(ANSWER_ACTION, o.label, {"field": field_name, "value": o.value, "label": o.label})
                   for o in question.options]
        return [Reply(f"**{question.text}** (now: {shown})", buttons)]

    def answer(self, field_name: str, value: Any, label: str | None = None) -> list[Reply]:
        self.interview.answer(field_name, value, label)
        return self._questions_or_card()

    def recommend_now(self) -> list[Reply]:
        self.interview.done = True
        return [self.card()]

    def set_command(self, pairs: dict[str, str]) -> list[Reply]:
        facts, problems = interview.set_facts(self.interview, pairs)
        unknown = [k for k in pairs if k not in facts and k not in launch.SETTING_KEYS
                   and k not in interview.FIELD_NAMES]
        edits = {k: v for k, v in pairs.items() if k in launch.SETTING_KEYS}
        edited = []
        if edits and not self.interview.texts:
            problems.append("describe your use case first: the settings belong to the recommended plan")
        elif edits:
            plan = self.recommendation().plan
            # Where a local base model may be: listed once, and only when the base model is being set.
            roots = self.model_roots() if "base_model" in edits else []
            for key, raw in edits.items():
                try:
                    value = launch.parse_setting(key, raw)
                except launch.LaunchError as exc:
                    problems.append(str(exc))
                    continue
                try:  # checked against the plan now, so a bad value is refused with the plan's own message
                    if plan.training is not None:
                        launch.plan_with_settings(plan, {key: value}, self.advisor.knowledge, None, roots)
                except launch.LaunchError as exc:  # names the plan field (training.lora.r: ...)
                    problems.append(str(exc))
                    continue
                self.edits[key] = value
                edited.append(key)
        lines = []
        if facts:
            knowledge, profile = self.advisor.knowledge, self.interview.profile
            lines.append("Noted: " + ", ".join(
                f"`{f}` = {interview.show_value(knowledge, f, getattr(profile, f).value)}" for f in facts) + ".")
        if edited:
            lines += ["Launch settings:", "", launch.settings_markdown(self.settings())]
        lines += [f"Could not set: {p}" for p in problems]
        if unknown:
            lines.append(f"Unknown name{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. Facts are the names in "
                         f"“What I understood”; launch settings are {', '.join(launch.SETTING_KEYS)}.")
        replies = [Reply("\n".join(lines) or "Nothing to set.", refresh_settings=bool(edited))]
        if facts and self.interview.done:
            replies.append(self.card())
        return replies

    def settings_panel(self, backend: str | None, values: dict[str, Any]) -> list[Reply]:
        """The settings panel was saved: switch the language backend, apply the launch settings that changed."""
        replies = []
        if backend and backend != self.backend.name:
            self.backend = backends.make_backend(backend, self.advisor.knowledge)
            replies.append(Reply(f"Language backend: {self.backend.label}."))
        edits = launch.changed_settings(self.settings(), values) if self.interview.texts else {}
        if edits:
            replies += self.set_command({k: str(v) for k, v in edits.items()})
        return replies

    def ask_what_if(self, clause: str) -> list[Reply]:
        if not self.interview.texts:
            return [Reply("Describe your use case first; then ask “what if …” to see how the advice would change.")]
        hypothetical = self.interview.what_if(clause, self.stated(clause)[0])
        before = self.recommendation()
        after = self.recommendation(hypothetical.profile) if hypothetical.profile is not None else before
        text = interview.what_if_markdown(hypothetical, self.advisor.knowledge, before, after)
        if not hypothetical.changes:
            return [Reply(text)]
        self.what_if = {"clause": clause, "changes": {k: list(v) for k, v in hypothetical.changes.items()}}
        return [Reply(text, [Button(KEEP_WHAT_IF_ACTION, "Make this my situation")],
                      citation_attachments(cards.recommendation_card(after).citations))]

    def keep_what_if(self) -> list[Reply]:
        if not self.what_if:
            return [Reply("There is no “what if” to keep.")]
        changes = {k: tuple(v) for k, v in self.what_if["changes"].items()}
        self.interview.apply(interview.WhatIf(self.what_if["clause"], changes))
        self.what_if = None
        self.interview.done = True
        return [self.card()]

    def show_plan(self) -> list[Reply]:
        plan = self.recommendation().plan
        return [Reply(f"The plan (the one contract between advisor and executor):\n\n```yaml\n{plan.to_yaml()}```")]

    def understand(self, text: str) -> Understood:
        """What the message is (followups.classify); the facts it states are read only when they decide that."""
        described = bool(self.interview.texts) or bool(self.run_id)  # (a run's results can be asked about too)
        known = {f: getattr(self.interview.profile, f).value for f in self.interview.profile.known_fields()}
        return followups.classify(text, followups.cues(self.advisor.knowledge), described=described, known=known,
                                  read=lambda part: self.stated(part)[1],
                                  question_forms=self.advisor.knowledge.lexicon.get("question_forms"))

    def stated(self, text: str):
        """The facts a message states: the backend's extraction, plus followups.yaml's `extra_facts` for fields it
        left unknown. Returns (the extracted profile with those added, {field: value} of what it states)."""
        if self._stated is not None and self._stated[0] == (self.backend.name, text):  # once a message (LLMs cost)
            return self._stated[1]
        extracted = self.backend.extract(text)
        cues = followups.cues(self.advisor.knowledge)
        for name, value in followups.extra_facts(text, cues, set(extracted.known_fields())).items():
            extracted = extracted.with_fact(name, value, "text", text.strip()[:200])
        facts = {f: getattr(extracted, f).value for f in extracted.known_fields() if f not in interview.HIDDEN_FIELDS}
        self._stated = ((self.backend.name, text), (extracted, facts))
        return extracted, facts

    def handle_text(self, text: str) -> list[Reply]:
        """Route a typed message by what it is."""
        understood = self.understand(text)
        if understood.kind == "command":
            return self.command(understood.about, text)
        if understood.kind == "what_if":
            return self.ask_what_if(understood.clause or text)
        if understood.kind == "question":
            return self.explain(text, understood)
        if understood.statement:  # a fact or correction, then a question on the advice it gives
            told = self.correct(understood.statement) if understood.kind == "correction" else self.describe(
                understood.statement)
            return told + self.explain(understood.asked, understood.question)
        if understood.kind == "correction":
            if understood.about == "set":
                return self.set_command(interview.parse_set_command(text) or {})
            return self.correct(text)
        if self.interview.texts and not understood.facts:  # "thanks", "ok": nothing to add, nothing to redraw
            return [Reply("I found no fact in that to add to your use case. State one (“we have 5,000 examples”), "
                          "ask about the advice (“why not RAG?”, “how long will training take?”), try “what if …”, "
                          "or give a command (“show the plan”, “upload data”, “start the training”).")]
        return self.describe(text)

    def command(self, name: str | None, text: str) -> list[Reply]:
        """A typed command: the same as its button."""
        if name == "try":
            return self.play(text.strip()[len(PLAY_PREFIX):].strip())
        if name == "launch":
            return self.launch()
        if name == "pilot":
            return self.pilot()
        if name == "show_plan":
            if not self.interview.texts:
                return [Reply("Describe your use case first; the plan follows from the recommendation.")]
            return self.show_plan()
        if name == "upload":
            return [Reply("Choose the dataset file (JSONL, JSON, CSV, TSV or Parquet), or attach it to any message.",
                          [Button(UPLOAD_ACTION, "Upload a dataset")], ask_upload=True)]
        if name == "reset":
            return self.reset()
        if name == "cancel":
            if not self.run_id:
                return [Reply("There is no run of this chat to cancel.")]
            return self.cancel(self.run_id)
        if name == "recommend":
            if not self.interview.texts:
                return [Reply("Describe your use case first, and I will recommend how to tune a model for it.")]
            return self.recommend_now()
        if name == "compare":
            return self.play_example()
        return [Reply(f"I do not know the command “{text}”.")]

    def reset(self) -> list[Reply]:
        """Start over: the facts, answers, settings, uploaded data and any what-if are forgotten; a run that was
        launched keeps running (it is in the run store) and stays this chat's."""
        self.interview = Interview()
        self.edits, self.data, self.what_if, self.pair = {}, None, None, None
        self._rec = self._rec_key = None
        run = f" Run `{self.run_id}` keeps running; its results stay available here." if self.run_id else ""
        return [Reply("Started over: the facts, answers, launch settings and uploaded data of this chat are "
                      f"forgotten.{run} Describe your use case.", refresh_settings=True, reset=True)]

    def correct(self, text: str) -> list[Reply]:
        """A correction ("no, the data can leave the building"): the facts it states replace the known ones, as the
        user's own word, and the live card shows the new advice."""
        if not self.interview.texts:
            return self.describe(text)
        _, facts = self.stated(text)
        profile = self.interview.profile
        changes = {f: (getattr(profile, f).value, v) for f, v in facts.items() if getattr(profile, f).value != v}
        if not changes:
            lines = interview.understood(profile, self.advisor.knowledge)
            said = "it repeats what I already have" if facts else "I could not tell which fact it corrects"
            return [Reply(f"Nothing changed: {said}. Pick the fact to change, or type `set FIELD=VALUE`.",
                          [Button(EDIT_ACTION, f"Change: {line.name}", {"field": line.field}) for line in lines])]
        changes.update(per_class_follows(profile, changes, facts))
        before = self.recommendation()
        for name, (_, value) in changes.items():
            self.interview.answer(name, value, f"your correction: {' '.join(text.split())[:150]}")
        after = self.recommendation()
        replies = [Reply(followups.change_markdown(self.advisor.knowledge, changes, before, after))]
        return replies + (self._questions_or_card() if not self.interview.done else [self.card()])

    def explain(self, question: str, understood: Understood | None = None) -> list[Reply]:
        """A question about the recommendation ("why Llama 8B and not a smaller model?", "how long will it take?"):
        answered from the decision's own trace, what would make each alternative win, the recorded measurements and,
        after a run, its metrics. Nothing in a question is taken as a fact: the facts change only when the user states
        one or uses `set`."""
        understood = understood or self.understand(question)
        if (about_pilot := pilot_view.answer_about_pilot(question, self.pilot_report())) is not None:
            return [Reply(about_pilot)]  # from the pilot's own numbers
        run_dir = self.run_dir()
        run = results.RunResults.load(run_dir) if run_dir else None
        search = self.advisor.index.search if self.advisor.index is not None else None
        if not self.interview.texts and understood.about != "meaning" or (
                run is not None and understood.about == "why" and results.is_results_question(question)):
            # Nothing described yet: no recommendation to explain, the guidance answers. About the run: its files do.
            answer = results.answer_question(question, run, search)
            return [Reply(answer.text, attachments=citation_attachments(answer.citations))]
        profile = self.interview.profile
        engine = self.advisor.engine
        trace = followups.Trace(self.recommendation(), engine.decide(profile), self.advisor.knowledge, profile,
                                engine.counterfactuals(profile), run, search)
        answer = followups.answer(trace, understood, question)
        return [Reply(answer.text, attachments=citation_attachments(answer.citations))]

    # ------------------------------------------------------------------ data
    def upload(self, name: str, path: str | Path) -> list[Reply]:
        """A dataset file the user sent: kept in their own folder, prepared with the plan's tokenizer."""
        try:
            data_upload.check_suffix(name)
            stored = store_upload(self.user, name, path)
        except (UploadError, ValueError) as exc:
            return [Reply(f"I could not take that file: {exc}", step="refused")]
        model = self.settings().get("base_model") if self.interview.texts else None
        out_dir = user_upload_dir(self.user) / "prepared" / stored.name
        try:
            prepared = data_upload.prepare_upload(stored, out_dir, model=model)
        except UploadError as exc:
            return [Reply(f"The data could not be prepared: {exc}", step=str(exc))]
        self.data = prepared.to_state()
        chart = [Attachment("image", "distributions", path=str(prepared.chart))] if prepared.chart else []
        return [Reply(data_upload.summary_markdown(prepared), [Button(PILOT_ACTION, "Pilot first"),
                                                               Button(LAUNCH_ACTION, "Approve & launch")], chart,
                      step=f"{prepared.report['kept']:,} rows kept of {prepared.report['input_rows']:,}")]

    # ------------------------------------------------------------------ runs
    @property
    def store(self) -> RunStore:
        if self._store is None:
            self._store = RunStore()
        return self._store

    def model_roots(self) -> list[Path]:
        """Where this user's local base models may be: their uploads, their runs, the folders an admin lists."""
        if self.user is None:  # (a conversation outside the chat server has no uploads or runs of its own)
            return launch.admin_model_dirs()
        runs = [Path(r["run_dir"]) for r in user_runs.runs_for(self.user, self.store)]
        return [user_upload_dir(self.user), *runs, *launch.admin_model_dirs()]

    def run_dir(self) -> str | None:
        """The folder of this chat's run, if the user may see it."""
        if not self.run_id:
            return None
        try:
            return user_runs.get_run_for(self.user, self.run_id, self.store)["run_dir"]
        except LookupError:
            return None

    def launch(self, kind: str = "train") -> list[Reply]:
        """Queue the recommended plan, with the user's settings and prepared data, as this chat's run; a `pilot`
        measures the candidates on a sample of the data first (executor/pilot), within its default budget."""
        what = "pilot" if kind == "pilot" else "run"
        if not self.interview.texts:
            return [Reply(f"Describe your use case first; the {what} follows the recommended plan.")]
        if not self.data:
            return [Reply(f"A {what} needs data: upload a dataset first.",
                          [Button(UPLOAD_ACTION, "Upload a dataset")])]
        settings = self.settings()
        try:
            plan = launch.plan_with_settings(self.recommendation().plan, settings, self.advisor.knowledge,
                                             self.data["out_dir"], self.model_roots(), kind=kind)
            run_id = launch.submit_run(self.store, plan, user_identifier(self.user), kind=kind)
        except launch.LaunchError as exc:
            return [Reply(f"Not launched: {exc}")]
        autostart.ensure_worker()  # (a worker that died since start-up is replaced)
        self.run_id = run_id
        if kind == "pilot":
            self.pilot_id = run_id
            return [Reply(f"Pilot `{run_id}` queued: zero-shot and few-shot prompting, then short tuned runs on "
                          "growing samples of your data, each scored on the same test rows with 95% intervals "
                          "(5 minutes on a GPU, 15 on a CPU). The advice is revised from what it measures.")]
        return [Reply(f"Launched run `{run_id}` with:\n\n{launch.settings_markdown(settings)}")]

    def pilot(self) -> list[Reply]:
        return self.launch(kind="pilot")

    def pilot_report(self) -> dict[str, Any] | None:
        """This chat's last finished pilot (pilot.json), if the user may see it."""
        if not self.pilot_id:
            return None
        try:
            return pilot_view.load_pilot(user_runs.get_run_for(self.user, self.pilot_id, self.store)["run_dir"])
        except LookupError:
            return None

    def pilot_outcome(self, run: dict[str, Any]) -> list[Reply]:
        """A finished pilot: its measurements, the advice revised from them (the live card updates in place, the
        verdict a fact marked as new), and the way on."""
        report = pilot_view.load_pilot(run["run_dir"])
        if report is None:
            return [Reply(f"Pilot `{run['id']}` finished without a report.")]
        # The advice before and after, each through the recommendation cache (the card below reuses `after`).
        before = self.recommendation()
        self.interview.answer("pilot_verdict", report["verdict"], pilot_evidence(report))
        revision = Revision(before, self.recommendation(), report["verdict"], report["reason"])
        chart = Path(run["run_dir"]) / "pilot.png"
        images = [Attachment("image", "pilot", path=str(chart))] if chart.exists() else []
        buttons = [Button(LAUNCH_ACTION, "Approve & launch")] if self.recommendation().plan.training else []
        return [Reply(pilot_view.pilot_markdown(report, revision), buttons, images), self.card()]

    def cancel(self, run_id: str) -> list[Reply]:
        try:
            user_runs.get_run_for(self.user, run_id, self.store)
        except LookupError as exc:
            return [Reply(f"Cannot cancel: {exc}")]
        return [Reply(f"Run `{run_id}`: {self.store.request_cancel(run_id)}.")]

    def resume(self) -> tuple[list[Reply], str | None]:
        """On reopening the thread: how its run ended, or the run id still to follow (None when nothing is)."""
        if not self.run_id:
            return [], None
        try:
            run = user_runs.get_run_for(self.user, self.run_id, self.store)
        except LookupError as exc:
            return [Reply(f"The run of this chat is not available: {exc}")], None
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return self.outcome(launch.view_from_store(self.store, self.run_id)), None
        return [], self.run_id

    def outcome(self, view: launch.RunView) -> list[Reply]:
        """How a run ended: its training summary, evaluation report and charts, or why it did not succeed."""
        run = self.store.get(view.run_id)
        if view.status != "succeeded":
            error = view.error or run.get("error")
            return [Reply(f"Run `{view.run_id}` {view.status}{f': {error}' if error else ''}.")]
        if run.get("kind") == "pilot":
            return self.pilot_outcome(run)
        found = results.RunResults.load(run["run_dir"])
        parts = [f"Run `{view.run_id}` finished. {results.training_markdown(found.metrics)}"]
        images = []
        if found.report is not None:
            parts.append(results.report_markdown(found.report))
            if found.chart:
                images.append(Attachment("image", "eval_comparison", path=str(found.chart)))
        elif view.evaluation_error:
            parts.append(f"Evaluation failed: {view.evaluation_error}")
        else:
            parts.append("No evaluation was requested for this run (set `eval_limit` above 0 next time).")
        loss_png = Path(run["run_dir"]) / "loss_curve.png"
        if loss_png.exists():
            images.append(Attachment("image", "loss_curve.png", path=str(loss_png), size="medium"))
        buttons = [Button(PLAY_ACTION, "Compare tuned vs base (A/B)")] if found.examples else []
        return [Reply("\n\n".join(parts), buttons, images)]

    # ------------------------------------------------------------------ playground
    def play(self, prompt: str) -> list[Reply]:
        """The tuned and the base model answer the user's prompt; the answers are shown blind for a vote."""
        run_dir = self.run_dir()
        if run_dir is None:
            return [Reply("The playground needs a finished run: launch one first.")]
        if not prompt:
            return [Reply(f"Type a prompt after `{PLAY_PREFIX}` (or with the Playground command).")]
        base, tuned = playground.Playground(run_dir).answers(prompt)
        return [self._ask_vote(playground.blind(prompt, base, tuned, rng=self.rng))]

    def play_example(self) -> list[Reply]:
        """An evaluated example of the run, its two answers shown blind for a vote."""
        run_dir = self.run_dir()
        examples = results.RunResults.load(run_dir).examples if run_dir else []
        if not examples:
            return [Reply("This run has no evaluated examples to compare.")]
        return [self._ask_vote(playground.pair_from_example(self.rng.choice(examples), rng=self.rng))]

    def _ask_vote(self, pair: playground.Pair) -> Reply:
        self.pair = pair.to_state()
        buttons = [Button(PICK_ACTION, label, {"picked": value})
                   for label, value in (("A is better", "A"), ("B is better", "B"), ("Tie", "tie"))]
        return Reply(pair.markdown(), buttons)

    def pick(self, picked: str) -> list[Reply]:
        """Record the vote on the comparison shown last, and say the running human win rate."""
        run_dir = self.run_dir()
        if not self.pair or run_dir is None:
            return [Reply("There is no comparison waiting for a vote.")]
        pair = playground.Pair.from_state(self.pair)
        rate = playground.record(run_dir, pair, picked, user_identifier(self.user))
        self.pair = None
        chosen = pair.choice_for(picked)
        said = "a tie" if chosen == "tie" else f"you preferred the {chosen} model"
        votes = f"{rate['n']} vote{'s' if rate['n'] != 1 else ''}"
        return [Reply(f"Recorded: {said} (A was the {pair.a_is} model). Human win rate of tuned over base so far: "
                      f"{rate['value']:.2f} [{rate['ci_low']:.2f}, {rate['ci_high']:.2f}] over {votes}.",
                      [Button(PLAY_ACTION, "Another A/B example")])]
