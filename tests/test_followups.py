"""Every message after the description is understood as what it is (#18): a question about the recommendation, a
what-if, a new fact, a correction or a command, and answered with the numbers it needs.

Each phrasing runs through the Conversation without Chainlit, on the use case of issue #18 (a bank routes 12,000
labeled messages to 77 intents, one 24 GB GPU, data cannot leave). Each is asserted for its kind (what
`Conversation.understand` says) and for what the answer must quote: the user's own numbers, the decision's rules
and weights, the plan's estimates (computed here from the same Recommendation, not copied), Tunewise's recorded
Banking77 measurements (86.3% for the advised LoRA plan, 7.7% for few-shot prompting), and after a run its report.
"""

from __future__ import annotations

import json
import random

import pytest

from assistant.chat import backends, cards, conversation, followups, interview
from assistant.chat.conversation import Conversation
from executor.runs.store import RunStore

BANK = ("We route customer messages to one of 77 intents. We have 12,000 labeled messages and one 24 GB GPU; "
        "the data cannot leave our servers.")
MEASURED = ("few-shot prompting 7.7% (1,000 test rows)", "the advised LoRA plan (r16, 2 epochs, 291 s of training) "
            "86.3% [85.1%, 87.6%] (3,076 test rows)")


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


@pytest.fixture
def bank(advisor, knowledge, store):
    """The #18 conversation, its card shown."""
    conv = Conversation(advisor, backends.make_backend("offline", knowledge), None, user="alice", store=store,
                        rng=random.Random(3))
    conv.describe(BANK)
    conv.recommend_now()
    return conv


def facts(conv) -> str:
    return conv.interview.profile.model_dump_json()


def text(replies) -> str:
    return "\n\n".join(r.content for r in replies)


def estimates(conv) -> dict:
    return conv.recommendation().estimates


# ---------------------------------------------------------------------- questions: never facts, answered with numbers

