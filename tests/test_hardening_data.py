"""Hostile data and plan files (#17): each is rejected with a reason naming the file (and line or field), within
a bound on time and memory, and the rest of the load goes on where the format allows it."""

from __future__ import annotations

import json
import os
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from executor.data import load
from executor.data.load import DataError, LoadStats, estimate_rows, iter_rows
from executor.plan import MAX_PLAN_BYTES, PlanError, TrainingPlan, dump_plan, load_plan


def rows_of(path: Path, **kw) -> list:
    return list(iter_rows(path, **kw))


def errors(rows) -> list[str | None]:
    return [row.error for row in rows]


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def finishes_within(seconds: float, call) -> object:
    """Run `call` in a thread; fail instead of hanging the suite when it blocks (a FIFO open does)."""
    result: dict[str, object] = {}

    def target():
        try:
            result["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result.get("value")


def release_fifo(path: Path) -> None:
    """Unblock a reader stuck opening the FIFO (only needed when the check under test fails)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------- nesting depth

def test_jsonl_line_nested_100000_deep_is_rejected_and_the_load_goes_on(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"a": 1}\n' + '{"x": ' + deep(100_000) + "}\n" + deep(100_000) + '\n{"b": 2}\n')
    rows = rows_of(path)
    assert [row.data for row in rows] == [{"a": 1}, None, None, {"b": 2}]
    assert rows[1].error == f"{path}:2: nested more than 100 levels deep; flatten the record"
    assert rows[2].error == f"{path}:3: nested more than 100 levels deep; flatten the record"


def test_depth_limit_is_exact_for_values_the_parser_can_read(tmp_path):
    path = tmp_path / "depth.jsonl"
    at_limit = {"a": json.loads(deep(99))}      # the object is level 1, 99 lists below it: 100
    over = {"a": json.loads(deep(100))}
    path.write_text(json.dumps(at_limit) + "\n" + json.dumps(over) + "\n")
    rows = rows_of(path)
    assert rows[0].data == at_limit
    assert rows[1].error == f"{path}:2: nested more than 100 levels deep; flatten the record"


def test_json_array_item_nested_deep_is_rejected_and_later_items_are_read(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('[{"a": 1},\n {"x": "]\\" [", "y": ' + deep(100_000) + '},\n {"b": 2}]')
    rows = rows_of(path)
    assert [row.data for row in rows] == [{"a": 1}, None, {"b": 2}]
    assert rows[1].error == f"{path}:2: nested more than 100 levels deep; flatten the record"
    assert (rows[1].source.line, rows[1].source.item, rows[2].source.item) == (2, 1, 2)


def test_json_document_nested_beyond_the_parser_is_a_data_error_naming_the_file(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text('{"data": [' + deep(100_000) + "]}")
    with pytest.raises(DataError, match=rf"^{path}: JSON nested more than 100 levels deep"):
        rows_of(path)
    path.write_text('{"data": [{"a": 1}, {"b": ' + deep(150) + "}]}")  # readable: only that record is rejected
    rows = rows_of(path)
    assert rows[0].data == {"a": 1}
    assert rows[1].error == f"{path}[1]: nested more than 100 levels deep; flatten the record"


def test_dataset_metadata_nested_deep_does_not_crash(tmp_path):
    import pyarrow as pa

    folder = tmp_path / "saved"
    folder.mkdir()
    table = pa.table({"text": ["a", "b"]})
    with pa.ipc.new_stream(folder / "data-00000-of-00001.arrow", table.schema) as writer:
        writer.write_table(table)
    (folder / "dataset_info.json").write_text('{"features": ' + deep(100_000) + "}")
    assert [row.data for row in rows_of(folder)] == [{"text": "a"}, {"text": "b"}]


# ---------------------------------------------------------------------------------------------- wide CSV

def test_csv_wider_than_the_column_limit_is_rejected_quickly_with_a_short_message(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(40_000)) + "\n" + ",".join("x" * 40_000) + "\n")
    started = time.monotonic()
    with pytest.raises(DataError) as err:
        rows_of(path)
    assert time.monotonic() - started < 1.0
    assert str(err.value) == (f"{path}: the header has 40,000 columns, more than the limit of 1,000; keep the "
                              "columns you train on")


def test_header_check_is_linear(tmp_path, monkeypatch):
    """200,000 distinct names: the old list.count check took minutes (10k columns took 1.7 s)."""
    monkeypatch.setattr(load, "MAX_COLUMNS", 1_000_000)
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(200_000)) + "\n")
    started = time.monotonic()
    assert rows_of(path) == []
    assert time.monotonic() - started < 1.5


def test_repeated_header_names_are_listed_briefly(tmp_path):
    path = tmp_path / "dups.csv"
    names = [f"name_{i}_{'x' * 100}" for i in range(400)] * 2
    path.write_text(",".join(names) + "\n")
    with pytest.raises(DataError) as err:
        rows_of(path)
    message = str(err.value)
    assert message.startswith(f"{path}: the header repeats column names ['name_0_xxxx")
    assert message.endswith("and 390 more]; rename them so no column is lost")
    assert len(message) < 800


def test_csv_delimiter_that_cannot_be_sniffed_falls_back_to_the_most_frequent(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text('a;b;c|d\n1;2;3|4\n')
    assert [row.data for row in rows_of(path)] == [{"a": "1", "b": "2", "c|d": "3|4"}]


# ---------------------------------------------------------------------------------------------- not regular files

def test_fifo_as_input_is_refused_at_once(tmp_path):
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    try:
        with pytest.raises(DataError, match=rf"^{fifo}: not a regular file \(a FIFO\); give a data file or a folder"):
            finishes_within(5, lambda: rows_of(fifo))
        assert finishes_within(5, lambda: estimate_rows(fifo)) is None
        parquet = tmp_path / "in.parquet"
        os.mkfifo(parquet)
        assert finishes_within(5, lambda: estimate_rows(parquet)) is None
    finally:
        release_fifo(fifo)


def test_device_as_input_is_refused(tmp_path):
    link = tmp_path / "null.jsonl"
    link.symlink_to("/dev/null")
    with pytest.raises(DataError, match=rf"^{link}: not a regular file \(a character device\)"):
        rows_of(link)


def write_tree(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret.txt").write_text("secret")
    (outside / "sub" / "deep.txt").write_text("deep")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("alpha")
    (docs / "link.txt").symlink_to(outside / "secret.txt")
    (docs / "linked_dir").symlink_to(outside / "sub")
    os.mkfifo(docs / "pipe.txt")
    return docs


def test_symlinks_inside_a_document_folder_are_not_followed_unless_asked(tmp_path):
    docs = write_tree(tmp_path)
    assert [row.data["path"] for row in rows_of(docs)] == ["a.txt"]
    assert estimate_rows(docs) == 1
    followed = rows_of(docs, follow_symlinks=True)
    assert [(row.data["path"], row.data["text"]) for row in followed] == [
        ("a.txt", "alpha"), ("link.txt", "secret"), ("linked_dir/deep.txt", "deep")]


def test_prepare_follows_symlinks_only_when_asked(tmp_path, smol_tokenizer):
    from executor.data.pipeline import PrepareConfig, prepare

    docs = write_tree(tmp_path)
    (docs / "pipe.txt").unlink()
    config = {"input": docs, "tokenizer": smol_tokenizer, "redact_pii": False, "deduplicate": False}
    assert prepare(PrepareConfig(out=tmp_path / "a", **config))["input_rows"] == 1
    assert prepare(PrepareConfig(out=tmp_path / "b", follow_symlinks=True, **config))["input_rows"] == 3


def test_symlinks_inside_a_hub_folder_are_not_followed(tmp_path):
    outside = tmp_path / "other.jsonl"
    outside.write_text('{"text": "theirs"}\n')
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "train.jsonl").write_text('{"text": "ours"}\n')
    (hub / "test.jsonl").symlink_to(outside)
    assert [row.data for row in rows_of(hub)] == [{"text": "ours", "__split__": "train"}]


def test_saved_dataset_state_cannot_point_outside_its_folder(tmp_path):
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "../elsewhere.arrow"}]}))
    with pytest.raises(DataError, match=r"state.json: data file '\.\./elsewhere\.arrow' is not a file name"):
        rows_of(folder)


# ---------------------------------------------------------------------------------------------- size limits

def test_long_jsonl_line_is_rejected_without_being_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "MAX_LINE_CHARS", 64 << 10)
    path = tmp_path / "long.jsonl"
    with path.open("w") as f:
        f.write('{"a": 1}\n{"text": "' + "x" * (8 << 20) + '"}\n{"b": 2}\n')
    tracemalloc.start()
    try:
        rows = rows_of(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [row.data for row in rows] == [{"a": 1}, None, {"b": 2}]
    assert rows[1].error == f"{path}:2: line longer than 65,536 characters; not read (split the record or shorten it)"
    assert peak < 2 << 20  # the 8 MB line was never held: only the limit's worth of it


def test_long_json_array_item_is_rejected_and_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "MAX_LINE_CHARS", 1000)
    path = tmp_path / "long.json"
    path.write_text('[{"a": 1},\n{"text": "' + "y" * 5000 + '"},\n"' + "z" * 5000 + '",\n{"b": 2}\n]')
    rows = rows_of(path)
    assert [row.data for row in rows] == [{"a": 1}, None, None, {"b": 2}]
    assert rows[1].error == f"{path}:2: record longer than 1,000 characters; not read (split the record or shorten it)"
    assert rows[2].error == f"{path}:3: record longer than 1,000 characters; not read (split the record or shorten it)"
    assert rows[3].source.line == 4


def test_long_csv_lines_are_rejected_as_their_records(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "MAX_LINE_CHARS", 100)
    path = tmp_path / "long.csv"
    path.write_text('q,a\nhi,there\nlong,"' + "w" * 500 + '"\nmulti,"line one\n' + "v" * 500 + '\nend"\nok,fine\n')
    rows = rows_of(path)
    assert [row.data for row in rows] == [{"q": "hi", "a": "there"}, None, None, {"q": "ok", "a": "fine"}]
    assert rows[1].error == f"{path}:3: line 3 longer than 100 characters; not read (split the record or shorten it)"
    assert rows[2].error == f"{path}:4: line 5 longer than 100 characters; not read (split the record or shorten it)"
    assert rows[3].source.line == 7


def test_csv_header_longer_than_the_line_limit_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "MAX_LINE_CHARS", 100)
    path = tmp_path / "long.csv"
    path.write_text("a" * 300 + "\n1\n")
    with pytest.raises(DataError, match=rf"^{path}: the header line is longer than 100 characters"):
        rows_of(path)


def parquet_of_repeats(path: Path, rows: int, size: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["r" * size] * rows}), path, compression="zstd")
    return path


def test_compressed_parquet_cannot_expand_past_the_decoded_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "DECODED_BUDGET", 4 << 20)
    path = parquet_of_repeats(tmp_path / "bomb.parquet", 2000, 10_000)  # a few KB on disk, 20 MB decoded
    assert path.stat().st_size < 100_000
    read = []
    with pytest.raises(DataError, match=rf"^{path}: more than 4 MiB of decoded data in one load \(the limit\)"):
        read.extend(iter_rows(path))
    assert len(read) < 500


def test_decoded_budget_is_shared_by_the_files_of_a_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "DECODED_BUDGET", 10_000)
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(3):
        (docs / f"{n}.txt").write_text("d" * 4000)
    with pytest.raises(DataError, match=rf"^{docs / '2.txt'}: more than 9.77 KiB of decoded data in one load"):
        rows_of(docs)


def test_decoded_budget_counts_text_files(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "DECODED_BUDGET", 1000)
    path = tmp_path / "big.jsonl"
    path.write_text(('{"t": "' + "x" * 90 + '"}\n') * 20)
    stats = LoadStats()
    with pytest.raises(DataError, match=rf"^{path}: more than 1000 B of decoded data"):
        list(iter_rows(path, stats=stats))
    path.write_text(('{"t": "' + "x" * 90 + '"}\n') * 9)
    stats = LoadStats()
    assert len(list(iter_rows(path, stats=stats))) == 9
    assert stats.decoded == 9 * 100


# ---------------------------------------------------------------------------------------------- blank lines

def test_blank_lines_are_counted(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b'\n{"a": 1}\n   \n\r\n{"b": 2}\n\n')
    stats = LoadStats()
    assert len(list(iter_rows(path, stats=stats))) == 2
    assert stats.blank_lines == 4
    csv_path = tmp_path / "blank.csv"
    csv_path.write_text("\nq,a\n1,2\n\n3,4\n\n")
    stats = LoadStats()
    assert len(list(iter_rows(csv_path, stats=stats))) == 2
    assert stats.blank_lines == 3


def test_prepare_accounts_for_deep_and_blank_lines(tmp_path, smol_tokenizer):
    from executor.data.pipeline import PrepareConfig, prepare

    path = tmp_path / "data.jsonl"
    good = [json.dumps({"instruction": f"Question number {i}?", "output": f"Answer number {i}."}) for i in range(8)]
    path.write_text("\n".join(good[:4]) + "\n\n" + deep(100_000) + "\n  \n" + "\n".join(good[4:]) + "\n")
    report = prepare(PrepareConfig(input=path, out=tmp_path / "out", tokenizer=smol_tokenizer, redact_pii=False))
    assert (report["input_rows"], report["kept"], report["rejected"]["parse_error"]) == (9, 8, 1)
    assert report["blank_lines_skipped"] == 2
    assert report["accounted_for"]
    reject = json.loads((tmp_path / "out" / "rejects.jsonl").read_text())
    assert reject["detail"] == f"{path}:6: nested more than 100 levels deep; flatten the record"
    assert "Blank lines skipped: 2" in (tmp_path / "out" / "report.md").read_text()


# ---------------------------------------------------------------------------------------------- plan loader

def plan_dict(**training) -> dict:
    plan = {"approach": "fine_tuning", "technique": "lora", "base_model": {"id": "smollm2-135m-instruct"},
            "training": {"method": "lora", "lora": {}, **training}}
    return plan


def write_plan(path: Path, plan: dict) -> Path:
    path.write_text(yaml.safe_dump(plan))
    return path


def test_plan_nested_50000_deep_names_the_file(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("use_case: " + deep(50_000) + "\n")
    with pytest.raises(PlanError, match=rf"^{path}: nested more than 20 levels deep; a plan is a few levels of YAML"):
        load_plan(path)
    path.write_text("a:\n" + "".join(" " * i + "b:\n" for i in range(1, 40)))
    with pytest.raises(PlanError, match=rf"^{path}: nested more than 20 levels deep"):
        load_plan(path)


def test_plan_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(PlanError, match=rf"^{path}: invalid plan: "):
        load_plan(path)
    assert time.monotonic() - started < 1.0


def test_plan_encodings(tmp_path):
    utf8 = dump_plan(TrainingPlan.model_validate(plan_dict()), tmp_path / "utf8.yaml")
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_text(utf8.read_text(encoding="utf-8"), encoding="utf-16")  # with a BOM: YAML allows it
    assert load_plan(utf16) == load_plan(utf8)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"use_case: caf\xe9\n")
    with pytest.raises(PlanError, match=rf"^{latin}: not UTF-8 text \(byte 0xe9 at offset 13\); save the plan as "
                                        "UTF-8"):
        load_plan(latin)


def test_plan_size_and_file_kind(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_PLAN_BYTES + "\n")
    with pytest.raises(PlanError, match=rf"^{big}: larger than 1 MiB; a plan is a few KB of YAML"):
        load_plan(big)
    with pytest.raises(PlanError, match=rf"^{tmp_path}: a folder, not a plan file"):
        load_plan(tmp_path)
    fifo = tmp_path / "plan.yaml"
    os.mkfifo(fifo)
    try:
        with pytest.raises(PlanError, match=rf"^{fifo}: not a regular file"):
            finishes_within(5, lambda: load_plan(fifo))
    finally:
        release_fifo(fifo)


@pytest.mark.parametrize(("training", "message"), [
    ({"epochs": "1e308"}, "training.epochs: Input should be less than or equal to 1000"),
    ({"epochs": float("nan")}, "training.epochs: Input should be a finite number"),
    ({"per_device_batch_size": 10**8}, "training.per_device_batch_size: Input should be less than or equal to 65536"),
    ({"gradient_accumulation_steps": 10**6},
     "training.gradient_accumulation_steps: Input should be less than or equal to 65536"),
    ({"learning_rate": 2.0}, "training.learning_rate: Input should be less than or equal to 1"),
    ({"learning_rate": 0}, "training.learning_rate: Input should be greater than 0"),
    ({"max_steps": 10**12}, "training.max_steps: Input should be less than or equal to 10000000"),
    ({"max_seq_length": 10**9}, "training.max_seq_length: Input should be less than or equal to 1048576"),
])
def test_plan_numbers_are_bounded_and_errors_name_the_field(tmp_path, training, message):
    path = write_plan(tmp_path / "plan.yaml", plan_dict(**training))
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert str(err.value) == f"{path}: invalid plan: {message}"


@pytest.mark.parametrize(("base_model", "message"), [
    ({"id": "../../etc", "source": "hub"}, "base_model.id: Value error, '../../etc' is a relative path, not a catalog "
                                          "or hub id; for a model folder set base_model.source: local and "
                                          "base_model.path"),
    ({"id": "../../etc", "source": "local"}, "base_model.path: Value error, source 'local' needs the model folder in "
                                            "base_model.path"),
    ({"id": "a\nb"}, "base_model.id: Value error, control characters in the model id"),
    ({"id": ""}, "base_model.id: String should have at least 1 character"),
])
def test_model_id_errors_name_the_field(tmp_path, base_model, message):
    plan = plan_dict()
    plan["base_model"] = base_model
    path = write_plan(tmp_path / "plan.yaml", plan)
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert str(err.value) == f"{path}: invalid plan: {message}"


def test_local_model_with_a_path_still_loads(tmp_path):
    plan = plan_dict()
    plan["base_model"] = {"id": "../models/mine", "source": "local", "path": "../models/mine"}
    assert load_plan(write_plan(tmp_path / "plan.yaml", plan)).base_model.path == "../models/mine"
