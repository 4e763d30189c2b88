"""Loading: the shared real datasets, and the broken files teams really send (truncated, mixed encodings, binary)."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from pathlib import Path

import pytest
import real_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from real_data import full_or_slice

from executor.data.load import DataError, detect_encoding, estimate_rows, iter_rows


def shared(relative: str) -> Path:
    path = real_data.path(relative)  # ../shared/datasets, or the slice the repository ships
    return path


def rows_of(path) -> list:
    return list(iter_rows(path))


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


# ---------------------------------------------------------------------------------------------- real datasets

def test_banking77_csv():
    path = shared("banking77/train.csv")
    rows = rows_of(path)
    n = full_or_slice(10_003, 154)
    assert len(rows) == n
    assert not [r for r in rows if r.error]
    assert rows[0].data == {"text": "I am still waiting on my card?", "category": "card_arrival"}
    assert rows[0].source.line == 2 and rows[0].source.file == str(path)
    assert estimate_rows(path) == n


def test_customer_support_csv_embedded_newlines():
    path = shared("customer_support/bitext_customer_support_train.csv")
    rows = rows_of(path)
    assert len(rows) == full_or_slice(4_514, 54)  # 31,221 physical lines in full: newlines inside quoted responses
    assert not [r for r in rows if r.error]
    assert list(rows[0].data)[:4] == ["context", "role", "instruction", "intent"]
    assert rows[0].data["instruction"] == "how can I cancel purchase 113542617735902?"
    assert rows[0].data["response"].count("\n") == 8
    # Each record's source line is the physical line it starts on: that line begins with the record's fields.
    lines = path.read_text(encoding="utf-8").split("\n")
    for row in rows:
        assert lines[row.source.line - 1].startswith(f"{row.data['context']},{row.data['role']},"), row.source
    assert rows[1].source.line == 2 + rows[0].data["response"].count("\n") + 1
    assert estimate_rows(path) == len(rows)


def test_orca_dpo_jsonl():
    path = shared("preference/orca_dpo_pairs_validation.jsonl")
    rows = rows_of(path)
    assert len(rows) == full_or_slice(284, 6)
    assert [r.source.line for r in rows] == list(range(1, len(rows) + 1))
    assert set(rows[0].data) == {"input", "preferred_output", "non_preferred_output"}
    assert estimate_rows(path) == len(rows)


def test_gsm8k_jsonl():
    path = shared("gsm8k/test.jsonl")
    rows = rows_of(path)
    assert len(rows) == full_or_slice(1_319, 40)
    assert rows[-1].source.line == len(rows)
    assert rows[0].data["question"].startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert rows[0].data["answer"].endswith("#### 18")
    assert estimate_rows(path) == len(rows)


def test_restaurant8k_json_array_streams_with_lines():
    path = shared("extraction/restaurant8k_train_0.json")
    rows = rows_of(path)
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert len(rows) == len(expected) == full_or_slice(8_198, 60)
    assert [r.data for r in rows] == expected
    assert [r.source.item for r in rows[:3]] == [0, 1, 2]
    assert [r.source.line for r in rows[:3]] == [2, 21, 42]  # the line of each item's '{'
    lines = path.read_text(encoding="utf-8").split("\n")
    assert all(lines[r.source.line - 1].strip() == "{" for r in rows)
    assert estimate_rows(path) is None


def test_covid_qa_squad_flattens_to_questions():
    path = shared("rag/covidqa_200423.json")
    rows = rows_of(path)
    assert len(rows) == full_or_slice(1_380, 6)
    first = rows[0].data
    question, answer, opening, id_ = COVID_FIRST[real_data.FULL]
    assert (first["question"], first["answer"], first["id"]) == (question, answer, id_)
    assert first["context"].startswith(opening)
    assert first["title"] is None and first["is_impossible"] is False
    assert "document_id" in first
    assert [r.source.item for r in rows[:2]] == [0, 1] and rows[0].source.line is None
    assert len({r.data["context"] for r in rows}) == full_or_slice(98, 3)


# The first question of the full file, and of the slice (its first paper is the full file's 94th).
COVID_FIRST = {
    True: ("What is the main cause of HIV-1 infection in children?",
           "Mother-to-child transmission (MTCT) is the main cause of HIV-1 infection in children worldwide. ",
           "Functional Genetic Variants in DC-SIGNR", 262),
    False: ("Where can published genomic sequences be found for the 2019-nCoV virus?",
            "Global Initiative on Sharing All Influenza Data (GISAID) (https://www.gisaid.org/)",
            "Note from the editors: novel coronavirus (2019-nCoV)", 529),
}


# ---------------------------------------------------------------------------------------------- JSON Lines

def test_truncated_line_in_the_middle_keeps_the_rest(tmp_path):
    lines = [json.dumps({"q": f"question {i}", "a": str(i)}) for i in range(5)]
    lines[2] = '{"q": "question 2", "a'
    path = write(tmp_path / "d.jsonl", "\n".join(lines) + "\n")
    rows = rows_of(path)
    assert [r.source.line for r in rows] == [1, 2, 3, 4, 5]
    assert [r.data["a"] for r in rows if r.data] == ["0", "1", "3", "4"]
    bad = rows[2]
    assert bad.data is None
    assert bad.error == ("invalid JSON: Unterminated string starting at column 21 "
                         "(the record ends early: is it truncated?)")
    assert str(bad.source) == f"{path}:3"


def test_jsonl_non_objects_and_blank_lines(tmp_path):
    path = write(tmp_path / "d.ndjson", '{"a": 1}\n\n[1, 2]\n   \n"text"\n{"a" 2}\n{"a": 3}')
    rows = rows_of(path)
    assert [(r.source.line, r.data, r.error) for r in rows] == [
        (1, {"a": 1}, None),
        (3, None, "expected a JSON object, got list"),
        (5, None, "expected a JSON object, got string"),
        (6, None, "invalid JSON: Expecting ':' delimiter at column 6"),
        (7, {"a": 3}, None),
    ]
    assert estimate_rows(path) == 7  # a hint: lines, blank ones included


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_big_files_stream_in_little_memory(tmp_path, suffix):
    import tracemalloc

    n = 100_000
    if suffix == ".jsonl":
        body = "".join(json.dumps({"text": f"row {i} " + "x" * 150, "label": str(i % 7)}) + "\n" for i in range(n))
    else:
        body = "text,label\n" + "".join(f"row {i} {'x' * 150},{i % 7}\n" for i in range(n))
    path = write(tmp_path / f"big{suffix}", body)
    assert path.stat().st_size > 16_000_000
    tracemalloc.start()
    try:
        count = sum(1 for row in iter_rows(path) if row.data is not None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    assert peak < 2_000_000, f"peak {peak} bytes: the file was read whole"


def test_json_with_objects_on_lines_is_read_as_jsonl(tmp_path):
    path = write(tmp_path / "d.json", '{"a": 1}\n{"a": 2\n{"a": 3}\n')
    assert [(r.source.line, r.data, r.error is not None) for r in rows_of(path)] == [
        (1, {"a": 1}, False), (2, None, True), (3, {"a": 3}, False)]


# ---------------------------------------------------------------------------------------------- JSON

def test_json_array_lines_items_and_truncation(tmp_path):
    path = write(tmp_path / "d.json", '\n\n[ {"a": 1},\n  {"a": 2}, 3,\n {"a": ')
    rows = rows_of(path)
    assert [(r.source.line, r.source.item, r.data, r.error) for r in rows] == [
        (3, 0, {"a": 1}, None),
        (4, 1, {"a": 2}, None),
        (4, 2, None, "expected a JSON object, got number"),
        (5, 3, None, "invalid JSON: Expecting value at line 5, column 8 (the record ends early: is it truncated?)"),
    ]


def test_json_array_syntax_error_names_line_and_column(tmp_path):
    path = write(tmp_path / "d.json", '[{"a": 1},\n {"a": 2,\n"b" 2}, {"a": 3}]')
    rows = rows_of(path)
    assert rows[0].data == {"a": 1}
    assert (rows[1].source.line, rows[1].error) == (2, "invalid JSON: Expecting ':' delimiter at line 3, column 5")
    assert len(rows) == 2  # past a syntax error item boundaries are unknown: nothing is invented


def test_json_array_items_larger_than_the_read_window(tmp_path):
    items = [{"i": i, "text": "word " * (i * 9000)} for i in range(4)]  # up to 135k characters per item
    path = write(tmp_path / "d.json", "[\n" + ",\n".join(json.dumps(i) for i in items) + "\n]\n")
    rows = rows_of(path)
    assert [r.data for r in rows] == items
    assert [r.source.line for r in rows] == [2, 3, 4, 5]


def test_json_object_with_records_key(tmp_path):
    path = write(tmp_path / "d.json", json.dumps({"version": 2, "rows": [{"a": 1}, {"a": 2}]}, indent=2))
    rows = rows_of(path)
    assert [(r.source.item, r.data) for r in rows] == [(0, {"a": 1}), (1, {"a": 2})]


def test_json_object_with_records_under_an_unknown_key_is_an_error(tmp_path):
    path = write(tmp_path / "d.json", json.dumps({"train": [{"a": 1}]}, indent=2))
    with pytest.raises(DataError, match=r"records are under \['train'\]; expected them under one of"):
        rows_of(path)


def test_squad_layout_small(tmp_path):
    squad = {"version": "1.1", "data": [{"title": "Refunds", "paragraphs": [{
        "context": "Refunds take five days.",
        "qas": [{"id": "q1", "question": "How long do refunds take?", "answers": [
            {"text": "five days", "answer_start": 13}, {"text": "5 days", "answer_start": 13}]},
            {"id": "q2", "question": "Who pays?", "answers": [], "is_impossible": True}]}]}]}
    rows = rows_of(write(tmp_path / "squad.json", json.dumps(squad)))
    assert [r.data for r in rows] == [
        {"context": "Refunds take five days.", "question": "How long do refunds take?", "answer": "five days",
         "title": "Refunds", "id": "q1"},
        {"context": "Refunds take five days.", "question": "Who pays?", "answer": None, "title": "Refunds",
         "id": "q2", "is_impossible": True},
    ]


def test_invalid_json_document_is_a_data_error(tmp_path):
    path = write(tmp_path / "d.json", '{\n  "data": [\n    {"a": 1},\n    {"a": \n')
    with pytest.raises(DataError, match=r"invalid JSON at line 5, column 1: Expecting value\. If the file holds "):
        rows_of(path)


# ---------------------------------------------------------------------------------------------- CSV / TSV

def test_csv_embedded_newlines_report_the_starting_line(tmp_path):
    content = ('\ntext,label\n"line one\nline two",a\nplain,b\n\n"multi\r\nline\r\nthree",c\n'
               '"with ""quotes"", and comma",d\nlast,\n')
    rows = rows_of(write(tmp_path / "d.csv", content))
    assert [(r.source.line, r.data) for r in rows] == [
        (3, {"text": "line one\nline two", "label": "a"}),
        (5, {"text": "plain", "label": "b"}),
        (7, {"text": "multi\r\nline\r\nthree", "label": "c"}),
        (10, {"text": 'with "quotes", and comma', "label": "d"}),
        (11, {"text": "last", "label": ""}),  # empty stays "" (nothing stripped)
    ]


def test_csv_wrong_field_count_is_a_row_error(tmp_path):
    path = write(tmp_path / "d.csv", 'text,label\na,b\nc,d,e\nf,g\n"open quote,h\ni,j\n')
    rows = rows_of(path)
    assert [(r.source.line, r.data) for r in rows[:2]] == [(2, {"text": "a", "label": "b"}), (3, None)]
    assert rows[1].error == "expected 2 fields (one per header column), found 3"
    assert rows[2].data == {"text": "f", "label": "g"}
    assert rows[3].source.line == 5
    assert rows[3].error == ("expected 2 fields (one per header column), found 1; the record runs from line 5 "
                             "to 6: is a quote left open?")
    assert len(rows) == 4


def test_tsv_and_semicolon_csv(tmp_path):
    tsv = rows_of(write(tmp_path / "d.tsv", "text\tlabel\nhi, there\tgreet\n"))
    assert [r.data for r in tsv] == [{"text": "hi, there", "label": "greet"}]
    semicolons = rows_of(write(tmp_path / "excel.csv", "text;label\nhallo, welt;a\n"))  # European Excel export
    assert [r.data for r in semicolons] == [{"text": "hallo, welt", "label": "a"}]


def test_csv_header_problems(tmp_path):
    with pytest.raises(DataError, match=r"repeats column names \['text'\]"):
        rows_of(write(tmp_path / "dup.csv", "text,text\na,b\n"))
    with pytest.raises(DataError, match="no header row"):
        rows_of(write(tmp_path / "blank.csv", "\n\n"))
    rows = rows_of(write(tmp_path / "unnamed.csv", ",text\n0,a\n"))  # pandas' index column has no name
    assert rows[0].data == {"column_1": "0", "text": "a"}


def test_csv_cells_larger_than_the_csv_default_limit(tmp_path):
    big = "x" * 200_000
    rows = rows_of(write(tmp_path / "d.csv", f'text,label\n"{big}",a\n'))
    assert rows[0].data == {"text": big, "label": "a"}


# ---------------------------------------------------------------------------------------------- encodings

def test_mixed_utf8_and_latin1_lines(tmp_path):
    content = ('{"t": "café utf8"}\n'.encode() + '{"t": "café latin"}\n'.encode("latin-1")
               + '{"t": "naïve “quoted”"}\n'.encode("cp1252") + '{"t": "Grüße"}\n'.encode())
    path = write(tmp_path / "mixed.jsonl", content)
    assert [r.data["t"] for r in rows_of(path)] == ["café utf8", "café latin", "naïve “quoted”", "Grüße"]
    assert detect_encoding(content) == "utf-8"


def test_latin1_csv(tmp_path):
    content = "text,label\ncafé crème,food\nnaïve résumé,other\n".encode("latin-1")
    path = write(tmp_path / "d.csv", content)
    assert [r.data["text"] for r in rows_of(path)] == ["café crème", "naïve résumé"]
    assert detect_encoding(content) == "cp1252"  # charset_normalizer alone says cp1250 ("crčme")


def test_utf16_with_bom(tmp_path):
    content = "text,label\ncafé,x\n\"two\nlines\",y\n".encode("utf-16")
    assert content.startswith(codecs.BOM_UTF16_LE)
    rows = rows_of(write(tmp_path / "d.csv", content))
    assert [(r.source.line, r.data) for r in rows] == [(2, {"text": "café", "label": "x"}),
                                                       (3, {"text": "two\nlines", "label": "y"})]
    assert detect_encoding(content) == "utf-16"


def test_utf16_without_bom_and_utf8_bom(tmp_path):
    rows = rows_of(write(tmp_path / "le.jsonl", '{"t": "café"}\n{"t": "ok"}\n'.encode("utf-16-le")))
    assert [r.data["t"] for r in rows] == ["café", "ok"]
    bom = write(tmp_path / "bom.csv", "\ufefftext,label\ncafé,x\n".encode())
    assert [r.data for r in rows_of(bom)] == [{"text": "café", "label": "x"}]  # no '\ufefftext' column


@pytest.mark.parametrize(("sample", "expected"), [
    (b"plain ascii", "utf-8"),
    ("caf\u00e9".encode(), "utf-8"),
    ("caf\u00e9".encode()[:-1], "utf-8"),  # the sample may cut a character in half
    (codecs.BOM_UTF8 + b"x", "utf-8-sig"),
    ("x".encode("utf-16"), "utf-16"),
    ("x".encode("utf-32"), "utf-32"),
    ("Grüße aus München".encode("latin-1"), "cp1252"),
    ("“smart quotes” – dash".encode("cp1252"), "cp1252"),
    ("Привет мир, как дела? Это тест, ещё немного текста.".encode("cp1251"), "cp1251"),
])
def test_detect_encoding(sample, expected):
    assert detect_encoding(sample) == expected


# ---------------------------------------------------------------------------------------------- whole-input errors

def test_zero_byte_file(tmp_path):
    with pytest.raises(DataError, match=r"empty\.jsonl is empty \(0 bytes\)"):
        iter_rows(write(tmp_path / "empty.jsonl", b""))
    with pytest.raises(DataError, match=r"is empty \(0 bytes\)"):
        iter_rows(write(tmp_path / "empty.parquet", b""))


def test_binary_file(tmp_path):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    with pytest.raises(DataError, match=r"img\.jsonl looks like a binary file \(NUL bytes in the first 8 KB\)"):
        iter_rows(write(tmp_path / "img.jsonl", png))
    controls = bytes([1, 2, 3, 4, 5, 6, 7]) * 20 + b"abc"
    with pytest.raises(DataError, match="looks like a binary file .140 control characters"):
        iter_rows(write(tmp_path / "x.csv", controls))
    with pytest.raises(DataError, match="is not a Parquet file"):
        iter_rows(write(tmp_path / "fake.parquet", b"text,label\n"))


def test_missing_path_and_unsupported_extension(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: no such file or folder"):
        iter_rows(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match=r"unsupported file type '\.xlsx'\. Supported: \.jsonl, \.ndjson, \.json, "
                                        r"\.csv, \.tsv, \.parquet, \.arrow, \.txt, \.md, \.markdown"):
        iter_rows(write(tmp_path / "d.xlsx", b"PK"))
    with pytest.raises(DataError, match="it looks compressed: decompress it first"):
        iter_rows(write(tmp_path / "d.jsonl.gz", b"\x1f\x8b"))


# ---------------------------------------------------------------------------------------------- Parquet, Arrow

def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": [f"q{i}" for i in range(2500)], "n": list(range(2500)),
                      "tags": [["a", "b"]] * 2500})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=1000)
    rows = rows_of(tmp_path / "d.parquet")
    assert len(rows) == 2500
    assert rows[1234].data == {"prompt": "q1234", "n": 1234, "tags": ["a", "b"]}
    assert (rows[1234].source.item, rows[1234].source.line) == (1234, None)
    assert estimate_rows(tmp_path / "d.parquet") == 2500
    data = (tmp_path / "d.parquet").read_bytes()
    write(tmp_path / "cut.parquet", data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.parquet: cannot read the Parquet data after 0 rows .*complete"):
        rows_of(tmp_path / "cut.parquet")
    assert estimate_rows(tmp_path / "cut.parquet") is None


def test_datasets_save_to_disk_folders(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    ds = datasets.Dataset.from_dict({"text": ["bad", "good", "fine"], "label": [0, 1, 1]}, features=features)
    ds.save_to_disk(str(tmp_path / "one"))
    rows = rows_of(tmp_path / "one")
    # ClassLabel integers come out as their names.
    assert [r.data for r in rows] == [{"text": "bad", "label": "negative"}, {"text": "good", "label": "positive"},
                                      {"text": "fine", "label": "positive"}]
    assert [r.source.item for r in rows] == [0, 1, 2] and rows[0].source.file == str(tmp_path / "one")
    assert estimate_rows(tmp_path / "one") == 3

    datasets.DatasetDict({"train": ds, "test": ds.select([2])}).save_to_disk(str(tmp_path / "dict"))
    rows = rows_of(tmp_path / "dict")
    assert [(r.data["text"], r.data["__split__"], r.source.item) for r in rows] == [
        ("bad", "train", 0), ("good", "train", 1), ("fine", "train", 2), ("fine", "test", 0)]
    assert rows[3].source.file == str(tmp_path / "dict" / "test")
    assert estimate_rows(tmp_path / "dict") == 4


def test_parquet_and_arrow_files_name_their_class_labels(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    ds = datasets.Dataset.from_dict({"text": ["bad", "good"], "label": [0, 1]}, features=features)
    ds.to_parquet(str(tmp_path / "d.parquet"))  # datasets keeps the features in the Parquet schema metadata
    assert [r.data for r in rows_of(tmp_path / "d.parquet")] == [{"text": "bad", "label": "negative"},
                                                                 {"text": "good", "label": "positive"}]
    ds.save_to_disk(str(tmp_path / "saved"))
    arrow = next((tmp_path / "saved").glob("*.arrow"))
    assert [r.data["label"] for r in rows_of(arrow)] == ["negative", "positive"]
    assert estimate_rows(arrow) == 2


# ---------------------------------------------------------------------------------------------- Hub dataset folders

def hub_folder(root: Path, files: dict[str, list[dict]], card: bool = True) -> Path:
    """A folder as the Hub lays a dataset out: data files (Parquet when named so, else JSONL) and a card."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, records in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".parquet"):
            pq.write_table(pa.Table.from_pylist(records), path)
        else:
            write(path, "".join(json.dumps(r) + "\n" for r in records))
    if card:
        write(root / "README.md", "---\nlicense: mit\n---\n# A dataset card\n")
    (root / ".git").mkdir(exist_ok=True)
    write(root / ".git" / "config.json", "{}")  # hidden folders are never data
    return root


