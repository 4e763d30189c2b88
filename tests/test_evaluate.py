"""End to end: train a tiny model, then evaluate it against its base and the baselines with CIs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import lora_plan
from typer.testing import CliRunner

from executor.evaluate.runner import EvalError, detect_task, evaluate, record_human_preference
from executor.models.loader import tiny_llama
from executor.plan import TrainingPlan
from executor.train.runner import train

CITIES = [("France", "Paris"), ("Spain", "Madrid"), ("Italy", "Rome"), ("Peru", "Lima"), ("Japan", "Tokyo")]


def rows(n: int) -> list[dict]:
    out = []
    for i in range(n):
        country, city = CITIES[i % len(CITIES)]
        out.append({"messages": [{"role": "system", "content": "Answer with the capital only."},
                                 {"role": "user", "content": f"Capital of {country}?"},
                                 {"role": "assistant", "content": city}], "label": city})
    return out


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tunewise_home) -> Path:
    base = tmp_path_factory.mktemp("eval")
    data = base / "data"
    data.mkdir()
    for split, n in (("train", 40), ("validation", 5), ("test", 10)):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(n)))
    plan = TrainingPlan.model_validate({
        "approach": "fine_tuning", "technique": "lora", "base_model": {"id": "smollm2-135m-instruct"},
        "training": {"method": "lora", "epochs": 1, "learning_rate": 2e-2, "per_device_batch_size": 4,
                     "gradient_accumulation_steps": 1, "max_seq_length": 128, "early_stopping_patience": None,
                     "lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
        "evaluation": {"baselines": ["zero_shot", "few_shot", "rag"], "few_shot_k": 2},
        "hardware": {"device": "cpu"}})
    run = base / "run"
    train(plan.with_overrides({"data.path": str(data), "training.max_steps": 30}), run, model_factory=tiny_llama)
    return run


def test_report_compares_every_system_with_confidence_intervals(trained_run):
    report = evaluate(trained_run, model_factory=tiny_llama)
    assert report["task"] == "classification" and report["n"] == 10
    assert set(report["systems"]) == {"base", "tuned", "zero_shot", "few_shot", "rag"}
    for system, metrics in report["systems"].items():
        for name in ("accuracy", "macro_f1"):
            m = metrics[name]
            assert set(m) == {"value", "ci_low", "ci_high", "n"} and m["n"] == 10, (system, name)
            assert m["ci_low"] <= m["value"] <= m["ci_high"]
    base_ppl, tuned_ppl = report["systems"]["base"]["perplexity"], report["systems"]["tuned"]["perplexity"]
    assert tuned_ppl["value"] < base_ppl["value"]  # trained on the same distribution: the tuned model is less surprised
    saved = json.loads((trained_run / "report.json").read_text())
    assert saved["systems"]["tuned"]["accuracy"] == report["systems"]["tuned"]["accuracy"]
    examples = [json.loads(line) for line in (trained_run / "eval_examples.jsonl").read_text().splitlines()]
    assert len(examples) == 10 and {"input", "reference", "base", "tuned", "few_shot"} <= set(examples[0])
    assert (trained_run / "eval_comparison.png").stat().st_size > 0
    md = (trained_run / "report.md").read_text()
    assert "| tuned |" in md and "accuracy" in md


def test_cli_eval_json_and_limit(trained_run, monkeypatch):
    import executor.evaluate.runner as runner_module
    from assistant.cli import app

    original = runner_module.evaluate
    monkeypatch.setattr(runner_module, "evaluate",
                        lambda *a, **kw: original(*a, **{**kw, "model_factory": tiny_llama}))
    result = CliRunner().invoke(app, ["eval", str(trained_run), "--limit", "4", "--baselines", "zero_shot",
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 4 and set(report["systems"]) == {"base", "tuned", "zero_shot"}
    assert report["sample"].startswith("Evaluated on a seeded random sample of 4 of ")
    assert report["sample"] in report["notes"]
    bad = CliRunner().invoke(app, ["eval", str(trained_run), "--baselines", "oracle"])
    assert bad.exit_code == 2 and "unknown ['oracle']" in bad.stderr


def test_human_preferences_are_recorded(trained_run):
    record_human_preference(trained_run, 0, "tuned")
    record_human_preference(trained_run, 1, "base")
    summary = record_human_preference(trained_run, 2, "tie")
    assert summary["n"] == 3 and summary["value"] == pytest.approx(0.5)
    with pytest.raises(EvalError, match="use base, tuned or tie"):
        record_human_preference(trained_run, 3, "both")


def test_task_detection():
    assert detect_task(["a", "b", "a", "b"], ["a", "b", "a", "b"]) == "classification"
    assert detect_task(['{"x": 1}', '{"x": 2}'], [None, None]) == "json"
    assert detect_task(["so 3 + 4 = 7\n#### 7", "#### 12"], [None, None]) == "exact_match"
    assert detect_task(["A long free-form answer.", "Another one."], [None, None]) == "generation"


def test_llm_judge_controls_position_bias():
    from executor.evaluate.judge import judged_win_rate, verdict

    assert verdict("B") == "B" and verdict("I think answer a.") == "A" and verdict("no idea") == "TIE"
    always_first = lambda prompt: "A"  # noqa: E731 - a judge with pure position bias
    estimate = judged_win_rate(["q1", "q2"], ["base1", "base2"], ["tuned1", "tuned2"], always_first)
    assert estimate.value == 0.5  # flips with the order: every example is a tie, never a win
    prefers_tuned = lambda prompt: "A" if prompt.index("tuned") < prompt.index("base") else "B"  # noqa: E731
    assert judged_win_rate(["q"], ["base x"], ["tuned x"], prefers_tuned).value == 1.0


def test_generation_runs_use_the_judge(tmp_path, tunewise_home, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    chat = [{"messages": [{"role": "user", "content": f"Describe item {i}"},
                          {"role": "assistant", "content": f"Item {i} is a sturdy blue box for storage."}]}
            for i in range(12)]
    for split in ("train", "test"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat))
    plan = lora_plan("smollm2-135m-instruct", {"evaluation.baselines": [], "data.path": str(data),
                                                "training.max_steps": 3})
    train(plan, tmp_path / "run", model_factory=tiny_llama)
    calls = []
    report = evaluate(tmp_path / "run", limit=3, model_factory=tiny_llama,
                      judge=lambda prompt: calls.append(prompt) or "TIE")
    assert report["task"] == "generation" and len(calls) == 6  # two orders per example
    assert report["systems"]["tuned"]["win_rate_vs_base"]["value"] == 0.5
    assert report["systems"]["tuned"]["win_rate_judge"] == "llm_both_orders"

    # An API key whose server cannot be reached (a closed port): the judge fails, the evaluation does not.
    from executor.train.distributed import free_port

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unreachable")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    report = evaluate(tmp_path / "run", limit=3, model_factory=tiny_llama)
    assert "win_rate_vs_base" not in report["systems"]["tuned"] and "win_rate_judge" not in report["systems"]["tuned"]
    sample, judge_note = report["notes"]  # the sample is said first, then the judge's failure
    assert sample == report["sample"] and judge_note.startswith("No judged win rate: the LLM judge failed (")
    assert report["systems"]["tuned"]["perplexity"]["value"] > 0  # the rest was measured
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert f"Note: {judge_note}" in markdown and f"Note: {sample}" in markdown


def test_limit_takes_a_stratified_seeded_sample_not_the_first_rows():
    from executor.evaluate.runner import sample_rows

    # A test file ordered by label, as Banking77's official test set is: 10 labels x 30 rows.
    labels = [f"intent_{k}" for k in range(10) for _ in range(30)]
    rows = list(range(len(labels)))
    taken, taken_labels, note = sample_rows(rows, labels, 50)
    assert len(taken) == 50 and taken == sorted(taken)
    assert {label: taken_labels.count(label) for label in set(taken_labels)} == {f"intent_{k}": 5 for k in range(10)}
    assert sample_rows(rows, labels, 50) == (taken, taken_labels, note)  # seeded: the same rows every time
    assert taken != rows[:50]
    assert note == ("Evaluated on a seeded random sample of 50 of 300 test rows (stratified by label over 10 "
                    "labels, seed 0).")
    # Uneven classes keep their shares; rows without labels are sampled uniformly; no limit keeps all.
    uneven = ["a"] * 70 + ["b"] * 20 + ["c"] * 10
    _, got, _ = sample_rows(list(range(100)), uneven, 10)
    assert (got.count("a"), got.count("b"), got.count("c")) == (7, 2, 1)
    plain, _, plain_note = sample_rows(list(range(100)), [None] * 100, 7)
    assert len(set(plain)) == 7 and "uniform" in plain_note
    assert sample_rows(rows, labels, None) == (rows, labels, None)


def test_report_notes_a_metric_whose_interval_misses_its_value():
    import numpy as np

    from executor.evaluate.runner import _intervals_missing_their_value, score_outputs

    # About one example per intent (3,000 rows over 3,000 intents, half answered right): too thin for a bootstrap
    # of macro-F1, whose resamples then all lie on one side of the value. Accuracy is still fine.
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3000, 3000)
    guess = np.where(rng.random(3000) < 0.5, truth, rng.integers(0, 3000, 3000))
    labels = [f"intent_{i}" for i in range(3000)]
    metrics, _ = score_outputs("classification", [labels[g] for g in guess], [labels[t] for t in truth], labels)
    macro = metrics["macro_f1"]
    assert not macro["ci_low"] <= macro["value"] <= macro["ci_high"]
    (note,) = _intervals_missing_their_value({"tuned": metrics})
    assert note.startswith("tuned macro_f1: the bootstrap interval [") and "too few examples" in note
    assert _intervals_missing_their_value({"base": {"accuracy": metrics["accuracy"], "unmapped": 0}}) == []
