"""The evaluation report in the run directory: report.json, report.md, eval_comparison.png, eval_examples.jsonl.

Each compared system's metrics are {"value", "ci_low", "ci_high", "n"} (bootstrap 95% CI). The Markdown
shows the comparison table and example outputs (input, reference, base, tuned), the worst regressions first.

Lazy imports: matplotlib is imported inside the functions that use it, so importing this module (from the CLI,
the chat or a run process) stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXAMPLES_SHOWN = 10


def _fmt(metric: Any) -> str:
    if not isinstance(metric, dict) or metric.get("value") is None:
        return "—" if not isinstance(metric, int | float) else str(metric)
    return f"{metric['value']:.3f} [{metric['ci_low']:.3f}, {metric['ci_high']:.3f}]"


def _cell(text: str, width: int = 120) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def comparison_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    metrics: list[str] = []
    for values in report["systems"].values():
        for name in values:
            if name not in metrics:
                metrics.append(name)
    rows = [[system, *(_fmt(values.get(m)) for m in metrics)] for system, values in report["systems"].items()]
    return metrics, rows


def write_chart(path: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = report["headline_metric"]
    names, values, low, high = [], [], [], []
    for system, metrics in report["systems"].items():
        m = metrics.get(metric)
        if isinstance(m, dict) and m.get("value") is not None:
            names.append(system)
            values.append(m["value"])
            low.append(m["value"] - m["ci_low"])
            high.append(m["ci_high"] - m["value"])
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(names)), 4))
    ax.bar(names, values, yerr=[low, high], capsize=6, color=["#888" if n != "tuned" else "#2a7" for n in names])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} on {report['n']} test examples (95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(run_dir: Path, report: dict[str, Any], examples: list[dict[str, Any]]) -> dict[str, Any]:
    with (run_dir / "eval_examples.jsonl").open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(example, ensure_ascii=False) + "\n")
    regressions = sorted((e for e in examples if e["tuned_score"] < e["base_score"]),
                         key=lambda e: e["tuned_score"] - e["base_score"])
    report["regressions"] = len(regressions)
    report["improvements"] = sum(e["tuned_score"] > e["base_score"] for e in examples)
    report["worst_regressions"] = [e["index"] for e in regressions[:EXAMPLES_SHOWN]]
    write_chart(run_dir / "eval_comparison.png", report)
    report["chart"] = "eval_comparison.png"
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    metrics, rows = comparison_rows(report)
    table = "\n".join(["| system | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics),
                       *["| " + " | ".join(row) + " |" for row in rows]])
    shown = regressions[:EXAMPLES_SHOWN] or examples[:EXAMPLES_SHOWN]
    samples = "\n".join(["| # | input | reference | base | tuned |", "|---|---|---|---|---|",
                         *[f"| {e['index']} | {_cell(e['input'])} | {_cell(e['reference'])} | {_cell(e['base'])} | "
                           f"{_cell(e['tuned'])} |" for e in shown]])
    blocks = [
        f"# Evaluation: {report['technique']} on {report['base_model']}",
        f"Test file `{report['test_file']}`, {report['n']} examples, task **{report['task']}**, greedy decoding "
        f"(max {report['decoding']['max_new_tokens']} new tokens). Values with bootstrap 95% confidence intervals.",
        table,
        f"Tuned better than base on {report['improvements']} examples, worse on {report['regressions']}.",
        *(f"Note: {note}" for note in report.get("notes") or []),
        "![comparison](eval_comparison.png)",
        "## Worst regressions" if regressions else "## Examples",
        samples,
    ]
    (run_dir / "report.md").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return report
