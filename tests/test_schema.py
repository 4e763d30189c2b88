"""Schema detection and conversion: every shared dataset, every supported layout, and rows that do not fit."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import real_data
from real_data import full_or_slice

from executor.data.load import iter_rows
from executor.data.records import Example, RawRow, Reject, SourceRef
from executor.data.schema import FORMATS, DetectedFormat, SchemaError, detect_format, parse_mapping, to_example

SRC = SourceRef("d.jsonl", line=7)


def shared(relative: str) -> list[RawRow]:
    path = real_data.path(relative)  # ../shared/datasets, or the slice the repository ships
    return list(iter_rows(path))


def detect(rows: list[RawRow], mapping=None) -> DetectedFormat:
    return detect_format([r.data for r in rows if r.data is not None][:200], mapping)


def convert(rows: list[RawRow], fmt: DetectedFormat) -> tuple[list[Example], list[Reject]]:
    out = [to_example(r, fmt) for r in rows]
    return [o for o in out if isinstance(o, Example)], [o for o in out if isinstance(o, Reject)]


def one(data: dict, fmt: DetectedFormat | None = None) -> Example | Reject:
    return to_example(RawRow(SRC, data), fmt or detect_format([data]))


def msgs(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in pairs]


# ---------------------------------------------------------------------------------------------- real datasets

def test_banking77_is_classification():
    rows = shared("banking77/train.csv")
    fmt = detect(rows)
    assert (fmt.name, fmt.fields, fmt.label_column) == ("classification", {"text": "text", "label": "category"},
                                                        "category")
    assert "'category'" in fmt.explanation
    examples, rejects = convert(rows, fmt)
    assert (len(examples), len(rejects)) == (full_or_slice(10_003, 154), 0)
    first = examples[0]
    assert first.messages == msgs(("user", "I am still waiting on my card?"), ("assistant", "card_arrival"))
    assert first.label == "card_arrival" and first.metadata == {}
    assert len({e.label for e in examples}) == 77


def test_customer_support_is_prompt_completion_with_category_label():
    rows = shared("customer_support/bitext_customer_support_train.csv")
    fmt = detect(rows)
    assert (fmt.name, fmt.fields, fmt.label_column) == (
        "prompt_completion", {"prompt": "instruction", "completion": "response"}, "category")
    assert "'category' holds short repeating values" in fmt.explanation and "intent" in fmt.explanation
    examples, rejects = convert(rows, fmt)
    assert (len(examples), len(rejects)) == (full_or_slice(4_514, 54), 0)
    first = examples[0]
    assert [m["role"] for m in first.messages] == ["user", "assistant"]
    assert first.messages[0]["content"] == "how can I cancel purchase 113542617735902?"
    assert first.label == "ORDER"
    assert first.metadata["intent"] == "cancel_order" and first.metadata["category"] == "ORDER"
    assert "instruction" not in first.metadata and "response" not in first.metadata
    assert len({e.label for e in examples}) == 11 and len({e.metadata["intent"] for e in examples}) == 27


def test_orca_dpo_is_openai_preference():
    rows = shared("preference/orca_dpo_pairs_validation.jsonl")
    fmt = detect(rows)
    assert fmt.name == "openai_preference"
    assert fmt.fields == {"prompt": "input.messages", "chosen": "preferred_output", "rejected": "non_preferred_output"}
    examples, rejects = convert(rows, fmt)
    assert (len(examples), len(rejects)) == (full_or_slice(284, 6), 0)
    first = examples[0]
    assert [m["role"] for m in first.messages] == ["system", "user"]
    assert first.chosen.startswith("Step 1: Identify the names and phrases in the given text.")
    assert first.rejected.startswith("Sure, I'd be happy to help!")
    assert first.kind == "preference"


def test_gsm8k_is_prompt_completion():
    rows = shared("gsm8k/test.jsonl")
    fmt = detect(rows)
    assert (fmt.name, fmt.fields, fmt.label_column) == (
        "prompt_completion", {"prompt": "question", "completion": "answer"}, None)
    examples, rejects = convert(rows, fmt)
    assert (len(examples), len(rejects)) == (full_or_slice(1_319, 40), 0)
    assert examples[0].messages[1]["content"].endswith("#### 18")
    assert examples[-1].source.line == len(rows)


def test_restaurant8k_needs_a_mapping():
    rows = shared("extraction/restaurant8k_train_0.json")
    with pytest.raises(SchemaError) as info:
        detect(rows)
    message = str(info.value)
    assert "Columns seen: userInput.text (string), context.requestedSlots (list), labels (list)." in message
    assert 'for example "prompt=userInput.text,completion=labels"' in message

    fmt = detect(rows, parse_mapping("prompt=userInput.text,completion=labels"))
    assert (fmt.name, fmt.fields) == ("prompt_completion", {"prompt": "userInput.text", "completion": "labels"})
    examples, rejects = convert(rows, fmt)
    with_slots = sum(1 for r in rows if "labels" in r.data)  # ~36% of rows have no slot and no 'labels' key
    assert (len(examples), len(rejects)) == (with_slots, len(rows) - with_slots) == full_or_slice((5_223, 2_975),
                                                                                                   (39, 21))
    assert {r.detail for r in rejects} == {"missing field 'labels'"}
    assert examples[0].messages == msgs(
        ("user", "There will be 5 adults and 1 child."),
        ("assistant", json.dumps(rows[0].data["labels"], ensure_ascii=False, sort_keys=True)))
    assert examples[0].messages[1]["content"] == (
        '[{"slot": "people", "valueSpan": {"endIndex": 34, "startIndex": 14}}]')


def test_covid_qa_is_squad():
    rows = shared("rag/covidqa_200423.json")
    fmt = detect(rows)
    assert (fmt.name, fmt.fields) == ("squad", {"context": "context", "prompt": "question", "completion": "answer"})
    examples, rejects = convert(rows, fmt)
    assert (len(examples), len(rejects)) == (full_or_slice(1_380, 6), 0)
    system, user, assistant = examples[0].messages
    opening, question, id_ = full_or_slice(
        ("Functional Genetic Variants in DC-SIGNR", "What is the main cause of HIV-1 infection in children?", 262),
        ("Note from the editors: novel coronavirus (2019-nCoV)",  # (the slice's first paper is the full file's 94th)
         "Where can published genomic sequences be found for the 2019-nCoV virus?", 529))
    assert system["content"].startswith(f"Answer the question from this document.\n\n{opening}")
    assert user["content"] == question
    assert assistant["content"] == rows[0].data["answer"]
    assert examples[0].metadata == {"id": id_, "document_id": rows[0].data["document_id"], "is_impossible": False}


# ---------------------------------------------------------------------------------------------- detection

@pytest.mark.parametrize(("row", "name", "fields"), [
    ({"instruction": "Sum", "input": "1 2", "output": "3"}, "alpaca",
     {"instruction": "instruction", "output": "output", "input": "input"}),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}, "sharegpt",
     {"conversations": "conversations"}),
    ({"messages": msgs(("user", "hi"), ("assistant", "hello"))}, "chatml", {"messages": "messages"}),
    ({"prompt": "hi", "completion": "hello"}, "prompt_completion", {"prompt": "prompt", "completion": "completion"}),
    ({"query": "hi", "response": "hello"}, "prompt_completion", {"prompt": "query", "completion": "response"}),
    ({"input": "hi", "output": "hello"}, "prompt_completion", {"prompt": "input", "completion": "output"}),
    ({"source": "hi", "target": "hello"}, "prompt_completion", {"prompt": "source", "completion": "target"}),
    ({"prompt": msgs(("user", "hi")), "completion": msgs(("assistant", "hello"))}, "prompt_completion",
     {"prompt": "prompt", "completion": "completion"}),
    ({"prompt": "hi", "chosen": "good", "rejected": "bad"}, "preference",
     {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}),
    ({"chosen": msgs(("user", "hi"), ("assistant", "good")), "rejected": msgs(("user", "hi"), ("assistant", "bad"))},
     "preference", {"chosen": "chosen", "rejected": "rejected"}),
    ({"input": {"messages": msgs(("user", "hi"))}, "preferred_output": msgs(("assistant", "good")),
      "non_preferred_output": msgs(("assistant", "bad"))}, "openai_preference",
     {"prompt": "input.messages", "chosen": "preferred_output", "rejected": "non_preferred_output"}),
    ({"sentence": "great film", "sentiment": "positive"}, "classification", {"text": "sentence", "label": "sentiment"}),
    ({"text": "A whole document.", "path": "a.md"}, "text", {"text": "text"}),
    ({"context": "Paris is in France.", "question": "Where is Paris?", "answers": {"text": ["France"]}}, "squad",
     {"context": "context", "prompt": "question", "completion": "answers"}),
])
def test_detects_each_layout(row, name, fields):
    fmt = detect_format([row, row])
    assert (fmt.name, fmt.fields) == (name, fields)
    assert fmt.name in FORMATS and fmt.explanation.endswith(".")
    assert isinstance(one(row, fmt), Example)


def test_system_column_is_kept_as_a_system_turn():
    rows = [{"system": "Be brief.", "question": "Why?", "answer": "Because."}]
    fmt = detect_format(rows)
    assert fmt.fields == {"prompt": "question", "completion": "answer", "system": "system"}
    assert one(rows[0], fmt).messages == msgs(("system", "Be brief."), ("user", "Why?"), ("assistant", "Because."))


def test_label_must_be_short_and_repeating():
    same = [{"sentence": f"review {i}", "label": "x" * 65} for i in range(10)]
    with pytest.raises(SchemaError, match="Could not recognise the format"):
        detect_format(same)  # repeats, but too long for a label
    assert detect_format([dict(r, label="x" * 64) for r in same]).name == "classification"
    varied = [{"text": f"review {i}", "label": f"judgement {i}"} for i in range(10)]
    fmt = detect_format(varied)  # all distinct: not a label, and 'text' alone is a document corpus
    assert (fmt.name, fmt.label_column) == ("text", None)
    assert detect_format(varied[:5] + [dict(r, label="judgement 0") for r in varied[5:]]).name == "classification"


def test_two_formats_fitting_equally_is_an_error():
    row = {"messages": msgs(("user", "a"), ("assistant", "b")), "prompt": "a", "completion": "b"}
    with pytest.raises(SchemaError) as info:
        detect_format([row])
    message = str(info.value)
    assert message.startswith("The rows fit two formats equally: chatml (")
    assert "and prompt_completion (" in message
    assert 'for example "messages=messages" or "prompt=prompt,completion=completion"' in message
    assert detect_format([row], {"messages": "messages"}).name == "chatml"
    with pytest.raises(SchemaError, match="prompt_completion .* prompt_completion"):
        detect_format([{"prompt": "a", "completion": "b", "question": "c", "answer": "d"}])


def test_wrong_column_names_list_columns_and_a_mapping_that_then_works():
    rows = [{"q": "How do I reset my password?", "a": "Use the link on the login page.", "meta": {"lang": "en"}}]
    with pytest.raises(SchemaError) as info:
        detect_format(rows)
    message = str(info.value)
    assert "Columns seen: q (string), a (string), meta.lang (string)." in message
    assert 'Pass a mapping of roles to columns, for example "prompt=q,completion=a"' in message
    fmt = detect_format(rows, parse_mapping("prompt=q,completion=a"))
    assert (fmt.name, fmt.fields, fmt.label_column) == ("prompt_completion", {"prompt": "q", "completion": "a"}, None)
    assert fmt.explanation == "Used the given mapping (prompt <- q, completion <- a): prompt_completion."
    example = one(rows[0], fmt)
    assert example.messages == msgs(("user", "How do I reset my password?"),
                                    ("assistant", "Use the link on the login page."))


def test_mapping_wins_and_can_set_only_the_label():
    rows = [{"text": "hi", "category": "greet", "topic": "small talk"}, {"text": "bye", "category": "greet",
                                                                          "topic": "small talk"}]
    assert detect_format(rows).label_column == "category"
    fmt = detect_format(rows, {"label": "topic"})
    assert (fmt.name, fmt.fields, fmt.label_column) == ("classification", {"text": "text", "label": "category"},
                                                        "topic")
    fmt = detect_format(rows, parse_mapping("text=text,label=topic"))
    assert fmt.fields == {"text": "text", "label": "topic"}
    assert one(rows[0], fmt).label == "small talk"


def test_mapping_errors():
    rows = [{"q": "a", "a": "b"}]
    with pytest.raises(SchemaError, match="not in the data: completion=answer. Columns seen: q .string., a"):
        detect_format(rows, {"prompt": "q", "completion": "answer"})
    with pytest.raises(SchemaError, match=r"mapping roles \['prompt'\] do not make a format"):
        detect_format(rows, {"prompt": "q"})
    with pytest.raises(SchemaError, match=r"mapping roles \['input'\] have no place in the prompt_completion format, "
                                          "which takes completion, label, prompt, system"):
        detect_format(rows, {"prompt": "q", "completion": "a", "input": "q"})
    with pytest.raises(SchemaError, match="no parsed rows"):
        detect_format([])


def test_parse_mapping():
    assert parse_mapping(" prompt = question , completion=answer,label=category,") == {
        "prompt": "question", "completion": "answer", "label": "category"}
    assert parse_mapping("prompt=userInput.text") == {"prompt": "userInput.text"}
    with pytest.raises(SchemaError, match="mapping item 'prompt' is not role=column"):
        parse_mapping("prompt")
    with pytest.raises(SchemaError, match="unknown role 'question' in 'question=q'; roles are instruction, input"):
        parse_mapping("question=q")
    with pytest.raises(SchemaError, match="role 'prompt' is given twice"):
        parse_mapping("prompt=a,prompt=b")
    with pytest.raises(SchemaError, match="is empty"):
        parse_mapping(" , ")
    with pytest.raises(SchemaError, match="not role=column"):
        parse_mapping("prompt=")


# ---------------------------------------------------------------------------------------------- conversion

def test_alpaca_joins_instruction_and_input():
    fmt = detect_format([{"instruction": "Translate", "input": "Hallo", "output": "Hello"}])
    assert one({"instruction": "Translate", "input": "Hallo", "output": "Hello"}, fmt).messages == msgs(
        ("user", "Translate\n\nHallo"), ("assistant", "Hello"))
    assert one({"instruction": "Say hi", "input": "  ", "output": "hi"}, fmt).messages == msgs(
        ("user", "Say hi"), ("assistant", "hi"))
    reject = one({"instruction": "Say hi", "input": ""}, fmt)
    assert (reject.reason, reject.detail, reject.source, reject.data) == (
        "schema_error", "missing field 'output'", SRC, {"instruction": "Say hi", "input": ""})


def test_sharegpt_roles_are_mapped():
    row = {"conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "hi"},
                             {"from": "gpt", "value": "hello"}, {"from": "user", "value": "more"},
                             {"from": "bot", "value": "sure"}, {"from": "Human", "value": "and?"},
                             {"from": "model", "value": "done"}]}
    assert one(row).messages == msgs(("system", "Be kind."), ("user", "hi"), ("assistant", "hello"), ("user", "more"),
                                     ("assistant", "sure"), ("user", "and?"), ("assistant", "done"))


def test_chat_rows_that_do_not_fit_are_rejected():
    fmt = DetectedFormat("chatml", {"messages": "messages"})
    cases = [
        ({"messages": "hi"}, "field 'messages' must be a list of {role, content}, got string"),
        ({"messages": []}, "field 'messages' is an empty list"),
        ({"messages": [{"role": "user", "content": "hi"}, "hello"]},
         "field 'messages' must be a list of {role, content}; turn 1 is a string"),
        ({"messages": msgs(("user", "hi"), ("tool", "42"))},
         "field 'messages' must be a list of {role, content}; turn 1 has role 'tool' (expected system, user or "
         "assistant)"),
        ({"messages": msgs(("user", "hi"), ("assistant", "hello"), ("user", "and?"))},
         "field 'messages': the last turn must be the assistant's, found 'user'"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]},
         "field 'messages' turn 1 has no text content (got null)"),
        ({"other": 1}, "missing field 'messages'"),
    ]
    for data, detail in cases:
        result = one(data, fmt)
        assert isinstance(result, Reject) and (result.reason, result.detail) == ("schema_error", detail), data
    sharegpt = DetectedFormat("sharegpt", {"conversations": "conversations"})
    assert one({"conversations": [{"from": "human"}]}, sharegpt).detail == \
        "field 'conversations' turn 0 has no text content (got null)"
    assert one({"conversations": [{"from": "human", "value": "hi"}, 3]}, sharegpt).detail == \
        "field 'conversations' must be a list of {from, value}; turn 1 is a number"


def test_openai_content_parts_are_joined():
    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "you"}]},
                        {"role": "assistant", "content": "hello"}]}
    assert one(row).messages == msgs(("user", "Hi you"), ("assistant", "hello"))


def test_parse_errors_become_parse_error_rejects():
    fmt = DetectedFormat("prompt_completion", {"prompt": "prompt", "completion": "completion"})
    result = to_example(RawRow(SRC, None, "invalid JSON: Expecting value at column 1"), fmt)
    assert result == Reject(SRC, "parse_error", "invalid JSON: Expecting value at column 1", data=None)


def test_preference_variants():
    explicit = {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}
    example = one(explicit)
    assert (example.messages, example.chosen, example.rejected) == (msgs(("user", "Capital of France?")), "Paris.",
                                                                   "Lyon.")
    implicit = {"chosen": msgs(("user", "Hi"), ("assistant", "Hello!")),
                "rejected": msgs(("user", "Hi"), ("assistant", "Go away."))}
    example = one(implicit)
    assert (example.messages, example.chosen, example.rejected) == (msgs(("user", "Hi")), "Hello!", "Go away.")
    fmt = detect_format([implicit])
    diverging = {"chosen": msgs(("user", "Hi"), ("assistant", "Hello!")),
                 "rejected": msgs(("user", "Yo"), ("assistant", "Go away."))}
    assert one(diverging, fmt).detail == "fields 'chosen' and 'rejected' continue different conversations"
    assert one({"chosen": msgs(("assistant", "a")), "rejected": msgs(("assistant", "b"))}, fmt).detail == \
        "missing field 'prompt'"


def test_openai_preference_rejects():
    fmt = DetectedFormat("openai_preference", {"prompt": "input.messages", "chosen": "preferred_output",
                                               "rejected": "non_preferred_output"})
    good = {"input": {"messages": msgs(("user", "hi"))}, "preferred_output": msgs(("assistant", "a")),
            "non_preferred_output": msgs(("assistant", "b"))}
    assert (one(good, fmt).chosen, one(good, fmt).rejected) == ("a", "b")
    assert one({**good, "input": {}}, fmt).detail == "missing field 'input.messages'"
    assert one({**good, "input": {"messages": msgs(("user", "hi"), ("assistant", "x"))}}, fmt).detail == \
        "the prompt must end with the user's turn, found 'assistant'"
    assert one({**good, "preferred_output": msgs(("user", "a"))}, fmt).detail == \
        "field 'preferred_output': the last turn must be the assistant's, found 'user'"


def test_trl_conversational_prompt_completion():
    row = {"prompt": msgs(("system", "Terse."), ("user", "2+2?")), "completion": msgs(("assistant", "4"))}
    assert one(row).messages == msgs(("system", "Terse."), ("user", "2+2?"), ("assistant", "4"))


def test_classification_and_label_values():
    fmt = detect_format([{"text": "great", "label": 1}, {"text": "awful", "label": 0}, {"text": "ok", "label": 1}])
    example = one({"text": "great", "label": 1}, fmt)
    assert (example.messages, example.label) == (msgs(("user", "great"), ("assistant", "1")), "1")
    assert one({"text": "meh", "label": ""}, fmt).detail == \
        "field 'label' is empty (a classification row needs a label)"
    assert one({"text": "meh"}, fmt).detail == "missing field 'label'"


def test_text_rows():
    fmt = detect_format([{"text": "Doc one.", "path": "a.md"}])
    example = one({"text": "Doc one.", "path": "a.md"}, fmt)
    assert (example.text, example.messages, example.kind, example.metadata) == ("Doc one.", [], "text",
                                                                                {"path": "a.md"})


def test_squad_answer_shapes():
    fmt = DetectedFormat("squad", {"context": "context", "prompt": "question", "completion": "answers"})
    base = {"context": "C.", "question": "Q?"}
    for answers in ({"text": ["A", "B"], "answer_start": [0, 0]}, [{"text": "A"}], "A"):
        assert one({**base, "answers": answers}, fmt).messages[-1]["content"] == "A"
    assert one({**base, "answers": {"text": []}}, fmt).detail == "missing field 'answers' (the question has no answer)"


def test_non_string_values_are_serialized():
    fmt = DetectedFormat("prompt_completion", {"prompt": "q", "completion": "a"})
    example = one({"q": 12, "a": {"é": [1, True], "b": None}}, fmt)
    assert example.messages == msgs(("user", "12"), ("assistant", '{"b": null, "é": [1, true]}'))
    from datetime import date  # Parquet and Arrow hand over dates, decimals, ...

    example = one({"q": date(2024, 1, 2), "a": [date(2024, 1, 3)]}, fmt)
    assert example.messages == msgs(("user", "2024-01-02"), ("assistant", '["2024-01-03"]'))


def test_metadata_keeps_short_scalar_columns_and_label_column():
    fmt = DetectedFormat("prompt_completion", {"prompt": "question", "completion": "answer"}, label_column="intent")
    row = {"question": "q", "answer": "a", "intent": "refund", "id": 7, "score": 0.5, "ok": True, "none": None,
           "long": "x" * 201, "nested": {"k": "v"}, "tags": ["a"], "__split__": "train"}
    example = one(row, fmt)
    assert example.label == "refund"
    assert example.metadata == {"intent": "refund", "id": 7, "score": 0.5, "ok": True, "__split__": "train"}
    assert one({**row, "intent": None}, fmt).label is None


def test_loaded_folders_convert_end_to_end(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    ds = datasets.Dataset.from_dict({"sentence": ["bad", "good", "fine", "awful"], "label": [0, 1, 1, 0]},
                                    features=features)
    datasets.DatasetDict({"train": ds, "test": ds.select([1])}).save_to_disk(str(tmp_path / "dd"))
    rows = list(iter_rows(tmp_path / "dd"))
    fmt = detect(rows)
    assert (fmt.name, fmt.fields) == ("classification", {"text": "sentence", "label": "label"})
    examples, _ = convert(rows, fmt)
    assert [(e.messages[1]["content"], e.label, e.metadata) for e in examples] == [
        ("negative", "negative", {"__split__": "train"}), ("positive", "positive", {"__split__": "train"}),
        ("positive", "positive", {"__split__": "train"}), ("negative", "negative", {"__split__": "train"}),
        ("positive", "positive", {"__split__": "test"})]


def test_every_row_becomes_exactly_one_result():
    rows = [RawRow(SourceRef("f", line=i), data) for i, data in enumerate([
        {"prompt": "a", "completion": "b"}, None, {"prompt": "a"}, {"prompt": ["x"], "completion": "b"},
        {"completion": "b"}, {"prompt": msgs(("user", "a")), "completion": 3}], start=1)]
    rows[1].error = "invalid JSON: Expecting value at column 1"
    fmt = detect(rows[:1])
    results = [to_example(r, fmt) for r in rows]
    assert [type(r).__name__ for r in results] == ["Example", "Reject", "Reject", "Example", "Reject", "Example"]
    assert Counter(r.reason for r in results if isinstance(r, Reject)) == {"parse_error": 1, "schema_error": 2}
    assert [r.source.line for r in results] == [1, 2, 3, 4, 5, 6]
    assert results[3].messages[0]["content"] == '["x"]'