# (phrasing, topic, the option it names or None, what the answer must quote: a function of the conversation)
QUESTIONS = [
    ("Why not just use few-shot prompting?", "why_not", ("prompting", "none"), lambda c: [*MEASURED, "12,000"]),
    ("wouldn't a zero-shot prompt to a big model be enough?", "why_not", ("prompting", "none"),
     lambda c: [*MEASURED, "**Why not Prompting?**"]),
    ("Why aren't you suggesting RAG?", "why_not", ("rag", "none"),
     lambda c: ["**Why not RAG (retrieval-augmented generation)?**", "**What would make RAG (retrieval-augmented "
                "generation) win:** if the answer to “What data do you have today?” were “Documents only"]),
    ("Shouldn't we combine retrieval with LoRA instead?", "why_not", ("rag_fine_tuning", "lora"),
     lambda c: ["**Why not RAG + fine-tuning with LoRA?**", score_line(c, ("rag_fine_tuning", "lora"))]),
    ("what about QLoRA?", "why_not", ("fine_tuning", "qlora"),
     lambda c: ["**Why not Fine-tuning with QLoRA?**", score_line(c, ("fine_tuning", "qlora"))]),
    ("Is full fine-tuning better than LoRA here?", "accuracy", ("fine_tuning", "full"),
     lambda c: ["**Why not Fine-tuning with full fine-tuning?**", score_line(c, ("fine_tuning", "full"))]),
    ("How good is a tuned model at this compared to prompting?", "accuracy", ("prompting", "none"),
     lambda c: [*MEASURED, "**Why not Prompting?**"]),
    ("why Llama 8B and not a smaller model?", "model", None,
     lambda c: [f"**Base model:** {c.recommendation().base_model_info['name']}", "on your 24 GB GPU",
                f"{cards.memory(estimates(c))} per GPU"]),
    ("Could a 1B model do this", "model", None,
     lambda c: [c.recommendation().base_model_info["why"], "SmolLM2-135M-Instruct (0.135B): fits"]),
    ("what made you choose Llama?", "model", None,
     lambda c: [f"`{c.recommendation().base_model}`", "`set base_model=MODEL_ID`"]),
    ("what does LoRA mean", "meaning", ("fine_tuning", "lora"),
     lambda c: ["**LoRA** — LoRA freezes every original weight matrix", "lora#what-it-is",
                f"LoRA rank {c.recommendation().hyperparameters['lora']['r']}"]),
    ("What's QLoRA?", "meaning", ("fine_tuning", "qlora"), lambda c: ["**QLoRA** — ", "qlora#what-it-is"]),
    ("explain RAG to me", "meaning", ("rag", "none"),
     lambda c: ["**RAG** — ", "spectrum#retrieval-augmented-generation"]),
    ("tell me what QLoRA is", "meaning", ("fine_tuning", "qlora"), lambda c: ["**QLoRA** — ", "qlora#what-it-is"]),
    ("Could you remind me what an epoch is?", "meaning", None,
     lambda c: ["**Epochs, learning rate and batch size** — ", "lora#hyperparameters"]),
    ("what is an epoch?", "meaning", None,
     lambda c: ["**Epochs, learning rate and batch size** — ", "lora#hyperparameters",
                f"epochs {c.recommendation().hyperparameters['epochs']:g}"]),
    ("How long will the training take?", "time", None,
     lambda c: [f"**Estimated training time:** {cards.hours(estimates(c)['train_hours'])} on "
                f"{estimates(c)['hardware']}", f"12,000 examples × {epochs(c)}",
                f"{estimates(c)['training_tokens']:,.0f} training tokens"]),
    ("how many hours of GPU time is that?", "time", None,
     lambda c: [cards.hours(estimates(c)["train_hours"]), "350 tokens per example"]),
    ("When will the model be ready?", "time", None, lambda c: [cards.hours(estimates(c)["train_hours"])]),
    ("how much will this cost us?", "cost", None,
     lambda c: [f"**Estimated training cost:** {cards.money(estimates(c)['cost_usd'])} on {estimates(c)['hardware']}",
                cards.hours(estimates(c)["train_hours"])]),
    ("Is it expensive to run the training?", "cost", None, lambda c: [cards.money(estimates(c)["cost_usd"])]),
    ("Would RAG be cheaper?", "cost", ("rag", "none"),
     lambda c: [f"**Estimated training cost:** {cards.money(estimates(c)['cost_usd'])}",
                "**Why not RAG (retrieval-augmented generation)?**", score_line(c, ("rag", "none"))]),
    ("What's the price tag in dollars?", "cost", None, lambda c: [cards.money(estimates(c)["cost_usd"])]),
    ("how much memory does it need?", "memory", None,
     lambda c: [f"**Estimated GPU memory for training:** {cards.memory(estimates(c))} per GPU",
                "Your GPU: 24 GB — it fits", f"micro-batch {c.recommendation().plan.training.per_device_batch_size}"]),
    ("Will it fit on our GPU?", "memory", None, lambda c: ["Your GPU: 24 GB — it fits", cards.memory(estimates(c))]),
    ("which GPU would I need?", "memory", None, lambda c: [cards.memory(estimates(c))]),
    ("How many GPUs do we need?", "memory", None, lambda c: [cards.memory(estimates(c)), "Your GPU: 24 GB"]),
    ("can we run it on a CPU instead?", "memory", None, lambda c: [cards.memory(estimates(c)), "24 GB"]),
    ("how accurate will it be?", "accuracy", None,
     lambda c: [*MEASURED, "Your run will measure perplexity, accuracy, macro_f1", "zero-shot, few-shot baselines"]),
    ("What results should we expect?", "accuracy", None, lambda c: list(MEASURED)),
    ("is 12,000 examples enough?", "data", None,
     lambda c: ["You have **12,000** examples, about 155 per class",
                "`enough-data` (+1 toward Fine-tuning with LoRA)"]),
    ("Do we need to label more data?", "data", None, lambda c: ["**12,000**", "`plenty-of-data`"]),
    ("how many examples per intent do we have?", "data", None, lambda c: ["about 155 per class"]),
    ("why did you pick this?", "why", None, lambda c: [*rule_lines(c), "**Scores**", "Fine-tuning with LoRA 6"]),
    ("How sure are you about this?", "why", None,
     lambda c: [f"confidence {c.recommendation().confidence_label}, {c.recommendation().confidence:.0%}",
                "Training examples 12,000", "GPU memory (GB) 24"]),
]


def epochs(conv) -> str:
    n = conv.recommendation().hyperparameters["epochs"]
    return f"{n:g} epoch{'s' if n != 1 else ''}"


