"""What the pilot's measurements say about the approach: the verdict the advisor takes as a fact.

Only differences the intervals resolve count: a pilot measures on a sample, and a point estimate a few points
apart is noise. The short tuned run is also judged by its learning curve, since a pilot trains for minutes
and its adapter is undertrained by design.
"""

from __future__ import annotations

from typing import Any

PROMPTING_SYSTEMS = ("zero_shot", "few_shot")
# How the pilot's systems are named in sentences (its verdict, the chat); the chart uses shorter labels.
SYSTEM_NAMES = {"zero_shot": "zero-shot prompting", "few_shot": "few-shot prompting", "rag": "retrieval (RAG)",
                "tuned": "the short tuned run", "base": "the untuned model"}


def percent(x: float | None, missing: str = "n/a") -> str:
    """A metric in [0, 1] as the pilot's reports print it: one decimal of a percent."""
    return missing if x is None else f"{100 * x:.1f}%"


def _est(e: dict[str, Any]) -> str:
    return f"{percent(e['value'])} [{percent(e['ci_low'])}, {percent(e['ci_high'])}]"


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
    best_text = f"{SYSTEM_NAMES[best_name]} {_est(best)}"
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
            f"predicts {percent(curve['predicted'])} [{percent(curve['ci_low'])}, {percent(curve['ci_high'])}] "
            f"with all {curve['target']:,} training examples: tuning is expected to win.")}
    first, final = losses
    if first and final is not None and final > (1 - MIN_LOSS_DROP) * first:
        return {"verdict": "inconclusive", "reason": (
            f"The short tuned run ({_est(tuned)}) has not learned the task yet: its training loss went from "
            f"{first:.2f} to {final:.2f} only, so its score says nothing against {best_text}; a longer pilot "
            "(a larger budget, or a GPU) would.")}
    if best["value"] >= tuned["ci_low"] and (curve is None or curve["ci_high"] <= best["ci_high"]):
        return {"verdict": "prompting", "reason": (
            f"{best_text[0].upper()}{best_text[1:]} is within the interval of the short tuned run ({_est(tuned)})"
            + (f", and the learning curve predicts at most {percent(curve['ci_high'])} with all the data" if curve
               else "") + ": prompting is enough here.")}
    predicted = f" ({percent(curve['ci_low'])}–{percent(curve['ci_high'])} with all the data)" if curve else ""
    return {"verdict": "inconclusive", "reason": (
        f"The short tuned run ({_est(tuned)}) and {best_text} overlap, and the learning curve{predicted} does not "
        "separate them: a larger sample or budget would.")}
