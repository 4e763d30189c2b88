"""A finished pilot in the chat: what was measured, the advice before and after, and questions about the pilot
answered from its own numbers (pilot.json in the run directory).

    pilot.json -> the systems with their intervals, the learning curve's prediction, what was skipped
               -> the revision (assistant/pilot_advice.py): the decision before and after, and the reason
    "did the pilot ..." / "what did the pilot show" / "how sure is the pilot" -> the same numbers, never prose
    written in advance
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from executor.pilot.evidence import SYSTEM_NAMES, percent
from executor.pilot.report import system_rows

ABOUT_THE_PILOT = re.compile(r"\bpilot\b|\blearning curve\b|\bmore data\b|\bmeasured\b|\bshort run\b", re.I)


def load_pilot(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "pilot.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def system_lines(report: dict[str, Any]) -> list[str]:
    """The systems as table rows, best first, named as in sentences."""
    return system_rows(report, SYSTEM_NAMES, best_first=True, missing="n/a")


def curve_sentence(report: dict[str, Any]) -> str | None:
    fit = (report.get("curve") or {}).get("fit")
    if not fit:
        return None
    return (f"With all {fit['target']:,} training rows the learning curve predicts **{percent(fit['predicted'])}** "
            f"[{percent(fit['ci_low'])}, {percent(fit['ci_high'])}]; doubling the data adds about "
            f"{100 * fit['gain_per_doubling']:.1f} points (fitted on {len(fit['sizes'])} sizes up to "
            f"{max(fit['sizes']):,} rows: an estimate, not a promise).")


def pilot_markdown(report: dict[str, Any], revision) -> str:
    """The pilot's outcome for the chat: the advice before and after, the measured systems, the curve."""
    metric = report["headline_metric"]
    model = Path(report["model"]).name if "/" in report["model"] else report["model"]  # a local folder: its name
    parts = [f"**Pilot finished** ({report['n']} test rows, {report['spent_seconds']:.0f} s of a "
             f"{report['budget_seconds']:.0f} s budget, on {model}).",
             revision.summary(),
             "\n".join([f"| system | {metric} | 95% CI |", "|---|---|---|", *system_lines(report)])]
    if sentence := curve_sentence(report):
        parts.append(sentence)
    if report.get("skipped"):
        parts.append("Skipped: " + "; ".join(report["skipped"]) + ".")
    parts += [f"> {note}" for note in report.get("notes") or []]
    return "\n\n".join(parts)


def answer_about_pilot(question: str, report: dict[str, Any] | None) -> str | None:
    """A question about the pilot answered from its numbers; None when the question is not about it (or there
    was no pilot), so the other answerers take it."""
    if report is None or not ABOUT_THE_PILOT.search(question or ""):
        return None
    metric = report["headline_metric"]
    best = max(report["systems"].items(), key=lambda kv: (kv[1].get(metric) or {}).get("value") or 0.0)
    lines = [f"The pilot measured {metric} on {report['n']} test rows of your data (95% intervals):",
             "\n".join([f"| system | {metric} | 95% CI |", "|---|---|---|", *system_lines(report)]),
             f"Best: {SYSTEM_NAMES.get(best[0], best[0])}. Verdict: **{report['verdict']}**. {report['reason']}"]
    if re.search(r"more data|learning curve|how much", question, re.I):
        lines.append(curve_sentence(report) or "No learning curve: fewer than two tuned sizes finished within the "
                                               "budget.")
    if report.get("proxy"):
        lines.append(next((n for n in report.get("notes") or [] if n.startswith("measured on a proxy")), ""))
    return "\n\n".join(line for line in lines if line)