def score_line(conv, option) -> str:
    decision = conv.advisor.engine.decide(conv.interview.profile)
    chosen = conv.recommendation()
    return (f"It scores {followups.score(decision, option):g} against "
            f"{followups.score(decision, (chosen.approach, chosen.technique)):g} for Fine-tuning with LoRA")


def rule_lines(conv) -> list[str]:
    """Each reason of the recommendation, as the why-answer shows it: rule id and its weight toward the choice."""
    rec = conv.recommendation()
    decision = conv.advisor.engine.decide(conv.interview.profile)
    fired = {r.id: r for r in decision.fired}
    out = []
    for reason in rec.reasons:
        points = followups.weight(fired[reason.rule], (rec.approach, rec.technique))
        if points > 0:
            out.append(f"- `{reason.rule}` ({points:+g}): {reason.text}")
    assert out
    return out


@pytest.mark.parametrize("phrasing,topic,option,quotes", QUESTIONS, ids=[q[0] for q in QUESTIONS])
def test_a_question_is_answered_with_its_numbers_and_stores_nothing(bank, phrasing, topic, option, quotes):
    understood = bank.understand(phrasing)
    assert (understood.kind, understood.about, understood.option) == ("question", topic, option)
    before = facts(bank)
    replies = bank.handle_text(phrasing)
    answer = text(replies)
    assert facts(bank) == before  # a question is never a fact
    assert not any(r.card for r in replies)  # and it leaves the card as it is
    for quote in quotes(bank):
        assert quote in answer, f"{quote!r} missing from the answer to {phrasing!r}:\n{answer}"
    assert answer.endswith(followups.QUESTION_NOTE)


def test_the_rule_citations_an_answer_quotes_open_beside_the_chat(bank, knowledge):
    [reply] = bank.handle_text("why did you pick this?")
    quoted = {cid for r in bank.recommendation().reasons for cid in r.citations}
    attached = {a.name: a.content for a in reply.attachments}
    assert quoted <= set(attached)
    assert all(knowledge.sections[cid].text.strip() in attached[cid] for cid in quoted)


def test_a_meaning_answer_carries_its_passage_to_open_beside_the_chat(bank, knowledge):
    [reply] = bank.handle_text("what does LoRA mean")
    [passage] = reply.attachments
    assert passage.name == "lora#what-it-is" and knowledge.sections["lora#what-it-is"].text.strip() in passage.content


# ---------------------------------------------------------------------- what-ifs: re-decided on a copy

WHAT_IFS = [
    ("what if we had only 500 examples?", "we had only 500 examples", ["Training examples: 12,000 → 500"]),
    ("and with a 12 GB GPU?", "with a 12 GB GPU", ["GPU memory (GB): 24 → 12", "Estimates: memory"]),
    ("how about with 50,000 examples?", "with 50,000 examples", ["Training examples: 12,000 → 50,000"]),
    ("would the advice change if we had no GPU?", "we had no GPU", ["GPU memory (GB): 24 → 0", "GPUs: 1 → 0"]),
    ("imagine we had two A100 80GB cards", "we had two A100 80GB cards", ["GPU memory (GB): 24 → 80"]),
    ("What would change with 200 examples?", "200 examples", ["Training examples: 12,000 → 200"]),
    ("What if the data were public?", "the data were public", ["Data sensitivity: Yes, it must stay in-house → No"]),
    ("What about a 3B model?", "a 3B model", ["Preferred model: unknown → llama-3.2-3b-instruct",
                                              "on Llama-3.2-3B-Instruct (the model you named)"]),
    ("Suppose the data could be sent to a cloud API", "the data could be sent to a cloud API",
     ["Data sensitivity: Yes, it must stay in-house → No"]),
]


@pytest.mark.parametrize("phrasing,clause,quotes", WHAT_IFS, ids=[w[0] for w in WHAT_IFS])
def test_a_what_if_is_redecided_on_a_copy_and_keeps_the_facts(bank, phrasing, clause, quotes):
    understood = bank.understand(phrasing)
    assert (understood.kind, understood.clause) == ("what_if", clause)
    before = facts(bank)
    [reply] = bank.handle_text(phrasing)
    assert facts(bank) == before  # the real facts stay until the user keeps the what-if
    assert reply.content.startswith("**What if**") and [b.name for b in reply.buttons] == [
        conversation.KEEP_WHAT_IF_ACTION]
    for quote in quotes:
        assert quote in reply.content, reply.content


