"""The learning curve: how the tuned model's score grows with the number of training examples, fitted on the
pilot's few sizes and extrapolated to the whole train split, with an interval.

Why this form: the error of a model trained on n examples falls as a power law, err(n) = c * n^-alpha, over a
wide range of tasks (Hestness et al. 2017, "Deep Learning Scaling is Predictable, Empirically"; Kaplan et al.
2020). A straight line in log-log space is fitted to (n, 1 - score); it saturates at a perfect score instead of
growing without bound like a line in log(n). The interval comes from resampling the test rows (the same rows
score every size, so the resamples are paired across sizes) and refitting: it covers the noise of the pilot's
test sample, not the error of extrapolating far beyond the sizes measured, which the report states separately.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FLOOR = 1e-3  # an error of exactly 0 has no logarithm; 0.1% is below anything a pilot's sample can resolve
RESAMPLES = 1000


@dataclass(frozen=True)
class CurveFit:
    sizes: list[int]
    scores: list[float]
    target: int              # the size the prediction is for (the full train split)
    predicted: float
    ci_low: float
    ci_high: float
    alpha: float             # the fitted exponent: > 0 means the error falls with more data
    gain_per_doubling: float  # points of score gained by doubling the data, at the largest size measured
    extrapolation: float     # target / largest size measured

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _fit(sizes: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(log c, alpha) of err = c * n^-alpha by least squares in log-log space."""
    x = np.log(sizes)
    y = np.log(np.clip(1.0 - scores, FLOOR, 1.0))
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(-slope)


def _predict(log_c: float, alpha: float, size: float, best_seen: float) -> float:
    if alpha <= 0:
        # More data did not help in the pilot: predict no gain over the best size measured, not a decline.
        return best_seen
    return float(min(1.0, max(0.0, 1.0 - math.exp(log_c) * size ** -alpha)))


def fit_curve(sizes: Sequence[int], per_example: Sequence[Sequence[float]], target: int,
              seed: int = 0) -> CurveFit | None:
    """`per_example[i]`: the per-row scores (in [0, 1]) of the model trained on `sizes[i]` examples, all on the
    same test rows. None with fewer than two sizes: one point is no curve."""
    if len(sizes) < 2 or len(set(sizes)) < 2:
        return None
    matrix = np.asarray(per_example, dtype=float)  # sizes x rows
    n_sizes = np.asarray(sizes, dtype=float)
    means = matrix.mean(axis=1)
    log_c, alpha = _fit(n_sizes, means)
    best = float(means[np.argmax(n_sizes)])
    predicted = _predict(log_c, alpha, target, best)
    rng = np.random.default_rng(seed)
    rows = matrix.shape[1]
    draws = []
    for _ in range(RESAMPLES):
        pick = rng.integers(0, rows, rows)
        resampled = matrix[:, pick].mean(axis=1)
        c, a = _fit(n_sizes, resampled)
        draws.append(_predict(c, a, target, float(resampled[np.argmax(n_sizes)])))
    low, high = np.percentile(draws, [2.5, 97.5])
    largest = float(n_sizes.max())
    gain = _predict(log_c, alpha, 2 * largest, best) - _predict(log_c, alpha, largest, best) if alpha > 0 else 0.0
    return CurveFit(sizes=[int(s) for s in sizes], scores=[float(m) for m in means], target=int(target),
                    predicted=predicted, ci_low=float(min(low, predicted)), ci_high=float(max(high, predicted)),
                    alpha=alpha, gain_per_doubling=float(gain), extrapolation=float(target / largest))
