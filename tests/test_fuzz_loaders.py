"""Fuzz (#17): generated hostile inputs through the data loader and the plan loader.

Every input either loads (rows that are records or error rows naming their source; a TrainingPlan) or is refused
with the loader's own error (DataError, PlanError naming the file): never another exception, and each input
within TIME_BOUND_S seconds and MEMORY_BOUND bytes of Python allocations. Inputs are small, so the whole file
stays well under a minute on a slow machine; the examples are derandomized, so a failure reproduces.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.data.load import SUPPORTED, DataError, LoadStats, iter_rows
from executor.data.records import RawRow
from executor.plan import PlanError, TrainingPlan, load_plan

TIME_BOUND_S = 2.0
MEMORY_BOUND = 64 << 20


def run_fuzz(strategy: st.SearchStrategy, check: Callable, examples: int) -> int:
    """Run `check` on `examples` generated inputs; returns how many ran (asserted by the callers)."""
    ran = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def fuzz(case):
        ran.append(1)
        tracemalloc.start()
        started = time.monotonic()
        try:
            check(case)
            elapsed, peak = time.monotonic() - started, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert elapsed < TIME_BOUND_S, f"{elapsed:.2f} s"
        assert peak < MEMORY_BOUND, f"{peak:,} bytes"

    fuzz()
    return len(ran)


# ---------------------------------------------------------------------------------------------- hostile pieces

def nested(depth: int, opener: str) -> str:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return opener * depth + ("1" if opener != "[" else "") + closer * depth


DEEP = st.builds(nested, st.integers(1, 20_000), st.sampled_from(["[", '{"a":']))
ODD_NUMBERS = st.sampled_from([
    "1e999999", "-1e-999999", "NaN", "-Infinity", "Infinity", "1" * 5000, "-" + "9" * 4400, "0x10", "1_000", "-0",
    "1e308", "2e308", "00012", ".5", "1.", "+1", '"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"',
])
LINE_TEXT = st.text(alphabet=st.characters(blacklist_characters="\r\n\x00"), max_size=200)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)
RECORDS = st.dictionaries(st.sampled_from(["instruction", "input", "output", "text", "messages", "label", "x"]),
                          JSON_VALUES, max_size=4)


def json_line(value) -> str:
    return json.dumps(value)


JSONL_LINES = st.lists(st.one_of(
    RECORDS.map(json_line), JSON_VALUES.map(json_line), DEEP, ODD_NUMBERS,
    ODD_NUMBERS.map(lambda n: '{"n": ' + n + "}"), LINE_TEXT, st.sampled_from(["", "  ", "\t", "\ufeff{}", "{"]),
    RECORDS.map(json_line).map(lambda s: s[: len(s) // 2]),  # cut short
), max_size=12)
ENCODINGS = st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "cp1252"])


def utf8(text: str) -> bytes:
    """UTF-8, lone surrogates included (as the invalid bytes a broken exporter writes)."""
    return text.encode("utf-8", errors="surrogatepass")


def write(path: Path, text: str) -> None:
    path.write_bytes(utf8(text))


def check_rows(rows: list[RawRow], path: Path) -> None:
    for row in rows:
        assert row.source.file.startswith(str(path))
        if row.data is None:
            assert isinstance(row.error, str) and row.error
            assert len(row.error) < 2000  # reasons stay short whatever the input
        else:
            assert isinstance(row.data, dict) and row.error is None


def load(path: Path, stats: LoadStats | None = None) -> list[RawRow] | None:
    """The rows, or None when the loader refused the input with its own error (naming the input)."""
    try:
        rows = list(iter_rows(path, stats=stats))
    except DataError as exc:
        assert str(path) in str(exc) and len(str(exc)) < 2000
        return None
    check_rows(rows, path)
    return rows


# ---------------------------------------------------------------------------------------------- data loader

def test_fuzz_jsonl_every_line_is_a_row_or_a_blank(tmp_path):
    path = tmp_path / "fuzz.jsonl"

    def check(lines):
        write(path, "".join(line + "\n" for line in lines))
        stats = LoadStats()
        rows = load(path, stats)
        if rows is not None:  # control characters can make it read as binary: refused whole, with a reason
            assert len(rows) + stats.blank_lines == len(lines)
            assert [r.source.line for r in rows] == sorted(r.source.line for r in rows)

    assert run_fuzz(JSONL_LINES, check, 300) == 300


def test_fuzz_jsonl_in_other_encodings(tmp_path):
    path = tmp_path / "fuzz.jsonl"

    def check(case):
        lines, encoding = case
        path.write_bytes("".join(line + "\n" for line in lines).encode(encoding, errors="replace"))
        load(path)

    assert run_fuzz(st.tuples(JSONL_LINES, ENCODINGS), check, 120) == 120


JSON_DOCUMENTS = st.one_of(
    st.lists(st.one_of(RECORDS, JSON_VALUES), max_size=8).map(json.dumps),
    st.lists(RECORDS, max_size=8).map(lambda items: json.dumps({"data": items})),
    st.lists(st.one_of(RECORDS.map(json.dumps), DEEP, ODD_NUMBERS), max_size=6).map(lambda xs: "[" + ",\n".join(xs)
                                                                                     + "]"),
    DEEP.map(lambda d: '{"data": [' + d + "]}"),
    st.tuples(st.lists(RECORDS, max_size=6).map(json.dumps), st.floats(0, 1)).map(lambda t: t[0][:int(len(t[0])
                                                                                             * t[1])]),
    LINE_TEXT,
)


def test_fuzz_json_documents(tmp_path):
    path = tmp_path / "fuzz.json"

    def check(text):
        write(path, text)
        load(path)

    assert run_fuzz(JSON_DOCUMENTS, check, 200) == 200


CELLS = st.one_of(LINE_TEXT, st.sampled_from(['"', '""', '"a', "a,b", ";", "\t", "|"]), ODD_NUMBERS)


@st.composite
def csv_texts(draw) -> str:
    width = draw(st.one_of(st.integers(1, 6), st.integers(900, 3000)))
    header = draw(st.lists(CELLS, min_size=width, max_size=width)) if width < 10 else [f"c{i % 1500}"
                                                                                        for i in range(width)]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=draw(st.sampled_from([",", ";", "\t"])))
    writer.writerow(header)
    for row in draw(st.lists(st.lists(CELLS, max_size=8), max_size=6)):
        writer.writerow(row)
    text = out.getvalue()
    return text + draw(st.sampled_from(["", "\n\n", '"unclosed\n', "a\rb\r\n", ",,,\n"]))


def test_fuzz_csv_and_tsv(tmp_path):
    def check(case):
        text, suffix = case
        path = tmp_path / f"fuzz{suffix}"
        write(path, text)
        load(path)

    assert run_fuzz(st.tuples(st.one_of(csv_texts(), LINE_TEXT), st.sampled_from([".csv", ".tsv"])), check, 200) == 200


def test_fuzz_binary_junk_under_every_suffix(tmp_path):
    prefixes = st.sampled_from([b"", b"PAR1", b"\xff\xfe", b"\xef\xbb\xbf", b"ARROW1\x00\x00", b"[", b"{"])

    def check(case):
        prefix, junk, suffix = case
        path = tmp_path / f"junk{suffix}"
        path.write_bytes(prefix + junk + (b"PAR1" if suffix == ".parquet" else b""))
        load(path)

    strategy = st.tuples(prefixes, st.binary(max_size=2048), st.sampled_from(SUPPORTED))
    assert run_fuzz(strategy, check, 150) == 150


def test_fuzz_document_folders(tmp_path):
    names = st.text(alphabet="abcxyz._-", min_size=1, max_size=8).filter(lambda n: n not in (".", ".."))
    files = st.dictionaries(st.tuples(names, st.sampled_from([".txt", ".md", ".jsonl", ".json", ".bin"])),
                            st.one_of(st.binary(max_size=512), LINE_TEXT.map(utf8)), min_size=1, max_size=5)
    counter = iter(range(10**6))

    def check(case):
        folder = tmp_path / f"docs{next(counter)}"
        folder.mkdir()
        for (name, suffix), data in case.items():
            (folder / (name + suffix)).write_bytes(data)
        load(folder)

    assert run_fuzz(files, check, 60) == 60


# ---------------------------------------------------------------------------------------------- plan loader

VALID_PLAN = {"approach": "fine_tuning", "technique": "lora", "base_model": {"id": "smollm2-135m-instruct"},
              "training": {"method": "lora", "lora": {"r": 8}}}
FIELDS = ["training.epochs", "training.learning_rate", "training.per_device_batch_size", "training.max_steps",
          "training.gradient_accumulation_steps", "training.max_seq_length", "training.lora.r", "base_model.id",
          "base_model.source", "base_model.path", "data.split.train", "estimates.cost_usd", "hardware.gpu_count",
          "evaluation.metrics", "schema_version", "use_case", "training.rlhf", "unknown.field"]
HOSTILE_VALUES = st.one_of(
    st.integers(), st.floats(), st.sampled_from([10**8, 10**400, -1, 0, 1e308, float("inf"), "1e308", "../../etc",
                                                 "a\nb", "\u202e", "", [], {}, None, True]),
    st.text(max_size=50), st.lists(st.integers(), max_size=5),
    st.integers(1, 200).map(lambda d: json.loads(nested(d, "["))))


PLAN_TEXTS = st.one_of(
    st.lists(st.tuples(st.sampled_from(FIELDS), HOSTILE_VALUES), max_size=3).map(
        lambda edits: yaml.safe_dump(edited_plan(edits), allow_unicode=True)),
    st.builds(lambda d: "use_case: " + nested(d, "["), st.integers(1, 60_000)),
    st.builds(lambda d: "a:\n" + "".join(" " * i + "b:\n" for i in range(1, d)), st.integers(1, 400)),
    st.builds(lambda n, k: "\n".join([f"a0: &a0 [{', '.join(['x'] * k)}]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * k)}]" for i in range(1, n)]), st.integers(1, 12), st.integers(1, 9)),
    st.sampled_from(["!!python/object/apply:os.system ['true']", "a: " + "1" * 5000, "a: !!binary AAAA", "{",
                     "- - - -", "&a [*a]", "? [a, b]\n: c", "%YAML 9.9\n---\na: 1", "a: *undefined"]),
    st.text(max_size=300),
)


def edited_plan(edits) -> dict:
    """The valid plan with some fields (dotted paths) set to hostile values."""
    plan = copy.deepcopy(VALID_PLAN)
    for path, value in edits:
        node = plan
        *parents, last = path.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    return plan


def check_plan(path: Path) -> None:
    try:
        plan = load_plan(path)
    except PlanError as exc:
        assert str(exc).startswith(f"{path}: ") and len(str(exc)) < 5000
        return
    assert isinstance(plan, TrainingPlan)


def test_fuzz_plan_texts(tmp_path):
    path = tmp_path / "plan.yaml"

    def check(case):
        text, encoding = case
        path.write_bytes(text.encode(encoding, errors="surrogatepass" if encoding == "utf-8" else "replace"))
        check_plan(path)

    strategy = st.tuples(PLAN_TEXTS, st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "utf-16-be", "utf-32",
                                                      "cp1252"]))
    assert run_fuzz(strategy, check, 250) == 250


def test_fuzz_plan_bytes(tmp_path):
    path = tmp_path / "plan.yaml"

    def check(data):
        path.write_bytes(data)
        check_plan(path)

    assert run_fuzz(st.binary(max_size=1024), check, 60) == 60
