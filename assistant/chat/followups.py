"""What a chat message is, and the answers to questions about the recommendation, from the decision's own trace.

    classify(text, ...) -> Understood(kind, about, option, term, clause, facts)
        command     "start the training", "show the plan", "upload data", "reset"
        what_if     "what if we had only 500 examples?", "and with a 12 GB GPU?"
        correction  "no, the data can leave the building", "actually it's 2,000 examples"
        question    why / why_not X / meaning of X / time / memory / cost / accuracy / data / model
        fact        anything else: "we also need answers in German"

The cues are data (knowledge/followups.yaml). `classify` is a plain function of the message, whether a use case
was described, the facts known and (read only when needed) the facts the message states, so every phrasing can
be tested on its own. The `answer_*` functions build the text of an answer from a `Trace`: the recommendation,
the rules engine's decision (fired rules and their weights, the scores), the single answers that would make
another option win, Tunewise's recorded measurements (knowledge/measurements.yaml) and, after a run, its
metrics and report. Nothing here is written in advance: other facts give other numbers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from assistant.chat import cards, interview, results
from assistant.chat.cards import CitationElement
from assistant.estimates import fits, within_headroom
from assistant.knowledge import Followups, Knowledge, KnowledgeError, load_followups
from assistant.profile import UseCaseProfile

KINDS = ("command", "what_if", "correction", "question", "fact")
RULES_SHOWN = 8
QUESTION_NOTE = ("(Your question changed no fact. To correct one, state it — “we have 50,000 examples” — or use "
                 "`set field=value`.)")


@dataclass(frozen=True)
class Understood:
    """What a message is (`kind`) and what it refers to."""

    kind: str                                  # one of KINDS
    about: str | None = None                   # a question's topic, or a command's id
    option: tuple[str, str] | None = None      # the option a question names: (approach, technique)
    term: str | None = None                    # "what does X mean": X
    clause: str | None = None                  # the hypothetical part of a what-if
    facts: dict[str, Any] = field(default_factory=dict)  # what a fact or correction states: field -> value
    # A fact or correction followed by a question ("We now have 50,000 examples. Does that change anything?"):
    # the sentences that state it, and the question, answered once the facts are in.
    statement: str | None = None
    question: Understood | None = None
    asked: str | None = None


@functools.cache
def _cues(root: str | None) -> Followups:
    return load_followups(root)


def cues(knowledge: Knowledge | None = None) -> Followups:
    """knowledge/followups.yaml of the knowledge folder in use (read once; its glossary checked against the docs)."""
    root = getattr(knowledge, "root", None)
    found = _cues(str(root) if root else None)
    if knowledge is not None:
        missing = [e for e in found.glossary if e.cite not in knowledge.sections]
        if missing:
            raise KnowledgeError(f"{knowledge.root / 'followups.yaml'}: glossary {missing[0].term!r}: field 'cite': "
                                 f"unknown citation id {missing[0].cite!r}")
    return found


def _search(patterns: list[str], text: str) -> re.Match | None:
    for pattern in patterns:
        found = re.search(pattern, text, re.I)
        if found:
            return found
    return None


_QUESTION = re.compile(r"\?\s*$|^(why|what|which|how|should|shouldn't|could|would|is|isn't|are|aren't|do|does|"
                       r"did|can|will|when|where|who)\b", re.IGNORECASE)


def is_question(text: str) -> bool:
    """A message that asks rather than tells: it ends with a question mark or opens like a question."""
    return bool(_QUESTION.search(text.strip()))


def measured_markdown(knowledge, task_type: str | None) -> list[str]:
    """Tunewise's own measurements on the same kind of task (knowledge/measurements.yaml), as evidence."""
    found = [m for m in knowledge.measurements if task_type and m.task_type == task_type]
    if not found:
        return []
    lines = ["", "**Measured by Tunewise on a comparable task:**"]
    for m in found:
        scores = "; ".join(f"{name} {s.accuracy:.1%}" + (f" [{s.ci[0]:.1%}, {s.ci[1]:.1%}]" if s.ci else "")
                           + f" ({s.rows:,} test rows)" for name, s in m.systems.items())
        lines.append(f"- {m.task}, {m.model}, {m.where}: {scores}.")
    return lines