def test_hub_folder_of_parquet_shards(tmp_path):
    folder = hub_folder(tmp_path / "hub", {
        "data/test-00000-of-00001.parquet": [{"q": "t0"}],
        "data/train-00001-of-00002.parquet": [{"q": "b0"}, {"q": "b1"}],
        "data/train-00000-of-00002.parquet": [{"q": "a0"}],
        "data/validation-00000-of-00001.parquet": [{"q": "v0"}]})
    rows = rows_of(folder)
    assert [(r.data, Path(r.source.file).name, r.source.item) for r in rows] == [
        ({"q": "a0", "__split__": "train"}, "train-00000-of-00002.parquet", 0),
        ({"q": "b0", "__split__": "train"}, "train-00001-of-00002.parquet", 0),
        ({"q": "b1", "__split__": "train"}, "train-00001-of-00002.parquet", 1),
        ({"q": "v0", "__split__": "validation"}, "validation-00000-of-00001.parquet", 0),
        ({"q": "t0", "__split__": "test"}, "test-00000-of-00001.parquet", 0)]
    assert estimate_rows(folder) == 5


def test_hub_folder_split_names(tmp_path):
    folder = hub_folder(tmp_path / "jsonl", {"test.jsonl": [{"q": "t"}], "train.jsonl": [{"q": "a"}],
                                             "dev.jsonl": [{"q": "d"}]}, card=False)
    assert [(r.data["q"], r.data["__split__"], r.source.line) for r in rows_of(folder)] == [
        ("a", "train", 1), ("d", "dev", 1), ("t", "test", 1)]
    folder = hub_folder(tmp_path / "by_folder", {"data/validation/0000.parquet": [{"q": "v"}],
                                                 "data/train/0000.parquet": [{"q": "a"}]})
    assert [(r.data["q"], r.data["__split__"]) for r in rows_of(folder)] == [("a", "train"), ("v", "validation")]
    folder = hub_folder(tmp_path / "unnamed", {"corpus.jsonl": [{"q": "c"}]})
    assert [r.data["__split__"] for r in rows_of(folder)] == ["train"]  # the Hub's default


