"""`tunewise data prepare` / `tunewise data review` as other tools call them."""

from __future__ import annotations

import csv
import json

from real_data import full_or_slice
from typer.testing import CliRunner

from assistant.cli import app

runner = CliRunner()


def test_prepare_writes_the_contracted_files(tunewise_home, smol_tokenizer, shared_datasets, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "prepare", str(shared_datasets / "gsm8k" / "test.jsonl"), "--out", str(out),
                                 "--format", "sharegpt", "--split", "0.7,0.2,0.1", "--seed", "5", "--review", "10"])
    assert result.exit_code == 0, result.output
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "rejects.jsonl", "report.json", "report.md"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert {"input_rows", "kept", "rejected", "duplicates_removed", "near_duplicates_removed", "pii_redacted",
            "splits", "detected_format"} <= set(report)
    assert report["splits"]["validation"] == round(report["kept"] * 0.2)
    first = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert [t["from"] for t in first["conversations"]] == ["human", "gpt"]
    assert f"{full_or_slice(1_319, 40):,} rows read as prompt_completion" in result.stderr

    # The reviewer fills in verdicts; `data review` tallies them into the report.
    rows = list(csv.DictReader((out / "review.csv").open(encoding="utf-8")))
    assert len(rows) == 10
    for row, verdict in zip(rows, ["ok"] * 7 + ["fix", "drop"], strict=False):
        row["verdict"] = verdict
    with (out / "review.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = runner.invoke(app, ["data", "review", str(out)])
    assert result.exit_code == 0
    assert json.loads((out / "report.json").read_text())["review"]["verdicts"] == {"ok": 7, "fix": 1, "drop": 1,
                                                                                   "unreviewed": 1}


def test_prepare_errors_name_the_problem(tunewise_home, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = runner.invoke(app, ["data", "prepare", str(empty), "--out", str(tmp_path / "o")])
    said = result.stderr.replace("\n", "")  # (the terminal may wrap a long path anywhere)
    assert result.exit_code == 2 and "empty.csv is empty (0 bytes)" in said
    result = runner.invoke(app, ["data", "prepare", str(empty), "--out", str(tmp_path / "o"), "--split", "0.5,0.5"])
    assert result.exit_code == 2 and "three non-negative fractions" in result.output
    bad = tmp_path / "cols.jsonl"
    bad.write_text(json.dumps({"foo": "a", "bar": "b"}) + "\n")
    result = runner.invoke(app, ["data", "prepare", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "foo" in result.stderr and "--map" in result.stderr


def test_prepare_group_by_round_trip(tunewise_home, smol_tokenizer, tmp_path):
    source = tmp_path / "sql.jsonl"
    source.write_text("".join(json.dumps({"db_id": f"db_{d}", "question": f"Question {q} about database {d}?",
                                          "query": f"SELECT c{q} FROM t_{d}"}) + "\n"
                              for d in range(5) for q in range(4)))
    out = tmp_path / "out"
    args = ["data", "prepare", str(source), "--out", str(out), "--map", "prompt=question,completion=query"]
    result = runner.invoke(app, [*args, "--group-by", "db_id"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["group_by"] == "db_id" and report["groups"]["column"] == "db_id"
    assert report["splits"] == {"train": 12, "validation": 4, "test": 4}
    assert "5 groups of db_id -> train 3 (12 rows), validation 1 (4 rows), test 1 (4 rows)" in result.stderr
    assert "note: Row shares differ from the asked fractions by up to 20%" in result.stderr

    result = runner.invoke(app, args)  # without --group-by: the suggestion
    assert result.exit_code == 0 and "consider --group-by db_id so the test split measures unseen databases" in (
        " ".join(result.stderr.split()))
    result = runner.invoke(app, [*args, "--group-by", "db"])
    assert result.exit_code == 2
    assert "--group-by column 'db' has no value in any row. Columns seen: db_id, question, query" in (
        " ".join(result.stderr.split()))