def asks(text: str, question_forms: str | None = None) -> bool:
    """A message that asks rather than tells: a question mark, an opening question word, or a question form
    such as "is it worth ..." / "should we ..." (lexicon.yaml)."""
    return is_question(text) or bool(question_forms and re.search(question_forms, text, re.I))


def named_option(text: str, found: Followups) -> tuple[str, str] | None:
    for option in found.options:
        if _search(option.patterns, text):
            return option.approach, option.technique
    return None


def question_topic(text: str, found: Followups) -> tuple[str, str | None]:
    """(topic, term): the first topic of followups.yaml whose cue the question carries; `why` when none does."""
    for topic in found.question_topics:
        match = _search(topic.patterns, text)
        if match is None:
            continue
        term = match.groupdict().get("term") if topic.id == "meaning" else None
        if term and term.strip().lower() in ("that", "this", "it", "all that", "this all"):
            return "why", None  # "what does that mean for the plan?" asks about the advice, not a word
        return topic.id, (term.strip() if term else None)
    return "why", None


_SENTENCE_END = re.compile(r"(?<=[.!;])\s+|\s+[—–]\s+|\s+-\s+")


def split_statement(message: str, asks_: Callable[[str], bool]) -> tuple[str, str] | None:
    """("We now have 50,000 examples.", "Does that change anything?") for a message whose sentences both tell and
    ask; None for a message that only tells or only asks."""
    parts = [p.strip() for p in _SENTENCE_END.split(message) if p.strip()]
    told = [p for p in parts if not asks_(p)]
    asked = [p for p in parts if asks_(p)]
    return (" ".join(told), " ".join(asked)) if told and asked else None


def classify(text: str, found: Followups, *, described: bool, known: dict[str, Any] | None = None,
             read: Callable[[str], dict[str, Any]] | None = None, question_forms: str | None = None) -> Understood:
    """What `text` is. `described`: a use case was described already (before that, a question that states facts is
    the description: "should we fine-tune a model on our 12,000 tickets?"). `known`: the facts known now.
    `read(text)`: the facts a text states, called only when they decide the kind."""
    message = " ".join(text.split())
    low = message.lower()
    known = known or {}

    def stated() -> dict[str, Any]:
        return read(text) if read is not None else {}

    def asks_(part: str) -> bool:
        return asks(part, question_forms) or bool(_search(found.question_openers, part))

    if low.startswith("try:"):
        return Understood("command", "try")
    pairs = interview.parse_set_command(message)
    if pairs is not None:
        return Understood("correction", "set", facts=dict(pairs))
    body = re.sub(found.command_prefix, "", low, count=1, flags=re.I)
    for command in found.commands:
        if any(re.match(p, body, re.I) for p in command.patterns):
            return Understood("command", command.id)
    for pattern in found.what_if:
        match = re.match(pattern, message, re.I)
        if match:
            clause = match.group("clause").strip().rstrip("?").strip()
            return Understood("what_if", clause=clause or None)
    is_question = asks_(message)
    both = split_statement(message, asks_) if is_question and described else None
    if both is not None:  # "We now have 50,000 examples. Does that change anything?"
        told = classify(both[0], found, described=True, known=known, read=read, question_forms=question_forms)
        if told.kind in ("fact", "correction") and any(known.get(f) != v for f, v in told.facts.items()):
            question = classify(both[1], found, described=True, known=known, read=read, question_forms=question_forms)
            if question.kind != "question":  # "does that change anything?": what the new facts do to the advice
                question = Understood("question", "why")
            return Understood(told.kind, facts=told.facts, statement=both[0], asked=both[1], question=question)
    facts = None
    if is_question and not described:
        facts = stated()  # before a description, a question that states facts is the description ("should we ...")
    if is_question and (described or not facts or question_topic(message, found)[0] == "meaning"):
        topic, term = question_topic(message, found)
        option = named_option(message, found)
        if topic == "why_not" and option is None and _search(_topic(found, "model"), message):
            topic = "model"  # "why Llama 8B and not a smaller model?"
        elif topic == "why" and option is not None:
            topic = "why_not"  # "wouldn't a zero-shot prompt be enough?": an option named against the advice
        return Understood("question", topic, option, term)
    facts = stated() if facts is None else facts
    if described and not is_question:
        if _search(found.correction, message):
            return Understood("correction", facts=facts)
        contradicted = {f: v for f, v in facts.items() if known.get(f) is not None and known[f] != v}
        if contradicted:  # "it's 2,000 examples" when 12,000 were known
            return Understood("correction", facts=facts)
    return Understood("fact", facts=facts)


