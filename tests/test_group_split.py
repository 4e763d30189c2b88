"""Group-aware splits (`--group-by`): whole groups per split, row fractions, stratification, the report."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from real_data import full_or_slice

from executor.data.groups import group_key, group_noun, suggest_group_column
from executor.data.load import iter_rows
from executor.data.pipeline import PrepareConfig, prepare
from executor.data.schema import SchemaError
from executor.data.split import SPLITS, group_split

# ---------------------------------------------------------------------------------------------- the split


def rows_of(sizes: dict[str, int], label: str | None = None) -> tuple[list[str | None], list[str]]:
    groups = [g for g, n in sizes.items() for _ in range(n)]
    return [label] * len(groups), groups


def split_of_groups(groups: list[str], assignment: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for group, split in zip(groups, assignment, strict=True):
        found[group].add(split)
    return found


def test_whole_groups_fill_the_row_fractions_largest_first():
    labels, groups = rows_of({"a": 50, "b": 20, "c": 11, "d": 9, "e": 6, "f": 4})
    placed = {g: s.pop() for g, s in split_of_groups(groups, group_split(labels, groups)).items()}
    # a, b -> train (70 of 80); c: train, validation and test all lack 10 -> test first; d -> validation;
    # e, f top train up to exactly 80.
    assert placed == {"a": "train", "b": "train", "c": "test", "d": "validation", "e": "train", "f": "train"}


def test_labels_are_stratified_when_groups_allow():
    # 40 groups of 5 rows, each group of one label: a split can only be balanced by choosing groups by label.
    groups = [f"{label}{g}" for label in "ab" for g in range(20) for _ in range(5)]
    labels = [g[0] for g in groups]
    for seed in range(10):
        assignment = group_split(labels, groups, seed=seed)
        per_split = {s: Counter(lab for lab, a in zip(labels, assignment, strict=True) if a == s) for s in SPLITS}
        assert per_split == {"train": {"a": 80, "b": 80}, "validation": {"a": 10, "b": 10},
                             "test": {"a": 10, "b": 10}}, seed


def test_fewer_groups_than_splits_keeps_each_group_whole():
    assert Counter(group_split(*rows_of({"only": 20}))) == {"train": 20}
    assert Counter(group_split(*rows_of({"big": 30, "small": 10}))) == {"train": 30, "test": 10}
    # A split asked to be empty stays empty, even when it would take the second group.
    assert Counter(group_split(*rows_of({"big": 30, "small": 10}), fractions=(0.9, 0.1, 0.0))) == {
        "train": 30, "validation": 10}


def test_an_empty_split_gets_a_group_when_there_are_enough():
    # Row targets 24 / 3 / 3: all three groups fit train best, but a held-out split needs one group each.
    assert Counter(group_split(*rows_of({"x": 10, "y": 10, "z": 10}))) == {"train": 10, "validation": 10,
                                                                          "test": 10}


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=40),
       labels=st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=40),
       fractions=st.sampled_from([(0.8, 0.1, 0.1), (0.7, 0.2, 0.1), (0.5, 0.25, 0.25), (0.9, 0.1, 0.0)]),
       seed=st.integers(0, 10_000))
def test_no_group_is_in_two_splits(sizes, labels, fractions, seed):
    groups = [f"g{i}" for i, n in enumerate(sizes) for _ in range(n)]
    row_labels = [labels[i % len(labels)] for i in range(len(groups))]
    assignment = group_split(row_labels, groups, fractions, seed)
    assert assignment == group_split(row_labels, groups, fractions, seed)  # same seed, same split
    assert all(len(splits) == 1 for splits in split_of_groups(groups, assignment).values())
    assert set(assignment) <= {s for s, f in zip(SPLITS, fractions, strict=True) if f > 0}
    wanted = sum(f > 0 for f in fractions)
    assert len(set(assignment)) == min(len(sizes), wanted)  # no split asked for is empty while groups allow


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=3, max_size=60), seed=st.integers(0, 10_000))
def test_row_fractions_are_approached_within_the_largest_group(sizes, seed):
    groups = [f"g{i}" for i, n in enumerate(sizes) for _ in range(n)]
    counts = Counter(group_split([None] * len(groups), groups, (0.8, 0.1, 0.1), seed))
    for split, fraction in zip(SPLITS, (0.8, 0.1, 0.1), strict=True):
        # Greedy filling of the largest deficit: no split overshoots by more than one group, so none falls
        # short by more than two (a split given the smallest group to stop it being empty, by one).
        assert abs(counts[split] - fraction * len(groups)) <= 2 * max(sizes)


# ---------------------------------------------------------------------------------------------- group values


def test_group_values_and_names():
    passage = "Coronaviruses are enveloped viruses with a positive-sense RNA genome. " * 5
    assert group_key({"db_id": "concert_singer"}, "db_id") == "concert_singer"
    assert group_key({"meta": {"doc": 7}}, "meta.doc") == group_key({"meta.doc": "7"}, "meta.doc") == "7"
    assert group_key({"db_id": " "}, "db_id") is None and group_key({"db_id": None}, "db_id") is None
    key = group_key({"context": passage}, "context")
    assert key.startswith("Coronaviruses are enveloped viruses with a posit… #") and len(key) < 80
    assert key != group_key({"context": passage + "!"}, "context")
    assert {c: group_noun(c) for c in ("db_id", "documentId", "conversation-id", "title", "user", "user_id",
                                       "question_id", "category", "meta.session_id")} == {
        "db_id": "databases", "documentId": "documents", "conversation-id": "conversations", "title": "titles",
        "user": None, "user_id": "users", "question_id": None, "category": None, "meta.session_id": "sessions"}


def test_suggestion_on_the_real_covid_qa_file(shared_datasets):
    rows = list(iter_rows(shared_datasets / "rag" / "covidqa_200423.json"))
    suggestion = suggest_group_column(rows, context_column="context")
    papers, questions, per = full_or_slice((98, "1,380", 14.1), (3, "6", 2.0))  # (the shipped slice: 3 papers)
    assert suggestion["text"] == (f"rows share `document_id` ({papers} values over {questions} rows, {per} per value): "
                                  "consider --group-by document_id so the test split measures unseen documents (also "
                                  f"possible: context, {papers} values)")
    for name in ("banking77/test.csv", "customer_support/bitext_customer_support_train.csv", "gsm8k/test.jsonl"):
        assert suggest_group_column(list(iter_rows(shared_datasets / name))) is None, name


# ---------------------------------------------------------------------------------------------- prepare


def run(source: Path, out: Path, tokenizer, **kw):
    return prepare(PrepareConfig(input=source, out=out, tokenizer=tokenizer, **kw))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def spider_like(databases: int = 12, per_db: int = 6) -> list[dict]:
    """Text-to-SQL rows, several questions per database, with a `hardness` label to stratify on."""
    return [{"db_id": f"db_{d}", "hardness": "hard" if d % 3 == 0 else "easy",
             "question": f"For the shop database number {d}, list the names in table t{q} sorted by column c{q}.",
             "query": f"SELECT name FROM t{q}_{d} ORDER BY c{q}"}
            for d in range(databases) for q in range(per_db)]


SQL_MAP = {"prompt": "question", "completion": "query", "label": "hardness"}


def test_group_by_db_id_keeps_databases_whole_and_reports_them(tmp_path, smol_tokenizer):
    source = write_jsonl(tmp_path / "spider.jsonl", spider_like())
    report = run(source, tmp_path / "out", smol_tokenizer, mapping=SQL_MAP, group_by="db_id")
    dbs = {s: {r["metadata"]["db_id"] for r in read_jsonl(tmp_path / "out" / f"{s}.jsonl")} for s in SPLITS}
    assert not (dbs["train"] & dbs["validation"] or dbs["train"] & dbs["test"] or dbs["validation"] & dbs["test"])
    groups = report["groups"]
    assert groups["column"] == "db_id" and groups["groups"] == 12 and groups["rows_without_group"] == 0
    assert groups["splits"] == {"train": {"groups": 10, "rows": 60}, "validation": {"groups": 1, "rows": 6},
                                "test": {"groups": 1, "rows": 6}}
    assert groups["notes"] == [] and report["settings"]["group_by"] == "db_id"
    assert report["group_suggestion"] is None
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert ("| split | groups | rows | share of rows |\n|---|---|---|---|\n| train | 10 | 60 | 83.3% |\n"
            "| validation | 1 | 6 | 8.3% |\n| test | 1 | 6 | 8.3% |") in markdown
    assert "### Groups by `db_id`" in markdown
    assert "No duplicate or near-duplicate joins rows of different groups." in markdown


def test_rows_without_a_group_are_rejected_with_line_and_column(tmp_path, smol_tokenizer):
    rows = spider_like(databases=4, per_db=3)
    rows.insert(5, {**rows[5], "db_id": "", "question": "Which table has no database at all, then?"})
    del rows[7]["db_id"]
    report = run(write_jsonl(tmp_path / "d.jsonl", rows), tmp_path / "out", smol_tokenizer, mapping=SQL_MAP,
                 group_by="db_id")
    rejects = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert [(r["source"]["line"], r["reason"], r["detail"]) for r in rejects] == [
        (line, "schema_error", "missing group column 'db_id' (--group-by db_id): the row cannot be placed with "
                               "its group") for line in (6, 8)]
    assert report["groups"]["rows_without_group"] == 2 and report["accounted_for"]
    assert report["kept"] == 11 and report["groups"]["groups"] == 4


def test_an_unknown_group_column_is_refused_before_any_work(tmp_path, smol_tokenizer):
    source = write_jsonl(tmp_path / "d.jsonl", spider_like(2, 2))
    with pytest.raises(SchemaError) as error:
        run(source, tmp_path / "out", smol_tokenizer, mapping=SQL_MAP, group_by="database")
    assert str(error.value) == (f"{source}: --group-by column 'database' has no value in any row. "
                                "Columns seen: db_id, hardness, question, query")
    assert not (tmp_path / "out").exists()


def test_a_long_squad_context_is_a_group(tmp_path, smol_tokenizer):
    """The passage is a content role and far longer than metadata keeps: the group is its text's identity."""
    topics = ["fever", "cough", "fatigue", "anosmia", "myalgia", "headache"]
    rows = [{"context": f"This study of {t} followed patients for months. " * 8,
             "question": f"How long did the {t} study follow patient number {q}?",
             "answer": f"For months, patient {q}."} for t in topics for q in range(4)]
    report = run(write_jsonl(tmp_path / "qa.jsonl", rows), tmp_path / "out", smol_tokenizer, group_by="context")
    assert report["detected_format"]["name"] == "squad"
    assert report["groups"]["groups"] == 6
    assert {s: v["groups"] for s, v in report["groups"]["splits"].items()} == {"train": 4, "validation": 1, "test": 1}
    for split in SPLITS:
        topics_in = {next(t for t in topics if t in r["messages"][1]["content"])
                     for r in read_jsonl(tmp_path / "out" / f"{split}.jsonl")}
        assert len(topics_in) == report["groups"]["splits"][split]["groups"]


