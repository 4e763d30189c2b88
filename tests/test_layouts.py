"""Every common dataset layout, detected with no --map: TRL's dataset types (standard and conversational),
transcripts (HH-RLHF, User:/Assistant:, Zephyr markers, ChatML text), Hub dataset folders, and a sensible
mapping suggestion when detection cannot decide. Each file in tests/data/layouts is written in the layout as
published (TRL's docs/source/dataset_formats.md for trl 1.16, the HH-RLHF and Spider files) with our own rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.data.load import iter_rows
from executor.data.pipeline import PrepareConfig, prepare
from executor.data.records import Example, Reject
from executor.data.schema import DetectedFormat, SchemaError, detect_format, parse_mapping, to_example
from executor.data.transcripts import parse_transcript

LAYOUTS = Path(__file__).parent / "data" / "layouts"


def msgs(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in pairs]


def load(name: str) -> tuple[DetectedFormat, list[Example | Reject]]:
    rows = list(iter_rows(LAYOUTS / name))
    fmt = detect_format([r.data for r in rows if r.data is not None])
    return fmt, [to_example(r, fmt) for r in rows]


def outcome(result: Example | Reject) -> tuple:
    """An Example as (messages, chosen, rejected, text); a Reject as (reason, detail)."""
    if isinstance(result, Reject):
        return result.reason, result.detail
    return result.messages, result.chosen, result.rejected, result.text


def outcomes(name: str) -> tuple[DetectedFormat, list[tuple]]:
    fmt, results = load(name)
    return fmt, [outcome(r) for r in results]


SKY = msgs(("user", "What color is the sky?"))


# ---------------------------------------------------------------------------------------------- TRL's types

def test_language_modeling_standard_and_conversational():
    fmt, results = outcomes("language_modeling_standard.jsonl")
    assert (fmt.name, fmt.fields) == ("text", {"text": "text"})
    assert results == [([], None, None, "The sky is blue because air scatters short wavelengths more."),
                       ([], None, None, "Sunsets are red because the light crosses more air.")]
    fmt, results = outcomes("language_modeling_conversational.jsonl")
    assert (fmt.name, fmt.fields) == ("chatml", {"messages": "messages"})
    assert results == [(SKY + msgs(("assistant", "It is blue.")), None, None, None),
                       (msgs(("system", "Answer briefly."), ("user", "And at sunset?"), ("assistant", "Red.")),
                        None, None, None)]


@pytest.mark.parametrize("name", ["prompt_only_standard.jsonl", "prompt_only_conversational.jsonl"])
def test_prompt_only_is_named_in_the_error(name):
    with pytest.raises(SchemaError) as info:
        load(name)
    message = str(info.value)
    assert message.startswith("Found only a 'prompt' column: TRL's prompt-only layout, made for online methods")
    assert "supervised fine-tuning needs a completion per prompt, DPO a chosen and a rejected reply" in message


def test_prompt_completion_standard_and_conversational():
    fmt, results = outcomes("prompt_completion_standard.jsonl")
    assert (fmt.name, fmt.fields) == ("prompt_completion", {"prompt": "prompt", "completion": "completion"})
    assert results == [(msgs(("user", "The sky is"), ("assistant", " blue.")), None, None, None),
                       (msgs(("user", "The sea is"), ("assistant", " deep.")), None, None, None)]
    fmt, results = outcomes("prompt_completion_conversational.jsonl")
    assert fmt.name == "prompt_completion" and "conversational" in fmt.explanation
    assert results[0] == (SKY + msgs(("assistant", "It is blue.")), None, None, None)


def test_preference_with_explicit_prompt_standard_and_conversational():
    fmt, results = outcomes("preference_standard.jsonl")
    assert (fmt.name, fmt.fields) == ("preference", {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"})
    assert results == [(msgs(("user", "The sky is")), " blue.", " green.", None),
                       (msgs(("user", "The sea is")), " salty.", " sweet.", None)]
    fmt, results = outcomes("preference_conversational.jsonl")
    assert fmt.fields == {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
    assert results == [(SKY, "It is blue.", "It is green.", None),
                       (msgs(("user", "Is the sea salty?")), "Yes.", "No.", None)]


def test_implicit_prompt_preference_standard_splits_at_a_word_boundary():
    fmt, results = outcomes("implicit_preference_standard.jsonl")
    assert (fmt.name, fmt.fields) == ("preference", {"chosen": "chosen", "rejected": "rejected"})
    assert "implicit prompt (their common beginning, cut at a word boundary, is the prompt" in fmt.explanation
    assert results == [
        (msgs(("user", "The sky is")), "blue.", "green.", None),
        (msgs(("user", "The sky is")), "blue today.", "blurry today.", None),  # "blu" is shared, not a word
        ("schema_error", "fields 'chosen' and 'rejected' are the same text: no reply to prefer"),
        ("schema_error", "fields 'chosen' and 'rejected' share no beginning: there is no implicit prompt (give a "
                         "prompt column)"),
    ]


def test_implicit_prompt_preference_conversational():
    fmt, results = outcomes("implicit_preference_conversational.jsonl")
    assert (fmt.name, fmt.fields) == ("preference", {"chosen": "chosen", "rejected": "rejected"})
    assert fmt.explanation == (
        "Found 'chosen' and 'rejected' conversations that include the user's turns: preference pairs with an "
        "implicit prompt: the turns both conversations share are the prompt, the first assistant turn where they "
        "differ is the chosen and the rejected reply.")
    assert results == [
        (SKY, "It is blue.", "It is green.", None),
        # multi-turn: the whole shared conversation (system, first exchange, second question) is the prompt
        (msgs(("system", "Be brief."), ("user", "Name a prime."), ("assistant", "7."), ("user", "A larger one?")),
         "101.", "100.", None),
        # they part at the first reply and go on: the later turns answer different replies, the pair is that reply
        (msgs(("user", "Hi")), "Hello!", "What?", None),
        ("schema_error", "fields 'chosen' and 'rejected' are the same conversation: no reply to prefer"),
        ("schema_error", "fields 'chosen' and 'rejected' continue different conversations"),
        ("schema_error", "field 'rejected' ends where the other goes on: no pair of differing replies"),
    ]


def test_unpaired_preference_keeps_the_desirable_completions_for_sft():
    fmt, results = outcomes("unpaired_preference_standard.jsonl")
    assert (fmt.name, fmt.fields, fmt.label_column) == (
        "unpaired_preference", {"prompt": "prompt", "completion": "completion", "desirable": "label"}, None)
    assert "TRL's KTO layout). Tunewise has no KTO trainer, so the desirable completions (label true)" in \
        fmt.explanation
    undesirable = ("undesirable", "field 'label' is false: an undesirable completion; SFT learns only the desirable "
                                  "ones (Tunewise has no KTO trainer)")
    assert results == [
        (msgs(("user", "The sky is"), ("assistant", " blue.")), None, None, None),
        undesirable,
        (msgs(("user", "The sea is"), ("assistant", " salty.")), None, None, None),
        (msgs(("user", "The sun is"), ("assistant", " hot.")), None, None, None),  # "True" as text, as CSV gives
        ("schema_error", "field 'label' must be true or false, got 'maybe'"),
    ]
    fmt, results = outcomes("unpaired_preference_conversational.jsonl")
    assert fmt.name == "unpaired_preference"
    assert results == [(SKY + msgs(("assistant", "It is blue.")), None, None, None), undesirable]


def test_unpaired_preference_through_a_mapping():
    """Other column names, mapped: a true/false label judges the completion just as when detected."""
    rows = [{"q": "Say hi", "r": "Hello!", "ok": True}, {"q": "Say hi", "r": "Go away", "ok": False}]
    fmt = detect_format(rows, parse_mapping("prompt=q,completion=r,label=ok"))
    assert (fmt.name, fmt.fields, fmt.label_column) == (
        "unpaired_preference", {"prompt": "q", "completion": "r", "desirable": "ok"}, None)
    assert [outcome(to_example(_raw(r), fmt)) for r in rows] == [
        (msgs(("user", "Say hi"), ("assistant", "Hello!")), None, None, None),
        ("undesirable", "field 'ok' is false: an undesirable completion; SFT learns only the desirable ones "
                        "(Tunewise has no KTO trainer)")]


def test_stepwise_supervision_keeps_solutions_whose_every_step_is_correct():
    fmt, results = outcomes("stepwise_supervision.jsonl")
    assert (fmt.name, fmt.fields) == ("stepwise_supervision", {"prompt": "prompt", "completions": "completions",
                                                               "step_labels": "labels"})
    assert "Tunewise has no process-reward trainer" in fmt.explanation
    assert results == [
        (msgs(("user", "Which number is larger, 9.8 or 9.11?"),
              ("assistant", "The fractional part of 9.8 is 0.8.\nThe fractional part of 9.11 is 0.11.\n"
                            "0.8 is greater than 0.11.\nHence, 9.8 > 9.11.")), None, None, None),
        ("undesirable", "step 3 of 4 is labeled false in 'labels': SFT learns only solutions whose every step is "
                        "correct (Tunewise has no process-reward trainer)"),
        ("schema_error", "field 'labels' must hold one true/false per step (1 steps, labels: 2)"),
    ]


# ---------------------------------------------------------------------------------------------- transcripts

def test_hh_rlhf_transcripts_are_implicit_prompt_pairs():
    fmt, results = outcomes("hh_rlhf.jsonl")
    assert (fmt.name, fmt.fields) == ("preference", {"chosen": "chosen", "rejected": "rejected"})
    assert fmt.transcripts == {"chosen": "human_assistant", "rejected": "human_assistant"}
    assert fmt.explanation.startswith("Found 'chosen' and 'rejected' holding Human:/Assistant: transcripts as in "
                                      "Anthropic HH-RLHF and Guanaco, read back into chat turns: preference "
                                      "pairs with an implicit prompt")
    assert results == [
        (msgs(("user", "How do I boil an egg?"), ("assistant", "Put it in boiling water for nine minutes."),
              ("user", "And a soft one?")), "Six minutes, then cold water.", "Eggs are not soft.", None),
        (msgs(("user", "What is the capital of France?")), "Paris.", "Lyon, I think.", None),
        ("schema_error", "fields 'chosen' and 'rejected' are the same conversation: no reply to prefer"),
        # "...\n\nAssistant:" with nothing after it is a generation prompt, not a reply
        ("schema_error", "field 'rejected' ends where the other goes on: no pair of differing replies"),
        ("schema_error", "field 'chosen' is not a transcript: the other rows hold Human:/Assistant: transcripts as in "
                         "Anthropic HH-RLHF and Guanaco"),
    ]


def test_user_assistant_text_is_a_conversation():
    fmt, results = outcomes("user_assistant.jsonl")
    assert (fmt.name, fmt.fields, fmt.transcripts) == ("transcript", {"text": "text"}, {"text": "user_assistant"})
    assert fmt.explanation == ("Found 'text' holding User:/Assistant: transcripts: conversations, read back into chat "
                               "turns (every assistant turn is trained on).")
    assert results == [
        (msgs(("user", "Can I return shoes after a month?"), ("assistant", "Yes, within 60 days with the receipt.")),
         None, None, None),
        (msgs(("system", "You are a store assistant."), ("user", "Do you ship abroad?"),
              ("assistant", "Only within the EU."), ("user", "How long does it take?"),
              ("assistant", "Three to five days.")), None, None, None),
        ("schema_error", "field 'text': the last turn must be the assistant's, found 'user'"),
    ]


def test_zephyr_markers_are_a_conversation():
    fmt, results = outcomes("zephyr.jsonl")
    assert (fmt.name, fmt.transcripts) == ("transcript", {"text": "zephyr"})
    assert results == [
        (msgs(("system", "You are a friendly chatbot."), ("user", "How many helicopters can a human eat?"),
              ("assistant", "None: helicopters are not food.")), None, None, None),
        (msgs(("user", "What is 3 x 4?"), ("assistant", "12."), ("user", "And 3 x 5?"), ("assistant", "15.")),
         None, None, None),
    ]


def test_chatml_text_is_a_conversation():
    fmt, results = outcomes("chatml_text.jsonl")
    assert (fmt.name, fmt.transcripts) == ("transcript", {"text": "chatml"})
    assert results == [
        (msgs(("system", "Answer in one word."), ("user", "Capital of Italy?"), ("assistant", "Rome")),
         None, None, None),
        (msgs(("user", "Capital of Spain?"), ("assistant", "Madrid")), None, None, None),
    ]


def test_parse_transcript_accepts_only_whole_transcripts():
    lines = parse_transcript("### Human: Write a haiku.\n### Assistant: Leaves fall.")
    assert (lines.style, lines.turns) == ("human_assistant", [{"role": "human", "content": "Write a haiku."},
                                                              {"role": "assistant", "content": "Leaves fall."}])
    prompt = parse_transcript("\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye\n\nAssistant:")
    assert [t["role"] for t in prompt.turns] == ["human", "assistant", "human"]  # the empty last marker is dropped
    guanaco = parse_transcript("### Human: What is a monopsony?### Assistant: One buyer, many sellers.")
    assert guanaco.turns == [{"role": "human", "content": "What is a monopsony?"},
                             {"role": "assistant", "content": "One buyer, many sellers."}]  # "###" marks mid-line
    phi = parse_transcript("<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>")
    assert phi.turns == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    oasst = parse_transcript("<|prompter|>What is a meme?</s><|assistant|>A unit of culture.</s>")
    assert oasst.turns == [{"role": "prompter", "content": "What is a meme?"},
                           {"role": "assistant", "content": "A unit of culture."}]
    tool = parse_transcript("<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>tool\n12 C<|im_end|>")
    assert [t["role"] for t in tool.turns] == ["user", "tool"]  # the schema refuses the role, naming it
    for prose in ("The log says User: admin\nAssistant: none", "User: just one line",
                  "Notes.\nUser: hi\nAssistant: hello", "We asked: User: hi, Assistant: hello", 42):
        assert parse_transcript(prose) is None, prose


def test_transcripts_with_a_label_ask_which_is_meant():
    rows = [{"text": "User: hi\nAssistant: hello", "label": "greeting"},
            {"text": "User: bye\nAssistant: see you", "label": "farewell"},
            {"text": "User: yo\nAssistant: hey", "label": "greeting"}]
    with pytest.raises(SchemaError, match='The rows fit two formats equally: transcript .* and classification .*'
                                          'for example "messages=text" or "text=text,label=label"'):
        detect_format(rows)
    fmt = detect_format(rows, parse_mapping("messages=text,label=label"))
    assert (fmt.name, fmt.fields, fmt.label_column, fmt.transcripts) == (
        "transcript", {"text": "text"}, "label", {"text": "user_assistant"})
    example = to_example(_raw(rows[0]), fmt)
    assert (example.messages, example.label) == (msgs(("user", "hi"), ("assistant", "hello")), "greeting")
    fmt = detect_format(rows, parse_mapping("text=text,label=label"))
    assert to_example(_raw(rows[0]), fmt).messages == msgs(("user", "User: hi\nAssistant: hello"),
                                                           ("assistant", "greeting"))


def test_transcript_prompt_beside_plain_replies():
    """Dahoas' copies of HH-RLHF: a transcript prompt ending with "Assistant:", the reply columns plain text, and a
    'response' that repeats 'chosen' (not a second, prompt/completion, layout)."""
    row = {"prompt": "\n\nHuman: Hi there\n\nAssistant: Hello\n\nHuman: How are you?\n\nAssistant:",
           "response": "Fine.", "chosen": "Fine.", "rejected": "Go away."}
    fmt = detect_format([row])
    assert (fmt.name, fmt.fields, fmt.transcripts) == (
        "preference", {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}, {"prompt": "human_assistant"})
    assert fmt.explanation == (
        "Found 'chosen' and 'rejected' replies with 'prompt' as the prompt: preference pairs ('response' repeats "
        "'chosen' and is not used); 'prompt' holds Human:/Assistant: transcripts as in Anthropic HH-RLHF and "
        "Guanaco, read back into chat turns.")
    example = to_example(_raw(row), fmt)
    assert outcome(example) == (msgs(("user", "Hi there"), ("assistant", "Hello"), ("user", "How are you?")),
                                "Fine.", "Go away.", None)


def test_ultrafeedback_binarized_layout():
    """A plain-text prompt beside whole conversations repeats their start, and 'messages' repeats 'chosen'."""
    chosen = msgs(("user", "What is 2+2?"), ("assistant", "4"))
    row = {"prompt": "What is 2+2?", "prompt_id": "a1", "chosen": chosen,
           "rejected": msgs(("user", "What is 2+2?"), ("assistant", "5")), "messages": chosen,
           "score_chosen": 9.0, "score_rejected": 2.0}
    fmt = detect_format([row, row])
    assert (fmt.name, fmt.fields) == ("preference", {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"})
    assert fmt.explanation.endswith("('prompt' repeats the start of the conversations and is not used) ('messages' "
                                    "repeats 'chosen' and is not used).")
    example = to_example(_raw(row), fmt)
    assert outcome(example) == (msgs(("user", "What is 2+2?")), "4", "5", None)


def test_prompt_column_beside_whole_conversations():
    """The prompt column is left to the conversations when it repeats their start (as a conversation or a
    transcript); a prompt the replies continue stays explicit; a row missing its explicit prompt is refused."""
    hi = msgs(("user", "Hi"))
    rows = [{"prompt": hi, "chosen": hi + msgs(("assistant", "Hello")), "rejected": hi + msgs(("assistant", "Go"))},
            {"prompt": msgs(("user", "Hi"), ("assistant", "Hello"), ("user", "Bye")),
             "chosen": msgs(("assistant", "Goodbye!")), "rejected": msgs(("assistant", "Finally."))}]
    fmt = detect_format(rows)
    assert [outcome(to_example(_raw(r), fmt)) for r in rows] == [
        (hi, "Hello", "Go", None),
        (msgs(("user", "Hi"), ("assistant", "Hello"), ("user", "Bye")), "Goodbye!", "Finally.", None)]
    hh = {"prompt": "\n\nHuman: Hi\n\nAssistant:", "chosen": "\n\nHuman: Hi\n\nAssistant: Hello",
          "rejected": "\n\nHuman: Hi\n\nAssistant: Go"}
    assert outcome(to_example(_raw(hh), detect_format([hh]))) == (hi, "Hello", "Go", None)
    explicit = detect_format([{"prompt": "Sky?", "chosen": "Blue.", "rejected": "Red."}])
    assert outcome(to_example(_raw({"chosen": "The sky is blue", "rejected": "The sky is red"}), explicit)) == (
        "schema_error", "missing field 'prompt'")  # not split as an implicit prompt


def _raw(data: dict):
    from executor.data.records import RawRow, SourceRef

    return RawRow(SourceRef("row.jsonl", line=1), data)


# ---------------------------------------------------------------------------------------------- no known layout

def test_spider_is_detected_as_question_to_query():
    fmt, results = load("spider.json")
    assert (fmt.name, fmt.fields, fmt.label_column) == (
        "prompt_completion", {"prompt": "question", "completion": "query"}, None)
    assert fmt.explanation == (
        "Found free text in 'question', named like a prompt, and 'query', named like a reply; left aside: db_id, "
        "query_toks, query_toks_no_value, question_toks, sql: prompt/completion pairs (question -> prompt, query -> "
        "completion; pass a mapping if that is wrong).")
    assert [outcome(r) for r in results[:1]] == [
        (msgs(("user", "How many singers do we have?"), ("assistant", "SELECT count(*) FROM singer")), None, None,
         None)]
    assert [r.metadata for r in results] == [{"db_id": "concert_singer"}, {"db_id": "concert_singer"},
                                             {"db_id": "pets_1"}]


def test_suggested_mapping_when_names_do_not_tell():
    """Spider with columns renamed: nothing is named like a prompt or a reply, so detection stops; the suggestion
    still takes the question-like free text as the prompt, never the short categorical id or the token list."""
    rows = [{"db_id": db, "q": q, "gold": sql, "q_toks": q.split()} for db, q, sql in [
        ("concert_singer", "How many singers do we have?", "SELECT count(*) FROM singer"),
        ("concert_singer", "Show the names of all singers.", "SELECT name FROM singer"),
        ("pets_1", "How many pets are there?", "SELECT count(*) FROM pets")]]
    with pytest.raises(SchemaError) as info:
        detect_format(rows)
    assert 'Pass a mapping of roles to columns, for example "prompt=q,completion=gold"' in str(info.value)
    named = [{"db_id": r["db_id"], "notes": "see " + r["db_id"], "utterance": r["q"]} for r in rows]
    with pytest.raises(SchemaError, match='for example "prompt=utterance,completion=notes"'):
        detect_format(named)  # the prompt by its name, although 'notes' comes first and is free text too
    # Slot filling (restaurant8k's test file): short answers such as "13" are still the user's text, the requested
    # slots are a token list, and the slot labels (JSON) are the reply.
    slots = [{"userInput": {"text": text}, "context": {"requestedSlots": [slot]},
              "labels": [{"slot": slot, "valueSpan": {"endIndex": 2}}]}
             for text, slot in (("13", "people"), ("7pm", "time"), ("4", "people"))]
    with pytest.raises(SchemaError, match='for example "prompt=userInput.text,completion=labels"'):
        detect_format(slots)


# ---------------------------------------------------------------------------------------------- Hub folders, end to end

def test_hub_folder_of_parquet_shards_prepares_end_to_end(tmp_path, smol_tokenizer):
    report = prepare(PrepareConfig(input=LAYOUTS / "hub_unpaired_preference", out=tmp_path, tokenizer=smol_tokenizer,
                                   split=(0.6, 0.2, 0.2)))
    assert report["detected_format"]["name"] == "unpaired_preference"
    assert (report["input_rows"], report["kept"], report["rejected"]["undesirable"]) == (5, 3, 2)
    assert report["accounted_for"]
    assert "Tunewise has no KTO trainer" in (tmp_path / "report.md").read_text(encoding="utf-8")
    kept = [json.loads(line) for split in ("train", "validation", "test")
            for line in (tmp_path / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted((r["messages"][-1]["content"], r["metadata"]["__split__"], Path(r["source"]["file"]).name)
                  for r in kept) == [
        ("Hello, nice to meet you.", "train", "train-00000-of-00002.parquet"),
        ("Sorry for the wait, it ships today.", "test", "test-00000-of-00001.parquet"),
        ("Thank you for your order!", "train", "train-00001-of-00002.parquet")]
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted((r["row"]["completion"], r["reason"]) for r in rejects) == [
        ("What do you want?", "undesirable"), ("Whatever.", "undesirable")]


def test_hub_folder_of_jsonl_splits_with_a_card():
    fmt, results = outcomes("hub_hh_rlhf")
    assert fmt.name == "preference" and fmt.transcripts == {"chosen": "human_assistant", "rejected": "human_assistant"}
    assert results == [(msgs(("user", "What is 2 + 2?")), "4.", "5.", None),
                       (msgs(("user", "Spell cat.")), "C-A-T.", "K-A-T.", None),
                       (msgs(("user", "Is water wet?")), "It makes things wet.", "No comment.", None)]
    _, examples = load("hub_hh_rlhf")
    assert [e.metadata["__split__"] for e in examples] == ["train", "train", "test"]