def test_hub_folder_refuses_several_subsets_or_versions(tmp_path):
    subsets = hub_folder(tmp_path / "configs", {"en/train.jsonl": [{"q": "a"}], "de/train.jsonl": [{"q": "b"}]})
    with pytest.raises(DataError, match=r"holds several subsets of a dataset \(de/, en/\); point at the folder of one"):
        iter_rows(subsets)
    versions = hub_folder(tmp_path / "versions", {"data/train_prefs-00000-of-00001.parquet": [{"q": "a"}],
                                                  "data/train_sft-00000-of-00001.parquet": [{"q": "a"}],
                                                  "data/test_prefs-00000-of-00001.parquet": [{"q": "b"}]})
    with pytest.raises(DataError, match=r"several versions of one split \(train_prefs, train_sft\); point at"):
        iter_rows(versions)


def test_documents_beside_a_data_file_stay_documents(tmp_path):
    """A corpus of pages with a stray .json index is still a corpus, as before Hub folders were read."""
    docs = tmp_path / "docs"
    docs.mkdir()
    write(docs / "a.md", "# Refunds")
    write(docs / "index.json", '[{"page": "a.md"}]')
    assert [r.data for r in rows_of(docs)] == [{"text": "# Refunds", "path": "a.md"}]


# ---------------------------------------------------------------------------------------------- documents