def _topic(found: Followups, topic_id: str) -> list[str]:
    return next((t.patterns for t in found.question_topics if t.id == topic_id), [])


def extra_facts(text: str, found: Followups, already: set[str]) -> dict[str, Any]:
    """Facts of followups.yaml's `extra_facts` that the message states and the extractor left unknown."""
    out: dict[str, Any] = {}
    for cue in found.extra_facts:
        if cue.field not in already and cue.field not in out and _search(cue.patterns, text):
            out[cue.field] = cue.value
    return out


# ---------------------------------------------------------------------- the trace answers are built from


@dataclass
class Trace:
    rec: Any                      # the Recommendation
    decision: Any                 # the rules engine's Decision (fired rules, scores, allowed options)
    knowledge: Knowledge
    profile: UseCaseProfile
    flips: list = field(default_factory=list)   # (Question, option, Decision): the decision under each answer
    run: results.RunResults | None = None       # after a run: its metrics, report and examples
    search: Callable | None = None              # retrieval over the guidance

    @property
    def chosen(self) -> tuple[str, str]:
        return self.rec.approach, self.rec.technique


def option_label(option: tuple[str, str]) -> str:
    return cards.option_name(*option)


def weight(rule, option: tuple[str, str]) -> float:
    """A fired rule's points toward `option`: its approach score plus its technique score."""
    approach, technique = option
    points = rule.effect.approach.get(approach, 0.0)
    if technique != "none":
        points += rule.effect.technique.get(technique, 0.0)
    return points


def score(decision, option: tuple[str, str]) -> float:
    approach, technique = option
    return decision.approach_scores.get(approach, 0.0) + (
        decision.technique_scores.get(technique, 0.0) if technique != "none" else 0.0)


def _signed(x: float) -> str:
    return f"{x:+g}"


def header(trace: Trace) -> str:
    rec = trace.rec
    return (f"**Recommended:** {option_label(trace.chosen)} on `{rec.base_model}` (confidence {rec.confidence_label}, "
            f"{rec.confidence:.0%}).")


def facts_line(trace: Trace) -> str:
    shown = [f"{line.name} {line.shown}" for line in interview.understood(trace.profile, trace.knowledge)]
    return "**Your facts:** " + ("; ".join(shown) if shown else "none known yet") + "."


def fired_lines(trace: Trace, option: tuple[str, str]) -> list[str]:
    """The fired rules that pushed toward `option` (or ruled another option out), with their weights."""
    rows = []
    for rule in trace.decision.fired:
        points = weight(rule, option)
        forbids = [*rule.effect.forbid_approach, *rule.effect.forbid_technique]
        if points > 0 or forbids:
            rows.append((points + (100 if forbids else 0), rule, points, forbids))
    rows.sort(key=lambda r: -r[0])
    lines = []
    for _, rule, points, forbids in rows[:RULES_SHOWN]:
        effect = f"{_signed(points)}" + (f", rules out {', '.join(forbids)}" if forbids else "")
        lines.append(f"- `{rule.id}` ({effect}): {rule.reason} — {', '.join(rule.cite)}")
    if len(rows) > RULES_SHOWN:
        lines.append(f"- … and {len(rows) - RULES_SHOWN} more fired rules with smaller weights.")
    return lines


def scores_line(trace: Trace) -> str:
    ranked = trace.decision.ranked_options()[:4]
    return "**Scores** (approach + technique points of the fired rules): " + "; ".join(
        f"{option_label((a, t))} {s:g}" for a, t, s in ranked) + "."


def flips_to(trace: Trace, option: tuple[str, str]) -> list[str]:
    """The single answers that would make `option` the recommendation (from the counterfactual table)."""
    approach, technique = option
    out = []
    for question, answer, alt in trace.flips:
        same = alt.key == option if technique != "none" else alt.approach == approach
        if same:
            current = getattr(trace.profile, question.field).value
            if current == answer.value:
                continue
            out.append(f"if the answer to “{question.text}” were “{answer.label}”")
    return list(dict.fromkeys(out))