def test_a_kept_what_if_becomes_the_facts_and_updates_the_card(bank):
    bank.handle_text("what if we had only 500 examples?")
    [card] = bank.keep_what_if()
    assert card.card and bank.interview.profile.example_count.value == 500
    assert cards.hours(bank.recommendation().estimates["train_hours"]) in card.content


def test_a_what_if_after_one_answers_against_the_real_facts_not_the_last_hypothesis(bank):
    bank.handle_text("what if we had only 500 examples?")
    [reply] = bank.handle_text("and with a 12 GB GPU?")
    assert "GPU memory (GB): 24 → 12" in reply.content and "Training examples" not in reply.content


# ---------------------------------------------------------------------- new facts: added, the live card updated

FACTS = [
    ("we also need answers in German", "multilingual", True),
    ("The labels change every month.", "label_churn", True),
    ("Latency must stay under 200 ms.", "latency_budget_ms", 200),
    ("Our answers must cite the source documents.", "needs_citations", True),
]


@pytest.mark.parametrize("phrasing,field_name,value", FACTS, ids=[f[0] for f in FACTS])
def test_a_new_fact_is_added_and_the_live_card_updated(bank, knowledge, phrasing, field_name, value):
    understood = bank.understand(phrasing)
    assert understood.kind == "fact" and understood.facts[field_name] == value
    replies = bank.handle_text(phrasing)
    assert getattr(bank.interview.profile, field_name).value == value
    table, card = replies[0], replies[-1]
    row = next(line for line in table.content.splitlines() if f"`{field_name}`" in line)
    assert "(new)" in row and interview.show_value(knowledge, field_name, value) in row
    assert card.card and card.content == bank.card().content  # the card on screen is replaced by the new advice


def test_a_message_with_no_fact_says_so_and_redraws_nothing(bank):
    before, texts = facts(bank), list(bank.interview.texts)
    understood = bank.understand("ok, thanks!")
    assert (understood.kind, understood.facts) == ("fact", {})
    [reply] = bank.handle_text("ok, thanks!")
    assert reply.content.startswith("I found no fact in that to add to your use case.") and not reply.card
    assert facts(bank) == before and bank.interview.texts == texts


# ---------------------------------------------------------------------- corrections: the user's word replaces a fact

CORRECTIONS = [
    ("no, the data can leave the building", {"privacy": ("sensitive", "standard")},
     ["**Corrected:** Data sensitivity: Yes, it must stay in-house → No."]),
    ("actually it's 2,000 examples", {"example_count": (12000, 2000), "examples_per_class": (155, 25)},
     ["Training examples: 12,000 → 2,000", "Examples per class: 155 → 25"]),
    ("Sorry, I meant 40 GB of GPU memory", {"gpu_memory_gb": (24.0, 40.0)}, ["GPU memory (GB): 24 → 40"]),
    ("It's 8,000 examples, not 12,000.", {"example_count": (12000, 8000)}, ["Training examples: 12,000 → 8,000"]),
    ("We have 30 intents, not 77", {"class_count": (77, 30), "examples_per_class": (155, 400)},
     ["Classes: 77 → 30", "Examples per class: 155 → 400"]),
]


@pytest.mark.parametrize("phrasing,changes,quotes", CORRECTIONS, ids=[c[0] for c in CORRECTIONS])
def test_a_correction_replaces_the_fact_and_updates_the_card(bank, phrasing, changes, quotes):
    assert bank.understand(phrasing).kind == "correction"
    profile = bank.interview.profile
    assert {f: getattr(profile, f).value for f in changes} == {f: old for f, (old, _) in changes.items()}
    replies = bank.handle_text(phrasing)
    profile = bank.interview.profile
    assert {f: getattr(profile, f).value for f in changes} == {f: new for f, (_, new) in changes.items()}
    assert all(getattr(profile, f).source == "user" for f in changes)  # the user's word: final
    for quote in quotes:
        assert quote in replies[0].content, replies[0].content
    assert replies[-1].card and f"| {cards.memory(estimates(bank))} | {cards.hours(estimates(bank)['train_hours'])}" \
        in replies[-1].content


def test_a_set_command_is_a_correction_too(bank):
    understood = bank.understand("set example_count=3000")
    assert (understood.kind, understood.about) == ("correction", "set")
    replies = bank.handle_text("set example_count=3000")
    assert replies[0].content == "Noted: `example_count` = 3,000." and replies[-1].card
    assert bank.interview.profile.example_count.value == 3000