def test_document_folder(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / ".git").mkdir()
    write(docs / "b.md", "# Refunds\r\n\r\nFive days.")
    write(docs / "sub" / "a.txt", "Shipping: two days.".encode("latin-1"))
    write(docs / "sub" / "c.markdown", "Caf\u00e9 notes".encode("latin-1"))
    write(docs / "empty.txt", b"")
    write(docs / "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00")
    write(docs / "notes.pdf", b"%PDF-1.7")
    write(docs / ".git" / "HEAD.txt", "ref: main")
    rows = rows_of(docs)
    assert [(r.source.file, r.data, r.error) for r in rows] == [
        (str(docs / "b.md"), {"text": "# Refunds\n\nFive days.", "path": "b.md"}, None),
        (str(docs / "empty.txt"), {"text": "", "path": "empty.txt"}, None),
        (str(docs / "image.txt"), None, "looks like a binary file (NUL bytes in the first 8 KB)"),
        (str(docs / "sub" / "a.txt"), {"text": "Shipping: two days.", "path": "sub/a.txt"}, None),
        (str(docs / "sub" / "c.markdown"), {"text": "Café notes", "path": "sub/c.markdown"}, None),
    ]
    assert estimate_rows(docs) == 5


def test_single_document_and_empty_folder(tmp_path):
    rows = rows_of(write(tmp_path / "guide.md", "# Guide\n\nStep one.\n"))
    assert [(r.source.file, r.data) for r in rows] == [(str(tmp_path / "guide.md"),
                                                        {"text": "# Guide\n\nStep one.\n", "path": "guide.md"})]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match=r"no \.txt/\.md/\.markdown files that is not a folder saved by "
                                         r"datasets\.save_to_disk \(no dataset_info\.json"):
        iter_rows(tmp_path / "nothing")


