"""`tunewise train PLAN.yaml` as teams run it: dry run with the real plan, clear errors, exit codes."""

from __future__ import annotations

import json

from tiny import counting_chats, lora_plan
from typer.testing import CliRunner

from assistant.cli import app
from executor.plan import dump_plan, load_plan

runner = CliRunner()


def test_recommend_prepare_then_dry_run_train(tunewise_home, smol_tokenizer, shared_datasets, tmp_path):
    """The whole loop on the CLI: recommend writes a plan, data prepare writes splits, train --dry-run runs it."""
    plan_path = tmp_path / "plan.yaml"
    result = runner.invoke(app, ["recommend", "We have 3,000 labeled banking messages to classify into intents. "
                                 "No GPU.", "--plan-out", str(plan_path), "--no-retrieval"])
    assert result.exit_code == 0, result.output
    assert load_plan(plan_path).technique == "lora"
    data = tmp_path / "data"
    result = runner.invoke(app, ["data", "prepare", str(shared_datasets / "banking77" / "test.csv"), "--out",
                                 str(data), "--review", "5"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(plan_path), "--data", str(data), "--out", str(run), "--dry-run"])
    assert result.exit_code == 0, result.output
    outcome = json.loads((run / "result.json").read_text())
    assert outcome["dry_run"] and outcome["steps"] == 3 and outcome["technique"] == "lora"
    assert (run / "adapter" / "adapter_config.json").exists() and (run / "merged").exists()
    assert load_plan(run / "plan.yaml").data.path == str(data)
    assert list((run / "tensorboard").rglob("events.out.tfevents*"))


def test_train_errors_exit_2_with_the_field(tunewise_home, tmp_path):
    from executor.plan import TrainingPlan

    plan = TrainingPlan.model_validate({"approach": "fine_tuning", "technique": "lora",
                                        "base_model": {"id": "smollm2-135m-instruct"},
                                        "training": {"method": "lora", "lora": {}}})
    path = dump_plan(plan, tmp_path / "p.yaml")
    result = runner.invoke(app, ["train", str(path), "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "data.path" in result.stderr and "tunewise data prepare" in result.stderr
    (tmp_path / "bad.yaml").write_text("approach: fine_tuning\ntechnique: lora\n")
    result = runner.invoke(app, ["train", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "base_model" in result.stderr


def test_a_run_directorys_plan_alone_reruns_the_run(tunewise_home, tiny_model_dir, tmp_path):
    """The flags become plan fields: rerunning RUN_DIR/plan.yaml with no flags trains the same steps on the same
    data and logs the same losses."""
    data = counting_chats(tmp_path / "data", 12)
    plan = lora_plan(tiny_model_dir)
    first, again = tmp_path / "first", tmp_path / "again"
    result = runner.invoke(app, ["train", str(dump_plan(plan, tmp_path / "plan.yaml")), "--data", str(data),
                                 "--max-steps", "3", "--out", str(first)])
    assert result.exit_code == 0, result.output
    written = load_plan(first / "plan.yaml")
    assert (written.data.path, written.training.max_steps) == (str(data), 3)
    result = runner.invoke(app, ["train", str(first / "plan.yaml"), "--out", str(again)])
    assert result.exit_code == 0, result.output

    def losses(run):
        return [m["loss"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                if m.get("loss") is not None]

    assert len(losses(first)) == 3 and losses(again) == losses(first)
    assert load_plan(again / "plan.yaml") == written