def test_a_correction_that_states_nothing_new_changes_nothing_and_offers_change_buttons(bank):
    before = facts(bank)
    [reply] = bank.handle_text("no, that's wrong")
    assert reply.content.startswith("Nothing changed: I could not tell which fact it corrects.")
    assert facts(bank) == before and {b.name for b in reply.buttons} == {conversation.EDIT_ACTION}


# ---------------------------------------------------------------------- a fact, then a question in one message

MIXED = [
    ("We now have 50,000 examples. Does that change anything?", "correction", "why",
     lambda c: ["**Corrected:** Training examples: 12,000 → 50,000", "Training examples 50,000", "**Scores**"]),
    ("Actually it's 2,000 examples; how long would training take then?", "correction", "time",
     lambda c: ["Training examples: 12,000 → 2,000", f"**Estimated training time:** "
                f"{cards.hours(estimates(c)['train_hours'])}", f"2,000 examples × {epochs(c)}"]),
    ("The labels change every month - what does that mean for the plan?", "fact", "why",
     lambda c: ["`label_churn` (new)", "Labels or categories change often yes"]),
]


@pytest.mark.parametrize("phrasing,kind,topic,quotes", MIXED, ids=[m[0] for m in MIXED])
def test_a_fact_then_a_question_updates_the_facts_then_answers_on_the_new_advice(bank, phrasing, kind, topic, quotes):
    understood = bank.understand(phrasing)
    assert (understood.kind, understood.question.kind, understood.question.about) == (kind, "question", topic)
    replies = bank.handle_text(phrasing)
    assert any(r.card for r in replies)  # the live card shows the new advice
    answer = text(replies)
    assert replies[-1].content.endswith(followups.QUESTION_NOTE)  # and the question is answered, after
    for quote in quotes(bank):  # (the numbers as they are now, with the new fact)
        assert quote in answer, f"{quote!r} missing:\n{answer}"


def test_a_question_after_a_fact_already_known_is_only_a_question(bank):
    before = facts(bank)
    understood = bank.understand("We have 12,000 examples. Why not few-shot?")
    assert (understood.kind, understood.about, understood.option) == ("question", "why_not", ("prompting", "none"))
    assert MEASURED[1] in text(bank.handle_text("We have 12,000 examples. Why not few-shot?"))
    assert facts(bank) == before


# ---------------------------------------------------------------------- commands: done, not described

COMMANDS = [
    ("start the training", "launch"), ("OK, let's launch it", "launch"), ("show the plan", "show_plan"),
    ("Can you show me the plan?", "show_plan"), ("upload data", "upload"), ("I want to upload our dataset", "upload"),
    ("reset", "reset"), ("let's start over", "reset"), ("please cancel the run", "cancel"),
    ("just recommend", "recommend"), ("go ahead", "launch"), ("cancel", "cancel"),
]


