"""What the pilot's measurements say about the approach: the verdict the advisor takes as a fact.

Only differences the intervals resolve count: a pilot measures on a sample, and a point estimate a few points
apart is noise. The short tuned run is also judged by its learning curve, since a pilot trains for minutes
and its adapter is undertrained by design.
"""

from __future__ import annotations

from typing import Any

PROMPTING_SYSTEMS = ("zero_shot", "few_shot")
NAMES = {"zero_shot": "zero-shot prompting", "few_shot": "few-shot prompting", "rag": "retrieval (RAG)",
         "tuned": "the short tuned run", "base": "the untuned model"}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _est(e: dict[str, Any]) -> str:
    return f"{_pct(e['value'])} [{_pct(e['ci_low'])}, {_pct(e['ci_high'])}]"


# A short run whose training loss fell by less than this fraction has not learned the task yet: its score says
# nothing against prompting (on a CPU, 24 steps of the plan's LoRA on 64 Banking77 rows scored 0%, while the full
# run reaches 52-86%).
MIN_LOSS_DROP = 0.5


def verdict(systems: dict[str, dict[str, Any]], curve: dict[str, Any] | None,
            losses: tuple[float | None, float | None] = (None, None)) -> dict[str, str]:
    """`systems`: name -> the headline metric's {value, ci_low, ci_high}; `curve`: CurveFit.to_dict() or None;
    `losses`: the largest short run's first and final training loss.
    Returns {"verdict": prompting | rag | fine_tuning | inconclusive, "reason": a sentence with the numbers}."""
    prompts = [(name, systems[name]) for name in PROMPTING_SYSTEMS if systems.get(name)]
    tuned, rag = systems.get("tuned"), systems.get("rag")
    if not prompts:
        return {"verdict": "inconclusive", "reason": "No prompting baseline was measured, so there is nothing to "
                                                    "compare the other systems with."}
    if all((e.get("ci_high") or 0.0) <= 0.0 for e in systems.values()):
        return {"verdict": "inconclusive", "reason": "No system scored above zero on the sample, so the pilot "
                                                    "cannot rank them; check the data and the task first."}
    best_name, best = max(prompts, key=lambda p: p[1]["value"])
    best_text = f"{NAMES[best_name]} {_est(best)}"
    if rag and rag["ci_low"] > max(best["value"], tuned["value"] if tuned else 0.0):
        return {"verdict": "rag", "reason": f"Retrieval scored {_est(rag)}, above {best_text}"
                + (f" and the short tuned run {_est(tuned)}" if tuned else "") + ": the answers are in the data."}
    if tuned is None:
        return {"verdict": "inconclusive", "reason": f"Only the prompting baselines were measured ({best_text}); "
                                                    "no tuned run finished within the budget."}
    if tuned["ci_low"] > best["ci_high"]:
        return {"verdict": "fine_tuning", "reason": f"The short tuned run scored {_est(tuned)}, above {best_text} "
                                                   "beyond both intervals: tuning is confirmed on your data."}
    if curve and curve["ci_low"] > best["ci_high"]:
        return {"verdict": "fine_tuning", "reason": (
            f"The short tuned run ({_est(tuned)}) is not clearly above {best_text} yet, but its learning curve "
            f"predicts {_pct(curve['predicted'])} [{_pct(curve['ci_low'])}, {_pct(curve['ci_high'])}] with all "
            f"{curve['target']:,} training examples: tuning is expected to win.")}
    first, final = losses
    if first and final is not None and final > (1 - MIN_LOSS_DROP) * first:
        return {"verdict": "inconclusive", "reason": (
            f"The short tuned run ({_est(tuned)}) has not learned the task yet: its training loss went from "
            f"{first:.2f} to {final:.2f} only, so its score says nothing against {best_text}; a longer pilot "
            "(a larger budget, or a GPU) would.")}
    if best["value"] >= tuned["ci_low"] and (curve is None or curve["ci_high"] <= best["ci_high"]):
        return {"verdict": "prompting", "reason": (
            f"{best_text[0].upper()}{best_text[1:]} is within the interval of the short tuned run ({_est(tuned)})"
            + (f", and the learning curve predicts at most {_pct(curve['ci_high'])} with all the data" if curve
               else "") + ": prompting is enough here.")}
    predicted = f" ({_pct(curve['ci_low'])}–{_pct(curve['ci_high'])} with all the data)" if curve else ""
    return {"verdict": "inconclusive", "reason": (
        f"The short tuned run ({_est(tuned)}) and {best_text} overlap, and the learning curve{predicted} does not "
        "separate them: a larger sample or budget would.")}
