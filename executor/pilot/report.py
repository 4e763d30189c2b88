"""The pilot's report in its folder: pilot.json (everything measured), pilot.md (for people), pilot.png (the
systems with their intervals, and the learning curve with its prediction).

Lazy imports: matplotlib is imported inside `write_chart`, so importing this module costs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from executor.pilot.evidence import percent

NAMES = {"base": "untuned model", "zero_shot": "zero-shot prompting", "few_shot": "few-shot prompting",
         "rag": "retrieval (RAG)", "tuned": "short tuned run"}


def _pct(x: float | None) -> str:
    return percent(x, missing="–")


def system_rows(report: dict[str, Any], names: dict[str, str] = NAMES, best_first: bool = False,
                missing: str = "–") -> list[str]:
    """The measured systems as Markdown table rows `| system | value | low – high |` (pilot.md, the chat)."""
    metric = report["headline_metric"]
    items = list(report["systems"].items())
    if best_first:
        items.sort(key=lambda kv: -((kv[1].get(metric) or {}).get("value") or 0.0))
    rows = []
    for name, metrics in items:
        m = metrics.get(metric) or {}
        low, high = percent(m.get("ci_low"), missing), percent(m.get("ci_high"), missing)
        rows.append(f"| {names.get(name, name)} | {percent(m.get('value'), missing)} | {low} – {high} |")
    return rows


def write_chart(path: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = report["headline_metric"]
    fit = (report.get("curve") or {}).get("fit")
    points = (report.get("curve") or {}).get("points") or []
    fig, axes = plt.subplots(1, 2 if points else 1, figsize=(11 if points else 6, 4), squeeze=False)
    ax = axes[0][0]
    names, values, low, high = [], [], [], []
    for name, metrics in report["systems"].items():
        m = metrics.get(metric)
        if isinstance(m, dict) and m.get("value") is not None:
            names.append(NAMES.get(name, name))
            values.append(m["value"])
            low.append(m["value"] - m["ci_low"])
            high.append(m["ci_high"] - m["value"])
    ax.bar(names, values, yerr=[low, high], capsize=6,
           color=["#2a7" if n == NAMES["tuned"] else "#888" for n in names])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} on {report['n']} test rows (95% CI)")
    ax.tick_params(axis="x", labelrotation=20)
    if points:
        ax = axes[0][1]
        sizes = [p["size"] for p in points]
        ax.errorbar(sizes, [p[metric]["value"] for p in points],
                    yerr=[[p[metric]["value"] - p[metric]["ci_low"] for p in points],
                          [p[metric]["ci_high"] - p[metric]["value"] for p in points]],
                    fmt="o", capsize=5, color="#2a7", label="short tuned runs")
        if fit:
            ax.errorbar([fit["target"]], [fit["predicted"]],
                        yerr=[[fit["predicted"] - fit["ci_low"]], [fit["ci_high"] - fit["predicted"]]],
                        fmt="s", capsize=5, color="#27a", label="predicted, all train rows")
            ax.plot([max(sizes), fit["target"]], [fit["scores"][-1], fit["predicted"]], "--", color="#27a")
        ax.set_xscale("log")
        ax.set_xlabel("train rows")
        ax.set_ylabel(metric)
        ax.set_title("learning curve")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    metric = report["headline_metric"]
    lines = [
        f"# Pilot: {report['task']} on your data",
        "",
        f"**Verdict: {report['verdict']}.** {report['reason']}",
        "",
        f"Model: {report['model']} on {report['device']}; the plan: {report['planned_approach']} / "
        f"{report['planned_technique']} on {report['planned_model']}. Budget {report['budget_seconds']:.0f} s, "
        f"used {report['spent_seconds']:.0f} s.",
        "",
        f"| system | {metric} | 95% CI |",
        "|---|---|---|",
    ]
    lines += system_rows(report)
    points = (report.get("curve") or {}).get("points") or []
    if points:
        lines += ["", "## Learning curve", "", f"| train rows | steps | training s | {metric} |", "|---|---|---|---|"]
        lines += [f"| {p['size']:,} | {p['steps']} | {p['train_seconds']:.0f} | {_pct(p[metric]['value'])} "
                  f"[{_pct(p[metric]['ci_low'])}, {_pct(p[metric]['ci_high'])}] |" for p in points]
    fit = (report.get("curve") or {}).get("fit")
    if fit:
        lines += ["", f"With all {fit['target']:,} train rows the fitted curve predicts **{_pct(fit['predicted'])}** "
                      f"[{_pct(fit['ci_low'])}, {_pct(fit['ci_high'])}]; doubling the data at the largest size "
                      f"measured adds about {100 * fit['gain_per_doubling']:.1f} points. The interval covers the "
                      f"test sample's noise; the prediction extrapolates {fit['extrapolation']:.0f}x beyond the "
                      "largest pilot size, so it is an estimate, not a promise."]
    if report["skipped"]:
        lines += ["", "## Skipped", ""] + [f"- {s}" for s in report["skipped"]]
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    lines += ["", "![pilot](pilot.png)", ""]
    return "\n".join(lines)


def write_pilot_reports(out_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    out_dir = Path(out_dir)
    write_chart(out_dir / "pilot.png", report)
    report = {**report, "chart": "pilot.png"}
    (out_dir / "pilot.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out_dir / "pilot.md").write_text(markdown(report), encoding="utf-8")
    return report
