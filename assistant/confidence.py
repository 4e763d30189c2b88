"""Calibrated confidence: the probability that the recommended approach is the one an expert would pick.

A logistic model over three facts of the decision: the score margin between the chosen approach and the
runner-up, how many decision-relevant facts are known, and how many unknown facts could still change it.
With nothing known at all the confidence is capped low: a default is not a judgment. Its weights are data
(knowledge/calibration.yaml), fitted by `bench/advice_quality.py --fit-calibration` on the development part
of the real-case benchmark only, so the held-out part measures the calibration honestly. Below `ask_below`,
the interview asks before it answers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from assistant.knowledge import FEATURES, Calibration

if TYPE_CHECKING:
    from assistant.rules import Decision

CLIPS = {"margin": 6.0, "known_facts": 10.0, "open_questions": 15.0}
NOTHING_KNOWN_CAP = 0.2
NOT_DECISION_FACTS = ("language", "domain", "mentions_documents")
MAX_QUESTIONS_BEFORE_ANSWER = 3


def decision_features(decision: Decision, known_facts: int, open_questions: int) -> dict[str, float]:
    raw = {
        "margin": max(decision.margin(), 0.0),
        "known_facts": float(known_facts),
        "open_questions": float(open_questions),
    }
    return {k: min(v, CLIPS[k]) for k, v in raw.items()}


def known_decision_facts(profile) -> int:
    return len([f for f in profile.known_fields() if f not in NOT_DECISION_FACTS])


def fit(rows: list[tuple[dict[str, float], bool]], l2: float = 0.05, steps: int = 5000,
        rate: float = 0.1) -> tuple[float, dict[str, float]]:
    """Logistic regression by gradient descent (a few dozen rows, three features: no library needed)."""
    bias, weights = 0.0, dict.fromkeys(FEATURES, 0.0)
    n = len(rows)
    for _ in range(steps):
        grad_b, grad_w = 0.0, dict.fromkeys(FEATURES, 0.0)
        for features, correct in rows:
            z = bias + sum(weights[f] * features[f] for f in FEATURES)
            error = 1.0 / (1.0 + math.exp(-z)) - (1.0 if correct else 0.0)
            grad_b += error / n
            for f in FEATURES:
                grad_w[f] += error * features[f] / n
        bias -= rate * grad_b
        for f in FEATURES:
            weights[f] -= rate * (grad_w[f] + l2 * weights[f])
    return bias, weights


def choose_l2(rows: list[tuple[dict[str, float], bool]], options=(0.01, 0.05, 0.2, 0.5, 1.0),
              folds: int = 5) -> float:
    """The regularization with the lowest cross-validated log-loss on `rows` (a few dozen cases: a model
    fitted without it can be confidently wrong on new ones)."""
    def loss(l2: float) -> float:
        total = 0.0
        for k in range(folds):
            train = [r for i, r in enumerate(rows) if i % folds != k]
            test = [r for i, r in enumerate(rows) if i % folds == k]
            bias, weights = fit(train, l2=l2, steps=2000)
            model = Calibration(bias, weights, 0.5)
            for features, correct in test:
                p = min(max(model.probability(features), 1e-6), 1 - 1e-6)
                total -= math.log(p if correct else 1 - p)
        return total / len(rows)

    return min(options, key=loss)


def write(path: Path, bias: float, weights: dict[str, Any], ask_below: float, fitted_on: str) -> None:
    body = {
        "bias": round(bias, 4),
        "weights": {f: round(weights[f], 4) for f in FEATURES},
        "ask_below": ask_below,
        "fitted_on": fitted_on,
    }
    header = ("# Confidence calibration (assistant/confidence.py): a logistic model of P(approach is right).\n"
              "# Written by `bench/advice_quality.py --fit-calibration` from the development part of\n"
              "# bench/advice_cases.jsonl only; the held-out part is never fitted on.\n")
    path.write_text(header + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