def measured(trace: Trace) -> list[str]:
    return measured_markdown(trace.knowledge, trace.decision.facts.get("task_type"))


def _estimate_basis(trace: Trace) -> str:
    rec, facts = trace.rec, trace.decision.facts
    hp = rec.hyperparameters
    count = facts.get("example_count")
    parts = [f"{count:,} examples" if count else "example count unknown (1,000 assumed)"]
    if hp.get("epochs") is not None:
        parts.append(f"{hp['epochs']:g} epoch{'s' if hp['epochs'] != 1 else ''}")
    if rec.estimates.get("training_tokens"):
        parts.append(f"≈ {rec.estimates['training_tokens']:,.0f} training tokens")
    return " × ".join(parts[:2]) + (f" ({parts[2]})" if len(parts) > 2 else "")


# ---------------------------------------------------------------------- the answers


@dataclass
class Answer:
    text: str
    citations: list[CitationElement] = field(default_factory=list)


def answer_why(trace: Trace) -> Answer:
    lines = [header(trace), "", facts_line(trace), "", f"**Rules that fired for it** (their weight toward "
             f"{option_label(trace.chosen)}):", *fired_lines(trace, trace.chosen), "", scores_line(trace)]
    if trace.rec.alternatives:
        lines += ["", "**What would change it:**"]
        lines += [f"- {cards.option_name(a.approach, a.technique)} (score {a.score:g}): {a.when_it_wins}"
                  for a in trace.rec.alternatives]
    lines += measured(trace)
    return Answer("\n".join(lines))


def answer_why_not(trace: Trace, option: tuple[str, str] | None) -> Answer:
    if option is None:
        return answer_why(trace)
    decision, name, chosen = trace.decision, option_label(option), option_label(trace.chosen)
    if option == trace.chosen or (option[1] == "none" and option[0] == trace.chosen[0]):
        return Answer(f"{name} is what I recommend.\n\n" + answer_why(trace).text)
    approach, technique = option
    lines = [header(trace), "", f"**Why not {name}?**"]
    ruled_out = [r for r in decision.fired if approach in r.effect.forbid_approach
                 or (technique != "none" and technique in r.effect.forbid_technique)]
    if ruled_out:
        lines.append("It is ruled out by your facts:")
        lines += [f"- `{r.id}`: {r.reason} — {', '.join(r.cite)}" for r in ruled_out]
    else:
        lines.append(f"It scores {score(decision, option):g} against {score(decision, trace.chosen):g} for {chosen} "
                     f"(approach + technique points of the fired rules).")
    diffs = []
    for rule in decision.fired:
        for_chosen, for_it = weight(rule, trace.chosen), weight(rule, option)
        if for_chosen != for_it:
            diffs.append((for_chosen - for_it, rule, for_chosen, for_it))
    diffs.sort(key=lambda d: -abs(d[0]))
    if diffs:
        lines += ["", f"**The rules that make the difference** ({chosen} / {name}):"]
        lines += [f"- `{r.id}` ({_signed(c)} / {_signed(o)}): {r.reason}" for _, r, c, o in diffs[:RULES_SHOWN]]
    flips = flips_to(trace, option)
    lines += ["", f"**What would make {name} win:** " + ("; or ".join(flips[:3]) + "." if flips else
                                                         "no single changed fact makes it win; it would need several.")]
    lines += ["", facts_line(trace)]
    lines += measured(trace)
    return Answer("\n".join(lines))


def _glossary(trace: Trace, term: str | None, text: str):
    found = cues(trace.knowledge)
    for probe in [t for t in (term, text) if t]:
        for entry in found.glossary:
            if _search(entry.patterns, probe.lower().strip()) and entry.cite in trace.knowledge.sections:
                return entry
    return None


