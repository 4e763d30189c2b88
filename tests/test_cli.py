"""The CLI contract other tools depend on: `tunewise recommend` text, --json, --jsonl -, --plan-out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from assistant.cli import app
from executor.plan import load_plan

REQUIRED = {"approach", "technique", "base_model", "reasons", "citations", "questions", "plan"}
runner = CliRunner()


def run(args, input=None):
    return runner.invoke(app, args, input=input, catch_exceptions=False)


def test_readable_output(tunewise_home):
    result = run(["recommend", "Prices change every hour and answers must cite sources."])
    assert result.exit_code == 0, result.output
    assert "RAG (retrieval-augmented generation)" in result.output
    assert "Why" in result.output and "[decision-guide#real-time-or-changing-data" in result.output
    assert "Citations" in result.output


def test_json(tunewise_home):
    result = run(["recommend", "We have 5,000 preference pairs and one H100.", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert REQUIRED <= set(data)
    assert (data["approach"], data["technique"]) == ("fine_tuning", "dpo")
    assert len(data["reasons"]) >= 2 and len(data["citations"]) >= 1
    assert data["plan"]["training"]["preference"]["beta"] == 0.1


def test_plan_out_writes_a_loadable_plan(tunewise_home, tmp_path):
    out = tmp_path / "plans" / "plan.yaml"
    result = run(["recommend", "We have 3,000 labeled tickets to classify and a 24 GB GPU.", "--plan-out", str(out)])
    assert result.exit_code == 0
    plan = load_plan(out)
    assert (plan.approach, plan.technique) == ("fine_tuning", "lora")
    assert plan.data.split.stratify_by == "label"
    assert yaml.safe_load(out.read_text())["schema_version"] == 1


def test_jsonl_accounts_for_every_line(tunewise_home):
    lines = [
        json.dumps({"id": "a", "text": "We must use the OpenAI API; 2,000 examples in our tone."}),
        "{not json",
        json.dumps({"id": 7, "text": ""}),
        "",
        json.dumps({"id": "c"}),
        json.dumps(["a", "list"]),
    ]
    result = run(["recommend", "--jsonl", "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 1  # some lines were rejected
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 5  # the blank line is not a request
    assert out[0]["id"] == "a" and REQUIRED <= set(out[0]) and out[0]["technique"] == "api"
    assert out[1] == {"id": None, "error": out[1]["error"]} and out[1]["error"].startswith("-:2:")
    assert out[2]["id"] == 7 and out[2]["approach"] == "prompting" and out[2]["questions"]
    assert out[3]["id"] == "c" and "-:5: field 'text'" in out[3]["error"]
    assert "-:6: expected a JSON object" in out[4]["error"]
    assert "2 recommended, 3 rejected" in result.stderr


def test_jsonl_missing_file(tunewise_home, tmp_path):
    result = run(["recommend", "--jsonl", str(tmp_path / "absent.jsonl")])
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_malformed_rules_file_is_reported(tunewise_home, tmp_path, knowledge):
    import shutil

    kdir = tmp_path / "k"
    shutil.copytree(knowledge.root, kdir)
    rules = yaml.safe_load((kdir / "rules.yaml").read_text())
    rules["rules"][3]["effect"] = {"approach": {"fine-tuning": 1}}
    (kdir / "rules.yaml").write_text(yaml.safe_dump(rules))
    result = run(["recommend", "anything", "--knowledge", str(kdir), "--no-retrieval"])
    assert result.exit_code == 2
    assert f"rule '{rules['rules'][3]['id']}'" in result.stderr and "effect.approach" in result.stderr


def test_help_is_fast_and_lists_recommend():
    result = run(["--help"])
    assert result.exit_code == 0 and "recommend" in result.output


@pytest.mark.slow
def test_console_script_reads_jsonl_from_stdin(tunewise_home):
    """The installed `tunewise` entry point, as another tool would call it (models loaded once)."""
    exe = Path(sys.executable).with_name("tunewise")
    inputs = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(
        ["We have 40 examples.", "No GPU; 2,000 labeled emails to classify.", "Cite sources; data changes daily."]))
    proc = subprocess.run([str(exe), "recommend", "--jsonl", "-"], input=inputs, capture_output=True, text=True,
                          env={**os.environ, "TUNEWISE_HOME": str(tunewise_home)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["id"], r["approach"]) for r in rows] == [(0, "prompting"), (1, "fine_tuning"), (2, "rag")]