def test_csv_round_trip_of_random_tricky_values(tmp_path):
    values = [["a,b", 'say "hi"', "multi\nline"], ["", " spaced ", "tab\there"], ["ünï", "\u2028sep", "x"]]
    with (tmp_path / "d.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["c1", "c2", "c3"])
        writer.writerows(values)
    rows = rows_of(tmp_path / "d.csv")
    assert [list(r.data.values()) for r in rows] == values
    assert [r.source.line for r in rows] == [2, 4, 5]


CELL = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), include_characters="\n\r\t,\"'"),
               max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.lists(CELL, min_size=3, max_size=3), min_size=1, max_size=12))
def test_csv_values_and_start_lines_survive_any_quoting(tmp_path, records):
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)  # \r\n row ends, as Excel writes; fields with \r or \n get quoted
    writer.writerow(["a", "b", "c"])
    starts = []
    for record in records:
        # A record starts after every line break written so far (\r, \n and \r\n each end a line).
        starts.append(1 + len(re.findall(r"\r\n|\r|\n", buffer.getvalue())))
        writer.writerow(record)
    path = write(tmp_path / "prop.csv", buffer.getvalue())
    rows = rows_of(path)
    assert [list(r.data.values()) for r in rows] == records
    assert [r.source.line for r in rows] == starts