@pytest.mark.parametrize("phrasing,command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_command_is_done(bank, phrasing, command):
    assert (bank.understand(phrasing).kind, bank.understand(phrasing).about) == ("command", command)
    described = list(bank.interview.texts)
    replies = bank.handle_text(phrasing)
    said = text(replies)
    if command == "launch":
        assert said == "A run needs data: upload a dataset first."
    elif command == "show_plan":
        assert "expected_examples: 12000" in said and "gpu_memory_gb: 24.0" in said
    elif command == "upload":
        assert replies[0].ask_upload and [b.name for b in replies[0].buttons] == [conversation.UPLOAD_ACTION]
    elif command == "reset":
        assert replies[0].reset and bank.interview.texts == [] and not bank.interview.profile.known_fields()
        return
    elif command == "cancel":
        assert said == "There is no run of this chat to cancel."
    elif command == "recommend":
        assert replies[-1].card
    assert bank.interview.texts == described  # a command is never read as a description


def test_cancel_typed_cancels_this_chats_run(bank, store, tmp_path):
    bank.run_id = store.submit("approach: fine_tuning\n", owner="alice", runs_root=tmp_path)
    assert text(bank.handle_text("stop the training")) == f"Run `{bank.run_id}`: cancelled."
    assert store.get(bank.run_id)["status"] == "cancelled"


# ---------------------------------------------------------------------- after a run: its own numbers


@pytest.fixture
def finished(bank, store, tmp_path, write_finished_run):
    run_id = store.submit("approach: fine_tuning\n", owner="alice", runs_root=tmp_path / "runs")
    run_dir = tmp_path / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    write_finished_run(run_dir)
    store.finish(run_id, "succeeded")
    bank.run_id = run_id
    return run_dir


def test_after_a_run_accuracy_is_answered_from_its_report(bank, finished):
    report = json.loads((finished / "report.json").read_text())
    tuned = report["systems"]["tuned"]["accuracy"]
    phrasing = "how accurate is the tuned model?"
    assert bank.understand(phrasing).about == "accuracy"
    answer = text(bank.handle_text(phrasing))
    assert f"tuned {tuned['value']:.3f} [{tuned['ci_low']:.3f}, {tuned['ci_high']:.3f}]" in answer
    assert "**Measured in your run:**" in answer and MEASURED[1] in answer


def test_after_a_run_how_long_quotes_the_runs_steps(bank, finished):
    phrasing = "How long did the training take?"
    assert bank.understand(phrasing).about == "time"
    answer = text(bank.handle_text(phrasing))
    assert "**Your run** logged 60 steps over 3 epochs" in answer
    assert "Training loss went from 2.4000 (step 10) to 0.3000 (step 60)" in answer


def test_after_a_run_a_question_on_its_loss_reads_its_log(bank, finished):
    phrasing = "why did eval loss go up after epoch 2?"
    assert bank.understand(phrasing).kind == "question"
    assert text(bank.handle_text(phrasing)).startswith("Validation loss was lowest at step 40, epoch 2: 1.5000.")


# ---------------------------------------------------------------------- the classifier on its own


def test_before_a_description_a_question_is_the_description(knowledge):
    cues = followups.cues(knowledge)
    first = followups.classify("Should we fine-tune a model to route 12,000 tickets?", cues, described=False,
                               read=lambda text: {"example_count": 12000})
    assert (first.kind, first.facts) == ("fact", {"example_count": 12000})
    assert followups.classify("what does QLoRA mean?", cues, described=False).about == "meaning"


def test_the_facts_of_a_message_are_read_only_when_they_decide_its_kind(knowledge):
    cues = followups.cues(knowledge)

    def unread(text):
        raise AssertionError("a question, a what-if or a command was read for facts")

    for phrasing in ("why not RAG?", "what if we had 500 examples?", "show the plan", "how long will it take?"):
        followups.classify(phrasing, cues, described=True, read=unread)


def test_a_stated_number_that_contradicts_a_known_one_is_a_correction(knowledge):
    cues = followups.cues(knowledge)
    said = followups.classify("It's 2,000 examples.", cues, described=True, known={"example_count": 12000},
                              read=lambda text: {"example_count": 2000})
    same = followups.classify("It's 12,000 examples.", cues, described=True, known={"example_count": 12000},
                              read=lambda text: {"example_count": 12000})
    assert (said.kind, same.kind) == ("correction", "fact")


def test_followups_yaml_is_checked_when_loaded(tmp_path, knowledge):
    from assistant.knowledge import KnowledgeError, load_followups

    raw = (knowledge.root / "followups.yaml").read_text(encoding="utf-8")
    (tmp_path / "followups.yaml").write_text(raw.replace("cite: \"lora#what-it-is\"", "cite: \"lora#nowhere\""))
    with pytest.raises(KnowledgeError, match=r"glossary 'LoRA': field 'cite': unknown citation id 'lora#nowhere'"):
        load_followups(tmp_path, knowledge.sections)
    (tmp_path / "followups.yaml").write_text(raw.replace("- \"^(?:no|nope", "- \"^((?:no|nope"))
    with pytest.raises(KnowledgeError, match=r"correction: pattern .* does not compile"):
        load_followups(tmp_path)


def test_phrasings_are_many_and_varied():
    phrasings = [q[0] for q in QUESTIONS] + [w[0] for w in WHAT_IFS] + [f[0] for f in FACTS] + \
        [c[0] for c in CORRECTIONS] + [c[0] for c in COMMANDS]
    assert len(set(phrasings)) == len(phrasings) >= 40
    openings = {p.lower().split()[0].strip(",") for p in phrasings}
    assert len(openings) >= 25  # not one sentence with a word swapped