def test_near_duplicates_across_groups_are_reported(tmp_path, smol_tokenizer):
    rows = spider_like(databases=6, per_db=4)
    leak = ("How many singers do we have in the concert hall listing for this season, counting only the ones "
            "who performed at least twice and were born after the year of the first festival?")
    query = "SELECT count(*) FROM singer WHERE performances >= 2 AND birth_year > (SELECT min(year) FROM festival)"
    rows[1] = {**rows[1], "question": leak, "query": query}                      # db_0, line 2
    rows[21] = {**rows[21], "question": leak, "query": query + " ORDER BY name"}  # db_5, line 22
    source = write_jsonl(tmp_path / "d.jsonl", rows)
    removed = run(source, tmp_path / "on", smol_tokenizer, mapping=SQL_MAP, group_by="db_id")
    dups = removed["groups"]["cross_group_duplicates"]
    assert dups["pairs"] == 1 and dups["removed"] is True and removed["near_duplicates_removed"] == 1
    [example] = dups["examples"]
    assert example["kind"] == "near_duplicate" and example["jaccard"] >= 0.85
    assert example["first"] == {"source": f"{source}:2", "group": "db_0", "split": "train"}
    # db_5 went to test: without de-duplication, its copy of the question would be tested on after training.
    assert example["second"] == {"source": f"{source}:22", "group": "db_5", "split": "test"}
    assert split_holding(tmp_path / "on", "db_0") == "train" and split_holding(tmp_path / "on", "db_5") == "test"
    assert dups["across_splits"] == 1
    markdown = (tmp_path / "on" / "report.md").read_text()
    assert ("joining rows of different groups: **1** (1 with their groups in different splits); the later row of "
            "each was removed, so none is in two splits.\n\n| kind | Jaccard | kept | removed | text |") in markdown

    kept = run(source, tmp_path / "off", smol_tokenizer, mapping=SQL_MAP, group_by="db_id", deduplicate=False)
    dups = kept["groups"]["cross_group_duplicates"]
    assert (dups["pairs"], dups["across_splits"], dups["removed"], kept["kept"]) == (1, 1, False, 24)
    assert split_holding(tmp_path / "off", "db_0") == "train" and split_holding(tmp_path / "off", "db_5") == "test"
    assert "de-duplication is off, so they stay: the test split is not fully unseen" in (
        tmp_path / "off" / "report.md").read_text()