def answer_meaning(trace: Trace, term: str | None, text: str) -> Answer:
    entry = _glossary(trace, term, text)
    if entry is None:
        passages = trace.search(text, 2) if trace.search else []
        if not passages:
            return Answer(f"I have no definition of “{term or text}” in the guidance.")
        lines = [f"From the guidance on “{term or text}”:"]
        lines += [f"- {_short(p.text, 400)} — {p.citation_id}" for p in passages]
        return Answer("\n".join(lines), [CitationElement(p.citation_id, p.title, f"**{p.title} — {p.heading}**\n\n"
                                                         f"{p.text.strip()}") for p in passages])
    section = trace.knowledge.sections[entry.cite]
    lines = [f"**{entry.term}** — {_short(section.text, 700)} — {entry.cite}"]
    hp = trace.rec.hyperparameters
    if trace.rec.technique in ("lora", "qlora") and "lora" in hp:
        lines += ["", f"In your plan: {option_label(trace.chosen)} on `{trace.rec.base_model}`, LoRA rank "
                      f"{hp['lora']['r']}, alpha {hp['lora']['alpha']}, epochs {hp.get('epochs', 0):g}, learning rate "
                      f"{hp.get('learning_rate', 0):g}."]
    else:
        lines += ["", f"In your plan: {option_label(trace.chosen)} on `{trace.rec.base_model}`."]
    cite = CitationElement(entry.cite, section.doc_title, f"**{section.doc_title} — {section.heading}**\n\n"
                                                          f"{section.text.strip()}")
    return Answer("\n".join(lines), [cite])


