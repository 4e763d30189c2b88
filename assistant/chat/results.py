"""A finished run in the chat: its evaluation report, and follow-up questions answered from its own files.

    run dir: metrics.jsonl (training log), report.json (evaluation), eval_examples.jsonl (per-example outputs)
      -> report table + chart
      -> questions: "why did eval loss go up after epoch 2?"  -> the validation-loss trend in metrics.jsonl
                    "is it better than few-shot prompting?"   -> the two systems' metric and CIs in report.json
                    "which examples got worse?"              -> the worst regressions in eval_examples.jsonl
                    "how did training go?"                    -> the loss trajectory
                    anything else                             -> the guidance docs (retrieval)
      each answer cites the lines of the run's files it rests on, and guidance passages where they explain it.

Answers are computed from the numbers, never written in advance: a different run gives a different answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.chat.cards import CitationElement
from executor.evaluate.report import comparison_rows

SYSTEM_NAMES = {
    "base": "the untuned base model", "tuned": "the tuned model", "zero_shot": "zero-shot prompting",
    "few_shot": "few-shot prompting", "rag": "RAG", "rag_tuned": "the tuned model with retrieval",
}
_SYSTEM_WORDS = (
    ("few_shot", r"few[\s-]?shot|in[\s-]context|examples in the prompt"),
    ("zero_shot", r"zero[\s-]?shot|just prompting|plain prompting|prompting alone|prompt engineering"),
    ("rag_tuned", r"rag\s*\+\s*lora|tuned .*retrieval"),
    ("rag", r"\brag\b|retrieval"),
    ("base", r"\bbase\b|untuned|original model|before tuning|without tuning"),
)
REGRESSIONS_SHOWN = 3

Search = Callable[[str, int], list]  # (query, k) -> retrieval Passages (assistant.retrieval.KnowledgeIndex.search)


@dataclass
class Answer:
    text: str
    citations: list[CitationElement] = field(default_factory=list)


@dataclass
class RunResults:
    run_dir: Path
    metrics: list[dict[str, Any]]
    report: dict[str, Any] | None
    examples: list[dict[str, Any]]

    @classmethod
    def load(cls, run_dir: str | Path) -> RunResults:
        run_dir = Path(run_dir)
        metrics = _jsonl(run_dir / "metrics.jsonl")
        report_path = run_dir / "report.json"
        report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else None
        return cls(run_dir, metrics, report, _jsonl(run_dir / "eval_examples.jsonl"))

    @property
    def chart(self) -> Path | None:
        path = self.run_dir / "eval_comparison.png"
        return path if path.exists() else None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _metric(report: dict[str, Any], system: str, name: str | None = None) -> dict[str, Any] | None:
    value = report["systems"].get(system, {}).get(name or report["headline_metric"])
    return value if isinstance(value, dict) and value.get("value") is not None else None


def _fmt(m: dict[str, Any]) -> str:
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def _name(metric: str) -> str:
    return metric.replace("_", " ")


# ---------------------------------------------------------------------- the report in chat


def report_markdown(report: dict[str, Any]) -> str:
    metrics, rows = comparison_rows(report)
    lines = [
        f"### Evaluation: {report['technique']} on {Path(report['base_model']).name}",  # (a local folder: its name)
        f"{report['n']} test examples, task **{report['task']}**, greedy decoding; values with bootstrap 95% "
        f"confidence intervals. Headline metric: **{_name(report['headline_metric'])}**.",
        "",
        "| system | " + " | ".join(_name(m) for m in metrics) + " |",
        "|---|" + "---|" * len(metrics),
        *["| " + " | ".join([SYSTEM_NAMES.get(r[0], r[0]), *r[1:]]) + " |" for r in rows],
        "",
        f"Tuned better than base on {report.get('improvements', 0)} examples, worse on {report.get('regressions', 0)}.",
        *(f"\n*Note:* {note}" for note in report.get("notes") or []),
        "",
        "Ask me about it: “is it better than few-shot prompting?”, “which examples got worse?”, "
        "“why did eval loss go up?”",
    ]
    return "\n".join(lines)


def training_markdown(metrics: list[dict[str, Any]]) -> str:
    losses = [m for m in metrics if m.get("loss") is not None]
    evals = [m for m in metrics if m.get("eval_loss") is not None]
    if not losses:
        return "The run logged no training loss."
    text = (f"Training loss went from {losses[0]['loss']:.4f} (step {losses[0]['step']}) to {losses[-1]['loss']:.4f} "
            f"(step {losses[-1]['step']}).")
    if evals:
        best = min(evals, key=lambda m: m["eval_loss"])
        text += f" Best validation loss {best['eval_loss']:.4f} at step {best['step']}" + (
            f" (epoch {best['epoch']:g})." if best.get("epoch") is not None else ".")
    return text


# ---------------------------------------------------------------------- questions


def _metrics_citation(results: RunResults, records: list[dict[str, Any]]) -> CitationElement:
    lines = "\n".join(json.dumps({k: r.get(k) for k in ("step", "epoch", "loss", "eval_loss") if r.get(k) is not None})
                      for r in records)
    return CitationElement("metrics.jsonl", "training log", f"**{results.run_dir / 'metrics.jsonl'}** (the lines "
                                                            f"this answer uses)\n\n```json\n{lines}\n```")


def _guidance(search: Search | None, query: str, k: int = 1) -> list[CitationElement]:
    if search is None:
        return []
    return [CitationElement(p.citation_id, p.title, f"**{p.title} — {p.heading}**\n\n{p.text.strip()}")
            for p in search(query, k)]


def explain_eval_loss(results: RunResults, search: Search | None = None) -> Answer:
    evals = [m for m in results.metrics if m.get("eval_loss") is not None]
    losses = [m for m in results.metrics if m.get("loss") is not None]
    if len(evals) < 2:
        return Answer(f"This run logged {len(evals)} validation loss value{'s' if len(evals) != 1 else ''}, so there "
                      "is no validation trend to explain; enable a validation split (the data preparation makes one) "
                      "and a longer run.")
    best = min(evals, key=lambda m: m["eval_loss"])
    last = evals[-1]

    def at(m):
        return f"step {m['step']}" + (f", epoch {m['epoch']:g}" if m.get("epoch") is not None else "")

    def train_loss_near(step: int) -> dict[str, Any] | None:
        before = [m for m in losses if m["step"] <= step]
        return before[-1] if before else None

    cited = [evals[0], best, last]
    if last is best or last["eval_loss"] <= best["eval_loss"]:
        text = (f"Validation loss did not go up in this run: it fell from {evals[0]['eval_loss']:.4f} ({at(evals[0])}) "
                f"to {last['eval_loss']:.4f} ({at(last)}), its lowest.")
        return Answer(text, [_metrics_citation(results, cited)])
    rise = last["eval_loss"] - best["eval_loss"]
    text = (f"Validation loss was lowest at {at(best)}: {best['eval_loss']:.4f}. After that it rose to "
            f"{last['eval_loss']:.4f} at {at(last)} (+{rise:.4f}, {100 * rise / best['eval_loss']:.0f}%).")
    t_best, t_last = train_loss_near(best["step"]), train_loss_near(last["step"])
    query = "overfitting validation loss rising while training loss falls"
    if t_best and t_last and t_last is not t_best:
        cited += [t_best, t_last]
        if t_last["loss"] < t_best["loss"]:
            text += (f" Over the same steps training loss kept falling ({t_best['loss']:.4f} → {t_last['loss']:.4f}): "
                     "the model is fitting the training split more closely while doing worse on rows it has not "
                     "seen, which is overfitting. The checkpoint with the best validation loss is the one kept; fewer "
                     "epochs, more data, a lower learning rate or a smaller LoRA rank are the usual remedies.")
        else:
            text += (f" Training loss did not fall either ({t_best['loss']:.4f} → {t_last['loss']:.4f}), so this is "
                     "not overfitting: training itself became unstable, usually a learning rate that is too high.")
            query = "learning rate too high unstable training loss"
    cited = sorted({id(m): m for m in cited}.values(), key=lambda m: (m["step"], m.get("eval_loss") is None))
    return Answer(text, [_metrics_citation(results, cited), *_guidance(search, query)])


def _systems_in(question: str) -> list[str]:
    q = question.lower()
    return [name for name, pattern in _SYSTEM_WORDS if re.search(pattern, q)]


def compare_systems(results: RunResults, question: str, search: Search | None = None) -> Answer:
    report = results.report
    if report is None:
        return Answer("This run has no evaluation report yet, so I cannot compare it with the baselines.")
    metric = report["headline_metric"]
    tuned = _metric(report, "tuned")
    wanted = [s for s in _systems_in(question) if s != "tuned"] or [s for s in report["systems"] if s != "tuned"]
    lines, missing = [], []
    for system in wanted:
        other = _metric(report, system)
        if other is None or tuned is None:
            missing.append(SYSTEM_NAMES.get(system, system))
            continue
        if tuned["ci_low"] > other["ci_high"]:
            verdict = "yes: the tuned model is better, and the confidence intervals do not overlap"
        elif tuned["ci_high"] < other["ci_low"]:
            verdict = f"no: {SYSTEM_NAMES.get(system, system)} is better, and the intervals do not overlap"
        elif tuned["value"] > other["value"]:
            verdict = "slightly higher, but the intervals overlap: not a clear win on this many examples"
        elif tuned["value"] < other["value"]:
            verdict = "slightly lower, but the intervals overlap: not a clear loss on this many examples"
        else:
            verdict = "the same score"
        lines.append(f"- Against {SYSTEM_NAMES.get(system, system)}: tuned {_fmt(tuned)} vs {_fmt(other)} "
                     f"({_name(metric)}) — {verdict}.")
    if not lines:
        return Answer(f"The report has no {_name(metric)} for {', '.join(missing) or 'that system'}; it compared "
                      f"{', '.join(SYSTEM_NAMES.get(s, s) for s in report['systems'])}.")
    text = f"On the {report['n']} test examples ({_name(metric)}, bootstrap 95% confidence intervals):\n"
    text += "\n".join(lines)
    if missing:
        text += f"\n\nNot evaluated in this run: {', '.join(missing)}."
    shown = {s: report["systems"][s].get(metric) for s in ["tuned", *wanted] if s in report["systems"]}
    cite = CitationElement("report.json", "evaluation report",
                           f"**{results.run_dir / 'report.json'}**, `systems.*.{metric}`\n\n```json\n"
                           f"{json.dumps(shown, indent=1)}\n```")
    return Answer(text, [cite, *_guidance(search, "compare the tuned model against prompting baselines on a test set")])


def worst_examples(results: RunResults, search: Search | None = None) -> Answer:
    report = results.report
    if report is None or not results.examples:
        return Answer("This run has no per-example evaluation yet (eval_examples.jsonl), so I cannot tell which "
                      "examples got worse.")
    by_index = {e["index"]: e for e in results.examples}
    worse = report.get("worst_regressions") or []
    if not worse:
        return Answer(f"None: on all {report['n']} test examples the tuned model scored at least as well as the base "
                      f"model ({report.get('improvements', 0)} better, the rest equal).")
    lines = [f"The tuned model scored lower than the base model on {report['regressions']} of {report['n']} test "
             f"examples (higher on {report['improvements']}). The worst:"]
    quoted = []
    for index in worse[:REGRESSIONS_SHOWN]:
        e = by_index[index]
        lines.append(f"- #{index}: “{_short(e['input'])}” — expected “{_short(e['reference'])}”; base said "
                     f"“{_short(e['base'])}” (score {e['base_score']:g}), tuned said “{_short(e['tuned'])}” "
                     f"(score {e['tuned_score']:g}).")
        quoted.append(e)
    cite = CitationElement("eval_examples.jsonl", "per-example outputs",
                           f"**{results.run_dir / 'eval_examples.jsonl'}**\n\n```json\n"
                           + "\n".join(json.dumps({k: e[k] for k in ("index", "input", "reference", "base", "tuned",
                                                                      "base_score", "tuned_score")}, ensure_ascii=False)
                                       for e in quoted) + "\n```")
    return Answer("\n".join(lines), [cite])


def _short(text: str, width: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def answer_question(question: str, results: RunResults | None, search: Search | None = None) -> Answer:
    q = question.lower()
    if results is not None:
        if re.search(r"eval(uation)?[\s_]*loss|validation[\s_]*loss|overfit", q):
            return explain_eval_loss(results, search)
        if re.search(r"worse|regress|which examples|what went wrong|fail", q):
            return worst_examples(results, search)
        if re.search(r"better|compare|\bvs\.?\b|versus|beat|outperform|worth it", q):
            return compare_systems(results, question, search)
        if re.search(r"\bloss\b|how did (the )?(training|run) go|training go", q):
            return Answer(training_markdown(results.metrics),
                          [_metrics_citation(results, [m for m in results.metrics if m.get("loss") is not None][-3:])])
    passages = search(question, 2) if search else []
    if not passages:
        return Answer("I have no run results or guidance that answer that.")
    text = "From the guidance:\n" + "\n".join(f"- {_short(p.text, 300)} — {p.citation_id}" for p in passages)
    return Answer(text, _guidance(search, question, 2))


def is_results_question(message: str) -> bool:
    """Does a message ask about a run's results (rather than describe a use case)?"""
    q = message.lower().strip()
    return bool(re.search(r"\?$|^(why|which|what|how|is|did|does|was|were|can|should)\b", q)) and bool(
        re.search(r"loss|better|worse|regress|compare|\bvs\b|versus|examples?|few[\s-]?shot|zero[\s-]?shot|"
                  r"baseline|accuracy|score|metric|overfit|result|run|tuned|epoch", q))
