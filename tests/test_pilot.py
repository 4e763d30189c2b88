"""Issue #20: the pilot measures the candidate approaches on the team's data within a budget, fits a learning
curve, reaches a verdict, and the advice is revised from it. Tiny models; injected clocks instead of sleeps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from executor.models.loader import tiny_llama
from executor.pilot import runner as pilot_runner
from executor.pilot.budget import Budget
from executor.pilot.curve import fit_curve
from executor.pilot.evidence import verdict
from executor.plan import TrainingPlan

CITIES = [("France", "Paris"), ("Spain", "Madrid"), ("Italy", "Rome"), ("Peru", "Lima"), ("Japan", "Tokyo")]


def est(value: float, half: float = 0.05) -> dict:
    return {"value": value, "ci_low": max(0.0, value - half), "ci_high": min(1.0, value + half)}


# ---------------------------------------------------------------- the learning curve


def synthetic(sizes, c=2.0, alpha=0.5, rows=400, seed=0):
    """Per-row 0/1 scores whose mean follows accuracy = 1 - c * n^-alpha."""
    rng = np.random.default_rng(seed)
    return [list((rng.random(rows) < 1 - c * n ** -alpha).astype(float)) for n in sizes]


def test_the_curve_recovers_a_power_law_and_predicts_the_full_run():
    sizes = [100, 400, 1600]
    fit = fit_curve(sizes, synthetic(sizes, rows=2000), target=6400)
    truth = 1 - 2.0 * 6400 ** -0.5  # 0.975
    assert fit.alpha == pytest.approx(0.5, abs=0.1)
    assert fit.ci_low <= truth <= fit.ci_high
    assert abs(fit.predicted - truth) < 0.01
    assert fit.gain_per_doubling > 0 and fit.extrapolation == 4.0
    assert fit.scores[0] < fit.scores[-1]


def test_a_flat_curve_predicts_no_gain():
    sizes = [50, 100, 200]
    rng = np.random.default_rng(1)
    flat = [list((rng.random(300) < 0.6).astype(float)) for _ in sizes]
    fit = fit_curve(sizes, flat, target=5000)
    assert abs(fit.predicted - 0.6) < 0.08 and fit.gain_per_doubling < 0.03


def test_one_size_is_no_curve():
    assert fit_curve([100], synthetic([100]), target=1000) is None
    assert fit_curve([100, 100], synthetic([100, 100]), target=1000) is None


# ---------------------------------------------------------------- the verdict


def test_tuning_above_prompting_beyond_both_intervals_is_confirmed():
    v = verdict({"zero_shot": est(0.02), "few_shot": est(0.08), "tuned": est(0.55)}, None)
    assert v["verdict"] == "fine_tuning" and "8.0%" in v["reason"] and "55.0%" in v["reason"]


def test_a_short_run_not_yet_ahead_is_confirmed_by_its_curve():
    curve = {"predicted": 0.8, "ci_low": 0.7, "ci_high": 0.88, "target": 10000}
    v = verdict({"few_shot": est(0.30), "tuned": est(0.34)}, curve)
    assert v["verdict"] == "fine_tuning" and "10,000" in v["reason"] and "80.0%" in v["reason"]


def test_few_shot_within_the_tuned_interval_and_no_predicted_gain_is_prompting():
    curve = {"predicted": 0.71, "ci_low": 0.66, "ci_high": 0.74, "target": 2000}
    v = verdict({"zero_shot": est(0.5), "few_shot": est(0.72), "tuned": est(0.70)}, curve)
    assert v["verdict"] == "prompting" and "few-shot prompting 72.0%" in v["reason"].lower()


def test_retrieval_above_both_wins():
    v = verdict({"few_shot": est(0.2), "rag": est(0.6), "tuned": est(0.3)}, None)
    assert v["verdict"] == "rag" and "60.0%" in v["reason"]


def test_overlapping_systems_are_inconclusive():
    curve = {"predicted": 0.5, "ci_low": 0.3, "ci_high": 0.7, "target": 900}
    assert verdict({"few_shot": est(0.45), "tuned": est(0.42)}, curve)["verdict"] == "inconclusive"
    assert verdict({"few_shot": est(0.45)}, None)["verdict"] == "inconclusive"  # no tuned run finished


def test_nothing_above_zero_is_inconclusive_not_prompting():
    zero = {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert verdict({"few_shot": zero, "tuned": zero}, None)["verdict"] == "inconclusive"


def test_budget_runs_on_the_injected_clock():
    now = [100.0]
    budget = Budget(60, clock=lambda: now[0])
    now[0] += 45
    assert budget.spent() == 45 and budget.left() == 15
    assert budget.affords(15) and not budget.affords(16)
    now[0] += 30
    assert budget.left() == 0
    with pytest.raises(ValueError, match="positive"):
        Budget(0)


# ---------------------------------------------------------------- the pilot, end to end with a tiny model


def rows(n: int) -> list[dict]:
    return [{"messages": [{"role": "system", "content": "Answer with the capital only."},
                          {"role": "user", "content": f"Capital of {CITIES[i % 5][0]}?"},
                          {"role": "assistant", "content": CITIES[i % 5][1]}], "label": CITIES[i % 5][1]}
            for i in range(n)]


def capitals_plan(**overrides) -> TrainingPlan:
    return TrainingPlan.model_validate({
        "approach": "fine_tuning", "technique": "lora", "base_model": {"id": "smollm2-135m-instruct"},
        "training": {"method": "lora", "epochs": 1, "learning_rate": 2e-2, "per_device_batch_size": 4,
                     "gradient_accumulation_steps": 1, "max_seq_length": 64,
                     "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "evaluation": {"few_shot_k": 2}, "hardware": {"device": "cpu"},
        "use_case": "Route customer banking messages to one of 77 intents; 12,000 labeled messages.",
    }).with_overrides(overrides)


@pytest.fixture(scope="module")
def capitals(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("pilot") / "data"
    data.mkdir()
    for split, n in (("train", 32), ("validation", 4), ("test", 20)):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(n)))
    return data


@pytest.fixture(scope="module")
def finished(capitals, tunewise_home) -> tuple[Path, dict]:
    out = capitals.parent / "pilot"
    report = pilot_runner.pilot(capitals_plan(), capitals, out, budget_seconds=900, model_factory=tiny_llama)
    return out, report


def test_the_pilot_measures_baselines_and_a_nested_learning_curve(finished):
    out, report = finished
    assert set(report["systems"]) == {"zero_shot", "few_shot", "tuned"}  # the candidates, not the bare base model
    for metrics in report["systems"].values():
        acc = metrics["accuracy"]
        assert acc["ci_low"] <= acc["value"] <= acc["ci_high"] and acc["n"] == report["n"] == 20
    sizes = [p["size"] for p in report["curve"]["points"]]
    # Three sizes, the largest half the 32 train rows: the pilot samples, and the full run stays its prediction.
    assert sizes == [8, 11, 16]
    assert report["curve"]["fit"]["target"] == 32
    # Each smaller sample is inside the larger one: the curve measures more data, not other data.
    trains = [set((out / "curve" / f"n{s}" / "data" / "train.jsonl").read_text().splitlines()) for s in sizes]
    lines = [(out / "curve" / f"n{s}" / "data" / "train.jsonl").read_text().splitlines() for s in sizes]
    assert [len(x) for x in lines] == sizes
    assert all(len(trains[i]) <= len(trains[i + 1]) for i in range(2))
    assert report["verdict"] in {"prompting", "rag", "fine_tuning", "inconclusive"} and report["reason"]
    assert not report["proxy"] and report["technique"] == "lora"


def test_the_pilot_writes_its_report_files(finished):
    out, report = finished
    saved = json.loads((out / "pilot.json").read_text())
    assert saved["verdict"] == report["verdict"] and saved["chart"] == "pilot.png"
    assert (out / "pilot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "pilot.md").read_text()
    assert f"**Verdict: {report['verdict']}.**" in md and "## Learning curve" in md and "| 16 |" in md
    for size in (p["size"] for p in report["curve"]["points"]):  # the heavy weights go, the adapter stays
        assert not (out / "curve" / f"n{size}" / "run" / "merged").exists()
        assert (out / "curve" / f"n{size}" / "run" / "adapter" / "adapter_config.json").exists()


def test_a_resumed_pilot_does_not_measure_again(finished, capitals, monkeypatch):
    out, report = finished

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was run again")

    monkeypatch.setattr("executor.train.runner.train", no_training)
    monkeypatch.setattr("executor.evaluate.generate.generate", no_training)
    again = pilot_runner.pilot(capitals_plan(), capitals, out, budget_seconds=900, model_factory=tiny_llama)
    assert again["systems"] == report["systems"] and again["curve"] == report["curve"]


def test_a_pilot_out_of_budget_stops_with_what_it_has_and_says_what_it_skipped(capitals, tmp_path, tunewise_home):
    ticks = [0.0]

    def clock():  # every reading of the clock costs 10 s of budget: the pilot runs out after the first systems
        ticks[0] += 10.0
        return ticks[0]

    report = pilot_runner.pilot(capitals_plan(), capitals, tmp_path / "cut", budget_seconds=120, clock=clock,
                                model_factory=tiny_llama)
    assert report["skipped"] and any("s left" in s for s in report["skipped"])
    assert "zero_shot" in report["systems"] and not report["curve"]["points"]
    assert report["verdict"] == "inconclusive"
    assert (tmp_path / "cut" / "pilot.md").exists()


def test_a_short_run_that_would_overrun_the_budget_is_stopped_and_said(capitals, tmp_path, tunewise_home):
    ticks = [0.0]

    def clock():  # 10 s a reading: the baselines fit in 200 s, the first short run does not
        ticks[0] += 10.0
        return ticks[0]

    report = pilot_runner.pilot(capitals_plan(), capitals, tmp_path / "stop", budget_seconds=200, clock=clock,
                                model_factory=tiny_llama)
    assert set(report["systems"]) == {"zero_shot", "few_shot"} and not report["curve"]["points"]
    assert any(s.startswith("tuned run on 8 rows: stopped before it finished") for s in report["skipped"])
    assert not (tmp_path / "stop" / "curve" / "n8").exists()  # the unfinished run leaves nothing half-written


def test_a_model_that_is_not_here_is_measured_on_a_proxy(monkeypatch):
    monkeypatch.setattr("executor.train.runner._hub_copy_exists", lambda repo: False)
    plan = capitals_plan(**{"base_model": {"id": "llama-3.1-8b-instruct", "source": "hub"}})
    model, note = pilot_runner.choose_model(plan, "cpu")
    assert model == "smollm2-135m-instruct"
    assert note.startswith("measured on a proxy") and "llama-3.1-8b-instruct" in note
    tuning, why = pilot_runner._tuning_plan(plan, model, proxy=True)
    assert tuning.base_model.id == "smollm2-135m-instruct" and tuning.base_model.source == "bundled"
    assert why is None and tuning.technique == "lora"
    short, _ = pilot_runner._tuning_plan(plan, model, proxy=False)
    assert short.training.early_stopping_patience is None


RULE = {"min_steps_per_epoch": 30, "lr_exponent": 0.77, "min_total_steps": 120}


def test_each_short_run_is_the_plan_as_the_advisor_would_size_it_for_that_many_rows():
    # The advised Banking77 plan on a big GPU: 256 rows a step (8 x 32), lr 1.7e-3, 4 epochs for 7,963 rows.
    big = capitals_plan(**{"training.per_device_batch_size": 32, "training.gradient_accumulation_steps": 8,
                           "training.learning_rate": 1.7e-3, "training.epochs": 4}).training
    small = pilot_runner.recipe(big, 512, "cuda", RULE)
    # 512 rows: halved to 16 rows a step (32 steps an epoch), the lr scaled down as the advisor scales it up
    # (1.7e-3 x (16/256)^0.77 = 2.0e-4, the 16-row plan's own), 4 epochs for 120+ steps.
    assert (small["rows_per_step"], small["training.per_device_batch_size"],
            small["training.gradient_accumulation_steps"]) == (16, 16, 1)
    assert small["training.learning_rate"] == pytest.approx(2.0e-4, rel=0.01) and small["training.epochs"] == 4 and small["steps"] == 128
    larger = pilot_runner.recipe(big, 3981, "cuda", RULE)
    assert (larger["rows_per_step"], larger["training.per_device_batch_size"],
            larger["training.gradient_accumulation_steps"], larger["steps"]) == (128, 32, 4, 128)
    # A CPU plan (16 rows a step, 2 epochs) on 64 rows: 8 rows a step (never fewer), 3 passes at most.
    cpu = capitals_plan(**{"training.per_device_batch_size": 4, "training.gradient_accumulation_steps": 4,
                           "training.learning_rate": 2e-4, "training.epochs": 2}).training
    tiny = pilot_runner.recipe(cpu, 64, "cpu", RULE)
    assert (tiny["rows_per_step"], tiny["training.gradient_accumulation_steps"], tiny["training.epochs"],
            tiny["steps"]) == (8, 2, 3, 24)
    assert tiny["training.learning_rate"] == pytest.approx(2e-4 * 0.5 ** 0.77, rel=1e-2)
    # The rule is the advisor's: knowledge/hyperparameters.yaml large_steps.
    assert pilot_runner.step_rule() == RULE


def test_step_time_is_scaled_from_the_measured_runs():
    # One run measured: a CPU step grows with its rows, a GPU step by the cautious square root.
    assert pilot_runner.step_seconds([[8, 2.0]], 16, "cpu") == pytest.approx(4.0)
    assert pilot_runner.step_seconds([[16, 0.3]], 256, "cuda") == pytest.approx(1.2)
    # Two row counts measured: the exponent is fitted (here host-bound: 0.30 s at 16 rows, 0.32 s at 64).
    fitted = pilot_runner.step_seconds([[16, 0.30], [64, 0.32]], 256, "cuda")
    assert fitted == pytest.approx(0.32 * 4 ** (math.log(0.32 / 0.30) / math.log(4)), rel=1e-6) and fitted < 0.35


def test_a_prompting_plan_is_piloted_with_lora_to_measure_what_tuning_would_add():
    plan = TrainingPlan.model_validate({"approach": "prompting", "technique": "none",
                                        "base_model": {"id": "smollm2-135m-instruct"}})
    tuning, why = pilot_runner._tuning_plan(plan, "smollm2-135m-instruct", proxy=False)
    assert tuning.technique == "lora" and tuning.approach == "fine_tuning" and "trains nothing" in why


def test_the_cli_reports_and_revises_the_advice(finished, capitals, tmp_path):
    from assistant.cli import app

    out, report = finished
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(capitals_plan().to_yaml())
    # The finished pilot's folder: the command resumes it (nothing left to measure) and revises the advice.
    result = CliRunner().invoke(app, ["pilot", str(plan_file), "--data", str(capitals), "--out", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["pilot"]["verdict"] == report["verdict"]
    assert payload["advice"]["before"]["approach"] == "fine_tuning"
    assert payload["advice"]["verdict"] == report["verdict"]


def test_the_cli_keeps_stdout_for_the_json_report(finished, capitals, tmp_path, monkeypatch):
    from assistant.cli import app

    out, report = finished

    def noisy_pilot(*args, **kwargs):
        print({"loss": "4.667", "epoch": "0.25"})  # what the Trainer prints while a short run trains
        return report

    monkeypatch.setattr("executor.pilot.runner.pilot", noisy_pilot)
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(capitals_plan().to_yaml())
    result = CliRunner().invoke(app, ["pilot", str(plan_file), "--data", str(capitals), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pilot"]["verdict"] == report["verdict"]


def test_the_cli_documents_option_gives_the_rag_system_its_corpus(finished, capitals, tmp_path, monkeypatch):
    from assistant.cli import app

    out, report = finished
    seen = {}

    def capturing_pilot(plan, *args, **kwargs):
        seen["plan"] = plan
        return report

    monkeypatch.setattr("executor.pilot.runner.pilot", capturing_pilot)
    docs = tmp_path / "papers"
    docs.mkdir()
    (docs / "a.txt").write_text("Paris is the capital of France.")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(capitals_plan().to_yaml())
    result = CliRunner().invoke(app, ["pilot", str(plan_file), "--data", str(capitals), "--documents", str(docs),
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert seen["plan"].data.corpus_path == str(docs)
    assert capitals_plan().data.corpus_path is None and "papers" not in plan_file.read_text()  # file unchanged
    missing = CliRunner().invoke(app, ["pilot", str(plan_file), "--data", str(capitals), "--documents",
                                       str(tmp_path / "gone")])
    assert missing.exit_code == 2 and "gone: no such file or folder" in " ".join(missing.output.split())


def test_the_cli_names_a_missing_data_folder(tmp_path):
    from assistant.cli import app

    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(capitals_plan().to_yaml())
    result = CliRunner().invoke(app, ["pilot", str(plan_file), "--data", str(tmp_path / "nope")])
    said = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2 and "/nope: no such data folder" in said


# ---------------------------------------------------------------- the advice revised by the evidence


@pytest.fixture(scope="module")
def advisor():
    from assistant.recommend import Advisor

    return Advisor(index=None)


ROUTING = "Route customer banking messages to one of 77 intents; we have 12,000 labeled messages."


def pilot_report(verdict_name: str, reason: str) -> dict:
    return {"verdict": verdict_name, "reason": reason, "n": 300}


def test_a_pilot_where_few_shot_matches_tuning_revises_the_advice_to_prompting(advisor):
    from assistant.pilot_advice import revise

    profile, _ = advisor.profile_from_text(ROUTING)
    revision = revise(advisor, profile, pilot_report("prompting", "Few-shot prompting 81.0% [77%, 85%] is within "
                                                                  "the interval of the short tuned run."), ROUTING)
    assert revision.before.approach == "fine_tuning" and revision.after.approach == "prompting"
    assert revision.changed and "pilot-prompting-enough" in revision.to_dict()["rules"]
    assert revision.summary().startswith("Advice changed: fine_tuning / lora -> prompting / none.")
    assert "81.0%" in revision.summary()


def test_a_pilot_that_confirms_tuning_keeps_the_advice_and_says_so(advisor):
    from assistant.pilot_advice import revise

    profile, _ = advisor.profile_from_text(ROUTING)
    revision = revise(advisor, profile, pilot_report("fine_tuning", "The short tuned run scored 62.0%."), ROUTING)
    assert not revision.changed and revision.after.approach == "fine_tuning"
    assert revision.summary().startswith("Advice stands") and revision.after.confidence >= revision.before.confidence


def test_a_pilot_where_retrieval_wins_moves_a_thin_description_to_rag(advisor):
    from assistant.pilot_advice import revise

    text = "An assistant for our support team."
    profile, _ = advisor.profile_from_text(text)
    revision = revise(advisor, profile, pilot_report("rag", "Retrieval scored 70.0%."), text)
    assert revision.after.approach == "rag" and "pilot-retrieval-wins" in revision.to_dict()["rules"]


def test_an_inconclusive_pilot_changes_nothing(advisor):
    from assistant.pilot_advice import revise

    profile, _ = advisor.profile_from_text(ROUTING)
    revision = revise(advisor, profile, pilot_report("inconclusive", "They overlap."), ROUTING)
    assert not revision.changed and not revision.to_dict()["rules"]


# ---------------------------------------------------------------- pilots are runs


def test_a_queued_pilot_run_resumes_reports_and_registers_its_files(finished, capitals, tmp_path, monkeypatch):
    import shutil

    from executor.runs import child
    from executor.runs.store import RunStore

    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    out, report = finished
    store = RunStore()
    plan = capitals_plan(**{"data.path": str(capitals)})
    run_id = store.submit(plan.to_yaml(), kind="pilot", budget_seconds=900)
    run = store.get(run_id)
    assert (run["kind"], run["budget_seconds"], run["gpus"]) == ("pilot", 900, 1)
    run_dir = Path(run["run_dir"])
    # A retry after a crash: the stages measured so far are in the run directory; nothing is measured again.
    shutil.copytree(out, run_dir, dirs_exist_ok=True)
    for name in ("pilot.json", "pilot.md", "pilot.png"):
        (run_dir / name).unlink()
    monkeypatch.setattr(child, "die_with_parent", lambda *a: None)  # pytest is no run process
    monkeypatch.setattr("executor.train.runner.train", lambda *a, **k: pytest.fail("trained again"))
    assert child.main(run_id, str(store.path)) == 0
    events = store.events(run_id)
    assert any(e["kind"] == "stage" and e["data"]["stage"] == "pilot" for e in events)
    outcome = [e["data"] for e in events if e["kind"] == "pilot"][-1]
    assert outcome["verdict"] == report["verdict"] and outcome["n"] == 20
    assert outcome["systems"]["tuned"] == report["systems"]["tuned"]["accuracy"]["value"]
    assert set(store.artifacts(run_id)) == {"pilot.json", "pilot.md", "pilot.png"}


def test_runs_submit_queues_a_pilot_with_its_budget(capitals, tmp_path, monkeypatch):
    from assistant.cli import app
    from executor.runs.store import RunStore

    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(capitals_plan().to_yaml())
    result = CliRunner().invoke(app, ["runs", "submit", str(plan_file), "--data", str(capitals), "--pilot",
                                      "--budget-minutes", "2"])
    assert result.exit_code == 0, result.output
    run = RunStore().get(result.stdout.strip().splitlines()[-1])
    assert (run["kind"], run["budget_seconds"]) == ("pilot", 120)
    shown = json.loads(CliRunner().invoke(app, ["runs", "show", run["id"], "--json"]).stdout)
    assert shown["kind"] == "pilot" and shown["pilot"] is None  # queued: no outcome yet
    refused = CliRunner().invoke(app, ["runs", "submit", str(plan_file), "--budget-minutes", "2"])
    assert refused.exit_code == 2 and "--pilot" in refused.output


def test_recover_rebuilds_a_finished_pilot_run(finished, tmp_path, monkeypatch):
    import shutil

    from executor.runs.recover import recover
    from executor.runs.store import RunStore

    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    out, report = finished
    store = RunStore()
    run_id = store.submit(capitals_plan().to_yaml(), kind="pilot", budget_seconds=600)
    shutil.copytree(out, Path(store.get(run_id)["run_dir"]), dirs_exist_ok=True)
    store.path.write_bytes(b"not a database" * 100)
    assert recover().runs == {run_id: "succeeded"}
    fresh = RunStore()
    assert (fresh.get(run_id)["kind"], fresh.get(run_id)["budget_seconds"]) == ("pilot", 600)
    assert [e["data"]["verdict"] for e in fresh.events(run_id) if e["kind"] == "pilot"] == [report["verdict"]]
    assert set(fresh.artifacts(run_id)) == {"pilot.json", "pilot.md", "pilot.png"}


# ---------------------------------------------------------------- the pilot in the chat


CANNED = {
    "headline_metric": "accuracy", "n": 300, "verdict": "fine_tuning", "spent_seconds": 280.0, "budget_seconds": 300,
    "model": "smollm2-135m-instruct", "proxy": False, "skipped": ["rag: no documents"], "notes": [],
    "reason": "The short tuned run scored 61.0% [55.3%, 66.3%], above few-shot prompting 8.3% [5.3%, 11.7%].",
    "systems": {"zero_shot": {"accuracy": {"value": 0.02, "ci_low": 0.007, "ci_high": 0.037}},
                "few_shot": {"accuracy": {"value": 0.083, "ci_low": 0.053, "ci_high": 0.117}},
                "tuned": {"accuracy": {"value": 0.61, "ci_low": 0.553, "ci_high": 0.663}}},
    "curve": {"fit": {"sizes": [250, 500, 1000], "target": 7963, "predicted": 0.84, "ci_low": 0.79, "ci_high": 0.88,
                      "gain_per_doubling": 0.052}},
}


def test_the_chat_shows_the_pilot_with_the_advice_before_and_after(advisor):
    from assistant.chat.pilot_view import pilot_markdown
    from assistant.pilot_advice import revise

    text = "An assistant for our support team."
    profile, _ = advisor.profile_from_text(text)
    revision = revise(advisor, profile, CANNED, text)
    md = pilot_markdown(CANNED, revision)
    assert md.index("the short tuned run | 61.0%") < md.index("few-shot prompting | 8.3%")  # best first
    assert "Advice changed: prompting / none -> fine_tuning" in md or "Advice stands" in md
    assert "**84.0%** [79.0%, 88.0%]" in md and "7,963 training rows" in md and "5.2 points" in md
    assert "Skipped: rag: no documents." in md


def test_a_question_about_the_pilot_is_answered_from_its_numbers():
    from assistant.chat.pilot_view import answer_about_pilot

    answer = answer_about_pilot("Did the pilot show that more data would help?", CANNED)
    assert "300 test rows" in answer and "**84.0%** [79.0%, 88.0%]" in answer and "Verdict: **fine_tuning**" in answer
    assert "| few-shot prompting | 8.3% | 5.3% – 11.7% |" in answer
    assert answer_about_pilot("why LoRA and not full fine-tuning?", CANNED) is None  # not about the pilot
    assert answer_about_pilot("what did the pilot measure?", None) is None  # no pilot yet


def test_the_chat_queues_a_pilot_and_revises_its_live_card_from_the_outcome(advisor, knowledge, tmp_path, monkeypatch):
    import random

    import yaml

    from assistant.chat import backends, conversation
    from assistant.chat.conversation import Conversation
    from assistant.chat.launch import view_from_store
    from executor.runs.store import RunStore

    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    monkeypatch.setattr(conversation.autostart, "ensure_worker", lambda: None)
    store = RunStore(tmp_path / "runs.sqlite")
    conv = Conversation(advisor, backends.make_backend("offline", knowledge), None, user="alice", store=store,
                        rng=random.Random(3))
    assert conv.pilot()[0].content.startswith("Describe your use case first; the pilot follows")
    conv.describe(ROUTING)
    conv.recommend_now()
    assert conversation.PILOT_ACTION in [b.name for b in conv.card().buttons]  # beside Approve & launch
    orders = tmp_path / "intents.jsonl"
    orders.write_text("".join(json.dumps({"text": f"message {i}", "label": f"intent_{i % 4}"}) + "\n"
                              for i in range(40)))
    conv.upload("intents.jsonl", orders)
    [queued] = conv.handle_text("Run a pilot first")  # the typed command does what the button does
    run = store.get(conv.run_id)
    assert run["kind"] == "pilot" and conv.pilot_id == run["id"] and queued.content.startswith(f"Pilot `{run['id']}`")
    assert yaml.safe_load(run["plan"])["data"]["path"] == conv.data["out_dir"]
    # The worker's part, done here: the pilot's report in its run directory, the run succeeded.
    (Path(run["run_dir"]) / "pilot.json").write_text(json.dumps({**CANNED, "verdict": "prompting", "reason":
                                                                 "Few-shot prompting 81.0% [77%, 85%] is within the "
                                                                 "interval of the short tuned run."}))
    store.finish(run["id"], "succeeded")
    before = conv.recommendation().approach
    shown, card = conv.outcome(view_from_store(store, run["id"]))
    assert before == "fine_tuning" and conv.recommendation().approach == "prompting"
    assert "Advice changed: fine_tuning / lora -> prompting / none." in shown.content and "81.0%" in shown.content
    assert card.card and conv.interview.profile.pilot_verdict.value == "prompting"
    # A question about the pilot is answered from its numbers, and stores no fact.
    [answer] = conv.handle_text("What did the pilot measure?")
    assert "300 test rows" in answer.content and "| few-shot prompting | 8.3% | 5.3% – 11.7% |" in answer.content
    assert conv.interview.profile.pilot_verdict.value == "prompting"


def test_an_undertrained_short_run_is_no_evidence_for_prompting():
    curve = {"predicted": 0.0, "ci_low": 0.0, "ci_high": 0.0, "target": 7963}
    zero = {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    undertrained = verdict({"few_shot": est(0.08), "tuned": zero}, curve, losses=(4.7, 3.9))
    assert undertrained["verdict"] == "inconclusive" and "from 4.70 to 3.90" in undertrained["reason"]
    learned = verdict({"few_shot": est(0.72), "tuned": est(0.70)}, {**curve, "ci_high": 0.74}, losses=(4.7, 0.4))
    assert learned["verdict"] == "prompting"


def test_a_plan_with_retrieval_is_piloted_with_rag_too(capitals, tmp_path, tunewise_home):
    ticks = [0.0]

    def clock():  # 10 s a reading: the three prompting systems fit, no tuned run does
        ticks[0] += 10.0
        return ticks[0]

    plan = capitals_plan(**{"approach": "rag_fine_tuning", "retrieval": {"top_k": 2}})
    report = pilot_runner.pilot(plan, capitals, tmp_path / "rag", budget_seconds=200, clock=clock,
                                model_factory=tiny_llama)
    assert set(report["systems"]) == {"zero_shot", "few_shot", "rag"}
    for metrics in report["systems"].values():
        assert metrics["accuracy"]["n"] == report["n"]
    assert report["planned_approach"] == "rag_fine_tuning" and report["verdict"] == "inconclusive"


def test_a_running_pilot_shows_its_stages_and_then_its_verdict(tmp_path):
    from assistant.chat.launch import view_from_store
    from executor.runs.store import RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.submit(capitals_plan().to_yaml(), runs_root=tmp_path / "runs", kind="pilot")
    assert store.claim("worker-1", orphan_after=60)["id"] == run_id  # running now
    report_to = store.reporter(run_id)
    report_to.stage("pilot")
    for text in ("pilot on smollm2-135m-instruct (cpu), 900 s budget", "measuring zero_shot on 120 test rows",
                 "tuning lora on 64 train rows (24 steps)"):
        report_to.message(text)
    shown = view_from_store(store, run_id).markdown()
    assert shown.startswith("**running**") and "Pilot:\n- pilot on smollm2" in shown
    assert shown.endswith("- tuning lora on 64 train rows (24 steps)")
    report_to.pilot({**CANNED, "n": 300})
    store.finish(run_id, "succeeded")
    done = view_from_store(store, run_id).markdown()
    assert "Verdict: **fine_tuning**. The short tuned run scored 61.0%" in done


def test_a_plan_that_trains_nothing_offers_a_pilot_but_no_approve(advisor, knowledge, tmp_path, monkeypatch):
    import random

    from assistant.chat import backends, conversation
    from assistant.chat.conversation import Conversation
    from executor.runs.store import RunStore

    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))  # alice's uploads go here
    conv = Conversation(advisor, backends.make_backend("offline", knowledge), None, user="alice",
                        store=RunStore(tmp_path / "runs.sqlite"), rng=random.Random(3))
    conv.describe("We have no data yet; a prompt should draft polite replies to customer e-mails.")
    conv.recommend_now()
    assert conv.recommendation().plan.training is None
    names = [b.name for b in conv.card().buttons]
    assert conversation.PILOT_ACTION in names and conversation.LAUNCH_ACTION not in names
    replies = tmp_path / "replies.jsonl"
    replies.write_text("".join(json.dumps({"instruction": f"Reply to e-mail {i}", "output": f"Dear customer {i}, "
                                           "thank you."}) + "\n" for i in range(40)))
    conv.upload("replies.jsonl", replies)
    monkeypatch.setattr(conversation.autostart, "ensure_worker", lambda: None)
    [queued] = conv.pilot()
    assert queued.content.startswith("Pilot `") and conv.store.get(conv.run_id)["kind"] == "pilot"
    assert conv.launch()[0].content.startswith("Not launched: technique 'none' trains nothing here")