def split_holding(out: Path, db: str) -> str:
    """The split holding a database's rows, read from the written files."""
    return next(s for s in SPLITS if any(r["metadata"]["db_id"] == db for r in read_jsonl(out / f"{s}.jsonl")))


def test_fewer_than_three_groups_is_said_plainly(tmp_path, smol_tokenizer):
    source = write_jsonl(tmp_path / "d.jsonl", spider_like(databases=2, per_db=5))
    report = run(source, tmp_path / "out", smol_tokenizer, mapping=SQL_MAP, group_by="db_id")
    assert report["splits"] == {"train": 5, "validation": 0, "test": 5}
    assert report["groups"]["notes"][0] == (
        "Only 2 group(s) of `db_id`: a held-out group split needs 3 (one per split), so it is impossible here. "
        "Each group was kept whole: 1 in train, 1 in test; validation is empty.")
    assert report["groups"]["notes"][1].startswith("Row shares differ from the asked fractions by up to 40%")


def test_without_group_by_the_report_suggests_an_obvious_group(tmp_path, smol_tokenizer):
    source = write_jsonl(tmp_path / "d.jsonl", spider_like())
    report = run(source, tmp_path / "out", smol_tokenizer, mapping=SQL_MAP)
    assert report["groups"] is None
    assert report["group_suggestion"] == {
        "column": "db_id", "values": 12, "rows": 72, "alternatives": [],
        "text": "rows share `db_id` (12 values over 72 rows, 6.0 per value): consider --group-by db_id so the "
                "test split measures unseen databases"}
    assert f"**Suggestion:** {report['group_suggestion']['text']}." in (tmp_path / "out" / "report.md").read_text()