def _short(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def answer_time(trace: Trace) -> Answer:
    rec, est = trace.rec, trace.rec.estimates
    lines = [header(trace), ""]
    if rec.plan.training is None:
        lines.append(f"Nothing is trained in this plan ({option_label(trace.chosen)}): setting it up takes no "
                     "training time; the time goes into the prompt and the evaluation set.")
    elif est.get("train_hours") is None:
        lines.append(f"No training time can be estimated: {est.get('hardware')}.")
    else:
        lines.append(f"**Estimated training time:** {cards.hours(est['train_hours'])} on {est['hardware']}, for "
                     f"{_estimate_basis(trace)}.")
        if est.get("formula"):
            lines.append(f"How: {est['formula']}.")
        if est.get("assumptions"):
            lines.append(f"Assumptions: {'; '.join(est['assumptions'])}.")
    lines += run_lines(trace)
    return Answer("\n".join(lines))


def answer_memory(trace: Trace) -> Answer:
    rec, est, facts = trace.rec, trace.rec.estimates, trace.decision.facts
    lines = [header(trace), ""]
    needed = est.get("gpu_memory_gb")
    what = "training" if rec.plan.training is not None else "serving"
    if needed is None:
        lines.append(f"No GPU memory is needed on your side: {est.get('hardware')}.")
    else:
        train = rec.plan.training
        how = (f" (micro-batch {train.per_device_batch_size}, sequences of {train.max_seq_length} tokens, gradient "
               f"checkpointing {train.gradient_checkpointing})") if train is not None else ""
        lines.append(f"**Estimated GPU memory for {what}:** {cards.memory(est)} per GPU for "
                     f"{option_label(trace.chosen)} on {rec.base_model_info['name']}{how}.")
        gpu = facts.get("gpu_memory_gb")
        if gpu:
            ok = within_headroom(needed, gpu, trace.knowledge)
            lines.append(f"Your GPU: {gpu:g} GB — " + ("it fits, with the catalog's headroom to spare." if ok else
                                                        "it does not fit with the catalog's headroom."))
        elif facts.get("has_gpu") is False or gpu == 0:
            lines.append("You have no GPU: the plan trains on the CPU, in system memory, slowly.")
        else:
            lines.append("Your GPU is not known yet: say “we have one 24 GB GPU”, or ask “what if we had a 12 GB "
                         "GPU?” to see what changes.")
    lines += run_lines(trace)
    return Answer("\n".join(lines))


def answer_cost(trace: Trace) -> Answer:
    est = trace.rec.estimates
    lines = [header(trace), ""]
    if est.get("cost_usd") is None:
        lines.append(f"No cost can be estimated: {est.get('hardware')}.")
    else:
        lines.append(f"**Estimated training cost:** {cards.money(est['cost_usd'])} on {est['hardware']} "
                     f"({cards.hours(est.get('train_hours'))} of training, {_estimate_basis(trace)}).")
        if est.get("assumptions"):
            lines.append(f"Assumptions: {'; '.join(est['assumptions'])}.")
        budget = trace.decision.facts.get("budget_usd")
        if budget:
            lines.append(f"Your budget: {cards.money(budget)} — "
                         + ("within it." if est["cost_usd"] <= budget else "the estimate is over it."))
    return Answer("\n".join(lines))


def answer_accuracy(trace: Trace, question: str) -> Answer:
    lines = [header(trace), ""]
    citations: list[CitationElement] = []
    if trace.run is not None and trace.run.report is not None:
        compared = results.compare_systems(trace.run, question, trace.search)
        lines += ["**Measured in your run:**", compared.text]
        citations = compared.citations
    found = measured(trace)
    if found:
        lines += found
    elif trace.run is None or trace.run.report is None:
        task = trace.decision.facts.get("task_type")
        lines.append(f"Tunewise has no recorded measurement on a comparable {str(task or 'unknown').replace('_', ' ')} "
                     f"task, so I will not guess a number.")
    ev = trace.rec.plan.evaluation
    lines += ["", f"Your run will measure {', '.join(ev.metrics)} on a held-out test split, against "
                  f"{', '.join(b.replace('_', '-') for b in ev.baselines)} baselines, with bootstrap 95% intervals."]
    return Answer("\n".join(lines), citations)


def answer_data(trace: Trace) -> Answer:
    facts = trace.decision.facts
    lines = [header(trace), ""]
    count = facts.get("example_count")
    if count:
        per_class = facts.get("examples_per_class")
        lines.append(f"You have **{count:,}** examples" + (f", about {per_class:,.0f} per class" if per_class else "")
                     + ".")
    else:
        lines.append("The number of examples is not known yet: say how many you have.")
    about = [r for r in trace.decision.fired if any(k in str(r.when) for k in ("example_count", "examples_per_class",
                                                                          "data_kind", "class_count"))]
    if about:
        lines += ["", "**Rules that read your data:**"]
        lines += [f"- `{r.id}` ({_signed(weight(r, trace.chosen))} toward {option_label(trace.chosen)}): {r.reason}"
                  for r in about[:RULES_SHOWN]]
    flips = [f"{option_label((alt.approach, alt.technique))} {w}" for q, o, alt in trace.flips
             if q.field in ("example_count", "data_kind") and alt.key != trace.decision.key
             for w in [f"if the answer to “{q.text}” were “{o.label}”"]]
    if flips:
        lines += ["", "**A different amount or kind of data would change it:**"]
        lines += [f"- {f}" for f in dict.fromkeys(flips)][:4]
    lines += measured(trace)
    return Answer("\n".join(lines))


def answer_model(trace: Trace) -> Answer:
    rec, facts, kn = trace.rec, trace.decision.facts, trace.knowledge
    info = rec.base_model_info
    size = f"{info['params_b']:g}B parameters, " if info.get("params_b") else ""
    lines = [header(trace), "", f"**Base model:** {info['name']} ({size}{info['license']}): {info['why']}."]
    if rec.estimates.get("gpu_memory_gb") is not None:
        lines.append(f"Estimated memory for {option_label(trace.chosen)}: {cards.memory(rec.estimates)} per GPU.")
    gpu, count = facts.get("gpu_memory_gb"), facts.get("gpu_count") or 1
    technique = rec.technique
    if gpu and technique not in ("none", "api"):
        sized = sorted((m for m in kn.models.values() if m.params_b and technique in m.methods),
                       key=lambda m: m.params_b)
        rows = [f"{m.name} ({m.params_b:g}B): {'fits' if fits(m, technique, gpu, count, kn) else 'does not fit'}"
                for m in sized]
        lines += ["", f"**Catalog models for {option_label(trace.chosen)} on your {gpu:g} GB GPU:** " + "; ".join(rows)
                  + "."]
    lines += ["", "To use another model, type `set base_model=MODEL_ID` (catalog ids: knowledge/models.yaml)."]
    lines += measured(trace)
    return Answer("\n".join(lines))


def run_lines(trace: Trace) -> list[str]:
    """After a run: what it measured of itself (steps, epochs, losses)."""
    if trace.run is None or not trace.run.metrics:
        return []
    steps = [m for m in trace.run.metrics if m.get("step") is not None]
    last = steps[-1] if steps else {}
    text = f"**Your run** logged {last.get('step', '?')} steps"
    if last.get("epoch") is not None:
        text += f" over {last['epoch']:g} epochs"
    runtime = next((m["train_runtime_s"] for m in reversed(trace.run.metrics) if m.get("train_runtime_s")), None)
    if runtime:
        text += f" in {runtime / 3600:.2f} h" if runtime >= 3600 else f" in {runtime:.0f} s"
    return ["", text + ". " + results.training_markdown(trace.run.metrics)]


def answer(trace: Trace, understood: Understood, question: str) -> Answer:
    """The answer to a question about the recommendation (`understood.kind == "question"`)."""
    topic = understood.about
    if topic == "meaning":
        found = answer_meaning(trace, understood.term, question)
    elif topic == "why_not":
        found = answer_why_not(trace, understood.option)
    elif topic == "time":
        found = answer_time(trace)
    elif topic == "memory":
        found = answer_memory(trace)
    elif topic == "cost":
        found = answer_cost(trace)
    elif topic == "accuracy" and trace.run is None and understood.option not in (None, trace.chosen):
        found = answer_why_not(trace, understood.option)  # "is RAG better than this?": before a run, a why-not
    elif topic == "accuracy":
        found = answer_accuracy(trace, question)
    elif topic == "data":
        found = answer_data(trace)
    elif topic == "model":
        found = answer_model(trace)
    else:
        found = answer_why(trace) if understood.option in (None, trace.chosen) else answer_why_not(
            trace, understood.option)
    if topic in ("time", "memory", "cost") and understood.option not in (None, trace.chosen) and (
            understood.option[1] != "none" or understood.option[0] != trace.chosen[0]):
        # "would RAG be cheaper?": the plan's figure, then how that option compares in the decision
        other = answer_why_not(trace, understood.option).text.split("\n", 2)[2]  # (without the header again)
        found.text += "\n\n" + other
    found.citations += cited_passages(trace.knowledge, found.text, {c.name for c in found.citations})
    found.text += "\n\n" + QUESTION_NOTE
    return found


_CITATION_ID = re.compile(r"\b[a-z0-9-]+#[a-z0-9-]+\b")


def cited_passages(knowledge: Knowledge, text: str, attached: set[str]) -> list[CitationElement]:
    """The guidance passages whose ids an answer quotes (a rule's citations), so each id opens beside the chat."""
    out = []
    for cid in dict.fromkeys(_CITATION_ID.findall(text)):
        section = knowledge.sections.get(cid)
        if section is None or cid in attached or len(out) >= cards.CITATIONS_SHOWN:
            continue
        out.append(CitationElement(cid, section.doc_title, f"**{section.doc_title} — {section.heading}**\n\n"
                                                           f"{section.text.strip()}\n\n_cited by a rule_"))
    return out


def change_markdown(knowledge: Knowledge, changes: dict[str, tuple[Any, Any]], before, after) -> str:
    """What a correction changed: the facts, then the recommendation and its estimates, before → after."""
    said = "; ".join(f"{interview.FIELD_NAMES.get(f, f)}: "
                     f"{'unknown' if old is None else interview.show_value(knowledge, f, old)} → "
                     f"{interview.show_value(knowledge, f, new)}" for f, (old, new) in changes.items())
    lines = [f"**Corrected:** {said}.", ""]
    if (before.approach, before.technique, before.base_model) == (after.approach, after.technique, after.base_model):
        lines.append(f"The recommendation stays **{cards.option_name(after.approach, after.technique)}** on "
                     f"{after.base_model_info['name']}.")
    else:
        lines.append(f"The recommendation changes from **{cards.option_name(before.approach, before.technique)}** on "
                     f"{before.base_model_info['name']} to **{cards.option_name(after.approach, after.technique)}** "
                     f"on {after.base_model_info['name']}.")
    eb, ea = before.estimates, after.estimates
    if (eb.get("gpu_memory_gb"), eb.get("train_hours")) != (ea.get("gpu_memory_gb"), ea.get("train_hours")):
        lines.append(f"Estimates: memory {cards.memory(eb)} → {cards.memory(ea)}, training time "
                     f"{cards.hours(eb.get('train_hours'))} → {cards.hours(ea.get('train_hours'))}.")
    return "\n".join(lines)
