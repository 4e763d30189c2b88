"""End to end: `prepare` on the real shared datasets and on broken files; every row accounted for."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from real_data import full_or_slice

from executor.data.pipeline import PrepareConfig, prepare
from executor.data.schema import SchemaError

REPORT_KEYS = {"input_rows", "kept", "rejected", "duplicates_removed", "near_duplicates_removed", "pii_redacted",
               "splits", "detected_format"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run(input_path, out, tokenizer, **kw):
    return prepare(PrepareConfig(input=Path(input_path), out=Path(out), tokenizer=tokenizer, **kw))


def check_accounting(report, out: Path) -> dict[str, list[dict]]:
    """The nothing-lost invariant, checked on the files themselves."""
    files = {name: read_jsonl(out / f"{name}.jsonl") for name in ("train", "validation", "test", "rejects")}
    assert REPORT_KEYS <= set(report)
    assert report["accounted_for"]
    assert report["kept"] == sum(report["splits"].values())
    assert report["input_rows"] == report["kept"] + sum(report["rejected"].values())
    for split in ("train", "validation", "test"):
        assert len(files[split]) == report["splits"][split]
    assert len(files["rejects"]) == sum(report["rejected"].values())
    assert Counter(r["reason"] for r in files["rejects"]) == Counter(
        {k: v for k, v in report["rejected"].items() if v})
    if report["output_format"] != "openai":  # OpenAI's format carries no source key
        sources = [json.dumps(r["source"], sort_keys=True)
                   for name in ("train", "validation", "test", "rejects") for r in files[name]]
        assert len(sources) == len(set(sources)) == report["input_rows"], "a row is missing or counted twice"
    for name in ("report.md", "report.png", "review.csv"):
        assert (out / name).stat().st_size > 0
    return files


def test_banking77_is_stratified_classification(shared_datasets, tmp_path, smol_tokenizer):
    report = run(shared_datasets / "banking77" / "test.csv", tmp_path, smol_tokenizer)
    files = check_accounting(report, tmp_path)
    assert report["detected_format"]["name"] == "classification"
    assert report["input_rows"] == full_or_slice(3080, 308)
    labels = report["labels"]
    assert len(labels["all"]) == 77
    # 40 rows per intent in the test file (4 in the shipped slice): every intent keeps its 80/10/10 share.
    for label, n in labels["all"].items():
        assert labels["test"].get(label, 0) == pytest.approx(n * 0.1, abs=1)
    row = files["train"][0]
    assert row["messages"][-1]["role"] == "assistant" and row["messages"][-1]["content"] == row["label"]


def test_customer_support_keeps_placeholders_and_embedded_newlines(shared_datasets, tmp_path, smol_tokenizer):
    report = run(shared_datasets / "customer_support" / "bitext_customer_support_train.csv", tmp_path,
                 smol_tokenizer, output_format="openai")
    files = check_accounting(report, tmp_path)
    assert report["input_rows"] == full_or_slice(4514, 54)
    assert report["detected_format"]["name"] == "prompt_completion"
    assert report["settings"]["stratify"] == "category"
    text = json.dumps(files["train"] + files["validation"] + files["test"])
    assert full_or_slice("{{Order Number}}", "{{Customer Support Phone Number}}") in text  # placeholders are not PII
    assert set(files["train"][0]) == {"messages"}  # OpenAI's format carries no extra keys


def test_openai_dpo_pairs(shared_datasets, tmp_path, smol_tokenizer):
    report = run(shared_datasets / "preference" / "orca_dpo_pairs_validation.jsonl", tmp_path, smol_tokenizer)
    files = check_accounting(report, tmp_path)
    assert report["detected_format"]["name"] == "openai_preference"
    assert report["input_rows"] == full_or_slice(284, 6)
    row = files["train"][0]
    assert set(row) >= {"prompt", "chosen", "rejected"} and row["chosen"][0]["role"] == "assistant"


def test_gsm8k_as_prompt_completion_in_alpaca(shared_datasets, tmp_path, smol_tokenizer):
    report = run(shared_datasets / "gsm8k" / "test.jsonl", tmp_path, smol_tokenizer, output_format="alpaca",
                 split=(0.5, 0.25, 0.25), seed=3)
    files = check_accounting(report, tmp_path)
    assert report["input_rows"] == full_or_slice(1319, 40)
    assert report["splits"]["train"] == pytest.approx(report["kept"] * 0.5, abs=1)
    assert "####" in files["train"][0]["output"]


def test_restaurant8k_needs_a_mapping_then_works(shared_datasets, tmp_path, smol_tokenizer):
    source = shared_datasets / "extraction" / "restaurant8k_train_0.json"
    with pytest.raises(SchemaError, match="userInput.text"):
        run(source, tmp_path / "a", smol_tokenizer)
    report = run(source, tmp_path / "b", smol_tokenizer, mapping={"prompt": "userInput.text", "completion": "labels"})
    files = check_accounting(report, tmp_path / "b")
    assert report["detected_format"]["name"] == "prompt_completion"
    kept = files["train"] + files["validation"] + files["test"]
    assert any(r["messages"][-1]["content"].startswith("[{") for r in kept)  # JSON-serialized labels


def test_split_is_deterministic_for_a_seed(shared_datasets, tmp_path, smol_tokenizer):
    source = shared_datasets / "gsm8k" / "test.jsonl"
    run(source, tmp_path / "a", smol_tokenizer, seed=11)
    run(source, tmp_path / "b", smol_tokenizer, seed=11)
    run(source, tmp_path / "c", smol_tokenizer, seed=12)
    a, b, c = ((tmp_path / d / "test.jsonl").read_text() for d in "abc")
    assert a == b and a != c


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_broken_jsonl_lines_are_rejected_with_their_line(tmp_path, smol_tokenizer):
    rows = [json.dumps({"prompt": f"Question number {i} about refunds?", "completion": f"Answer {i}: see policy."})
            for i in range(30)]
    rows.insert(10, '{"prompt": "truncated line", "completi')
    rows.insert(20, json.dumps({"prompt": "no completion here"}))
    source = write(tmp_path / "data.jsonl", "\n".join(rows) + "\n")
    report = run(source, tmp_path / "out", smol_tokenizer)
    files = check_accounting(report, tmp_path / "out")
    assert report["input_rows"] == 32 and report["kept"] == 30
    rejects = {r["source"]["line"]: r for r in files["rejects"]}
    assert rejects[11]["reason"] == "parse_error"
    assert rejects[21]["reason"] == "schema_error" and "completion" in rejects[21]["detail"]


def test_duplicates_pii_and_filters_are_counted(tmp_path, smol_tokenizer):
    base = "How do I change the delivery address for an order that has already shipped to my old flat?"
    answer = ("Once an order has shipped we can no longer change its address ourselves, but the carrier can: "
              "contact them with the tracking number from your confirmation email and ask for a redirect to "
              "your new address, or pick the parcel up at their depot.")
    rows = [
        {"prompt": base, "completion": answer},
        {"prompt": base, "completion": answer},
        {"prompt": base.upper(), "completion": answer},
        {"prompt": base, "completion": answer + " Thanks"},  # a near-duplicate
        {"prompt": "Email me at jane.doe@example.com about order 1234", "completion": "We will email you soon."},
        {"prompt": "Repeat after me", "completion": "Repeat after me"},
        {"prompt": "Is this fine?", "completion": ""},
    ] + [{"prompt": f"Unrelated question {i} about topic {i * 7}?", "completion": f"Unrelated answer {i}."}
         for i in range(20)]
    source = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    report = run(source, tmp_path / "out", smol_tokenizer)
    files = check_accounting(report, tmp_path / "out")
    assert report["duplicates_removed"] == 2  # exact, and exact after case folding
    assert report["near_duplicates_removed"] == 1
    assert report["pii_redacted"] == {"EMAIL": 1}
    assert report["rejected"]["response_equals_prompt"] == 1 and report["rejected"]["empty"] == 1
    kept_text = json.dumps(files["train"] + files["validation"] + files["test"])
    assert "<EMAIL>" in kept_text and "jane.doe" not in kept_text and "order 1234" in kept_text
    no_pii = run(source, tmp_path / "raw", smol_tokenizer, redact_pii=False)
    assert no_pii["pii_redacted"] == {}


def test_too_long_rows_are_rejected(tmp_path, smol_tokenizer):
    rows = [{"prompt": "word " * 300, "completion": "long one"}] + [
        {"prompt": f"Short question {i}?", "completion": f"Short answer {i}."} for i in range(10)]
    source = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    report = run(source, tmp_path / "out", smol_tokenizer, max_length=128)
    assert report["rejected"]["too_long"] == 1
    assert report["token_lengths"]["all"]["max"] <= 128


def test_document_folder_is_a_text_corpus(tmp_path, smol_tokenizer):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    write(docs / "a.md", "# Refund policy\n\nRefunds take five business days.")
    write(docs / "sub" / "b.txt", "Shipping takes two days within the country.")
    report = run(docs, tmp_path / "out", smol_tokenizer)
    files = check_accounting(report, tmp_path / "out")
    assert report["detected_format"]["name"] == "text"
    kept = files["train"] + files["validation"] + files["test"]
    assert sorted(r["text"] for r in kept) == ["# Refund policy\n\nRefunds take five business days.",
                                              "Shipping takes two days within the country."]


def test_empty_and_binary_files_are_clear_errors(tmp_path, smol_tokenizer):
    from executor.data.load import DataError

    with pytest.raises(DataError, match="empty"):
        run(write(tmp_path / "empty.jsonl", b""), tmp_path / "o1", smol_tokenizer)
    with pytest.raises(DataError, match="binary"):
        run(write(tmp_path / "img.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8),
            tmp_path / "o2", smol_tokenizer)


ROW = st.fixed_dictionaries({
    "prompt": st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40),
    "completion": st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40),
    "category": st.sampled_from(["a", "b", "c"]),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(rows=st.lists(st.one_of(ROW, st.just("{broken"), st.just("[1, 2]")), min_size=1, max_size=40),
       seed=st.integers(0, 1000))
def test_every_row_is_accounted_for_and_splits_are_disjoint(tmp_path_factory, smol_tokenizer, rows, seed):
    work = tmp_path_factory.mktemp("prop")
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    if not any(isinstance(r, dict) for r in rows):
        lines.append(json.dumps({"prompt": "anchor question?", "completion": "anchor answer."}))
    source = write(work / "d.jsonl", "\n".join(lines) + "\n")
    report = run(source, work / "out", smol_tokenizer, seed=seed)
    files = check_accounting(report, work / "out")
    ids = {split: {json.dumps(r["source"], sort_keys=True) for r in files[split]}
           for split in ("train", "validation", "test")}
    assert not (ids["train"] & ids["validation"] or ids["train"] & ids["test"] or ids["validation"] & ids["test"])
    shutil.rmtree(work)
