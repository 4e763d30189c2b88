"""Task metrics of the evaluation stage: pure functions over decoded model outputs, references and scores.

Per-example scores (exact match, token F1, JSON field F1, a correct label) are averaged with a percentile
bootstrap confidence interval (`bootstrap`); metrics that are not a mean of per-example scores, such as
macro-F1, get theirs by resampling (prediction, reference) pairs (`bootstrap_paired`). No model code here.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import string
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

# ------------------------------------------------------------------------------------------ confidence intervals


@dataclass(frozen=True)
class Estimate:
    """A metric's value over n examples with its percentile-bootstrap confidence interval."""

    value: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "value": _round4(self.value),
            "ci_low": _round4(self.ci_low),
            "ci_high": _round4(self.ci_high),
            "n": self.n,
        }


def _round4(x: float) -> float | None:
    # NaN (no examples) becomes None: reports are written as JSON, which has no NaN.
    return None if math.isnan(x) else round(float(x), 4)


_NO_EXAMPLES = Estimate(math.nan, math.nan, math.nan, 0)

mean = np.mean  # the default statistic of `bootstrap`


# Statistics applied to all resamples at once, one resample per row; any other callable runs row by row.
def _mean_rows(rows: np.ndarray) -> np.ndarray:
    # A mean lies within its row's range; clipping removes the last-bit rounding that would put the mean of
    # seven 0.1s at 0.09999999999999999, below every score.
    return np.clip(rows.mean(axis=1), rows.min(axis=1), rows.max(axis=1))


_ROWWISE: dict[Callable[..., Any], Callable[[np.ndarray], np.ndarray]] = {
    np.mean: _mean_rows,
    statistics.mean: _mean_rows,
    statistics.fmean: _mean_rows,
    np.median: lambda rows: np.median(rows, axis=1),
    statistics.median: lambda rows: np.median(rows, axis=1),
}

# Resamples are drawn in blocks of about this many scores, so 1,000 x 100,000 does not need 800 MB at once.
_BLOCK_ELEMENTS = 2_000_000


def bootstrap(
    scores: Sequence[float],
    *,
    statistic: Callable[[np.ndarray], float] = mean,
    resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Estimate:
    """The statistic of the per-example scores with its (1 - alpha) percentile-bootstrap interval."""
    _check_bootstrap_args(resamples, alpha)
    values = np.asarray(scores, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"bootstrap expects a flat sequence of per-example scores, got shape {values.shape}")
    if values.size == 0:
        return _NO_EXAMPLES
    rowwise = _ROWWISE.get(statistic) or _row_by_row(statistic)
    # The point value goes through the same code as the resamples, so a constant list gives a CI equal to it
    # exactly (a 1-D and a row-wise reduction may round differently in the last bit).
    value = float(rowwise(values[None, :])[0])
    stats = np.concatenate([rowwise(values[rows]) for rows in _resample_indices(values.size, resamples, seed)])
    return _percentile_interval(value, stats, values.size, alpha)


def bootstrap_paired(
    pairs: Sequence[tuple[Any, Any]],
    statistic: Callable[[Sequence[tuple[Any, Any]]], float],
    *,
    resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Estimate:
    """A corpus-level metric (e.g. `macro_f1`) over (prediction, reference) pairs with its bootstrap interval.

    The pairs are resampled together and the statistic recomputed on each resample: cost is resamples x one
    call of the statistic (about 2 s for macro-F1 over 10,000 pairs).
    """
    _check_bootstrap_args(resamples, alpha)
    pairs = list(pairs)
    if not pairs:
        return _NO_EXAMPLES
    value = float(statistic(pairs))
    stats = np.array(
        [
            statistic([pairs[i] for i in row])
            for rows in _resample_indices(len(pairs), resamples, seed)
            for row in rows.tolist()
        ],
        dtype=float,
    )
    return _percentile_interval(value, stats, len(pairs), alpha)


def _check_bootstrap_args(resamples: int, alpha: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha} (0.05 gives a 95% interval)")


def _row_by_row(statistic: Callable[[np.ndarray], float]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda rows: np.array([statistic(row) for row in rows], dtype=float)


def _resample_indices(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """resamples rows of n indices drawn with replacement, in blocks, all from one seeded generator."""
    rng = np.random.default_rng(seed)
    rows_per_block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, resamples, rows_per_block):
        yield rng.integers(0, n, size=(min(rows_per_block, resamples - start), n))


def _percentile_interval(value: float, stats: np.ndarray, n: int, alpha: float) -> Estimate:
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return Estimate(value, float(low), float(high), n)


# -------------------------------------------------------------------------------------- answers as text

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# A number not glued to a word or a decimal point before it ('x2', the '3' of 'v1.2.3'); thousands commas
# only in groups of three, so the list '1,2,3' is three numbers, not 123.
_NUMBER = re.compile(r"(?<![\w.])-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_GSM8K_MARKER = "####"


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lowercase, drop punctuation and articles, collapse whitespace."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


def extract_final_number(text: str) -> str | None:
    """The answer number: the one after GSM8K's '####' marker, else the last number in the text, canonicalized.

    Only the marker's own line is searched, so a model that goes on to invent the next question is
    still read by its first answer.
    """
    marker = text.find(_GSM8K_MARKER)
    if marker != -1:
        line_end = text.find("\n", marker)
        match = _NUMBER.search(text, marker + len(_GSM8K_MARKER), line_end if line_end != -1 else len(text))
        if match:
            return _canonical_number(match.group())
    numbers = _NUMBER.findall(text)
    return _canonical_number(numbers[-1]) if numbers else None


def _canonical_number(raw: str) -> str:
    """'$1,000.00' -> '1000', '3.50' -> '3.5', '-0' -> '0': equal numbers compare equal as strings."""
    number = raw.replace(",", "").replace("$", "")
    sign = "-" if number.startswith("-") else ""
    number = number.lstrip("-")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    number = number.lstrip("0") or "0"
    if number.startswith("."):
        number = "0" + number
    return number if number == "0" else sign + number


def exact_match(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())


def normalized_exact_match(prediction: str, reference: str) -> float:
    """Numeric answers (a GSM8K solution with '####', or a bare number) by value; other answers SQuAD-normalized.

    A number merely mentioned in a text answer ('Apollo 11') does not switch to numeric comparison.
    """
    if _is_numeric_reference(reference):
        return float(extract_final_number(prediction) == extract_final_number(reference))
    return float(normalize_answer(prediction) == normalize_answer(reference))


def _is_numeric_reference(reference: str) -> bool:
    return _GSM8K_MARKER in reference or _NUMBER.fullmatch(reference.strip()) is not None


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 on normalized tokens; two empty answers agree (1.0), one empty answer scores 0."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    overlap = sum((Counter(predicted) & Counter(expected)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


# ----------------------------------------------------------------------------------------- classification

# Quotes and punctuation a model puts around an answer: '"card_arrival".' is the label card_arrival.
_EDGE = string.punctuation + string.whitespace + "\u201c\u201d\u2018\u2019"


def _label_key(text: str) -> str:
    """Case-, underscore/hyphen- and spacing-blind form: 'Top_Up_Failed', 'top-up failed' -> 'top up failed'."""
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


@lru_cache(maxsize=16)
def _label_index(labels: tuple[str, ...]) -> tuple[dict[str, str], re.Pattern[str] | None]:
    """Label by key, and one regex finding any label as a whole phrase (longest first at the same position)."""
    by_key: dict[str, str] = {}
    for label in labels:
        by_key.setdefault(_label_key(label), label)
    keys = sorted((key for key in by_key if key), key=len, reverse=True)
    if not keys:
        return by_key, None
    return by_key, re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, keys)) + r")(?!\w)")


def map_to_label(generated: str, labels: Sequence[str]) -> str | None:
    """The label a generated text names: the whole text, its first line or its first word as a label; else
    the earliest (then longest) label appearing as a whole phrase; else None (an unmapped, wrong answer)."""
    by_key, phrase = _label_index(tuple(labels))
    text = generated.strip()
    if not text or phrase is None:
        return None
    first_line = text.split("\n", 1)[0]
    first_word = text.split(None, 1)[0]
    for candidate in (text, first_line, first_word):
        label = by_key.get(_label_key(candidate.strip(_EDGE)))
        if label is not None:
            return label
    found = phrase.search(_label_key(text))
    return by_key[found.group()] if found else None


def _label_counts(pairs: Iterable[tuple[str | None, str]]) -> tuple[Counter, Counter, Counter]:
    """(correct, predicted, actual) counts per label; a None prediction counts for no label."""
    pairs = list(pairs)
    actual = Counter(reference for _, reference in pairs)
    predicted = Counter(prediction for prediction, _ in pairs if prediction is not None)
    correct = Counter(reference for prediction, reference in pairs if prediction == reference)
    return correct, predicted, actual


def _precision_recall_f1(correct: int, predicted: int, actual: int) -> tuple[float, float, float]:
    # sklearn's zero_division=0: a label never predicted has precision 0, one never present has recall 0.
    precision = correct / predicted if predicted else 0.0
    recall = correct / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def macro_f1(pairs: Sequence[tuple[str | None, str]]) -> float:
    """Macro-F1 over the labels present in references or predictions (sklearn's labels=None); for
    `bootstrap_paired` over already mapped (prediction, reference) pairs."""
    correct, predicted, actual = _label_counts(pairs)
    present = actual.keys() | predicted.keys()
    if not present:
        return math.nan
    return sum(_precision_recall_f1(correct[x], predicted[x], actual[x])[2] for x in present) / len(present)


def classification_scores(
    predictions: Sequence[str | None], references: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label precision/recall/F1/support, and how many predictions named no label.

    A prediction outside `labels` is treated like None: wrong, and no label's false positive. per_label
    lists the labels that macro-F1 averages over (present in references or predictions), in `labels` order.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references: they must pair up")
    known = set(labels)
    mapped = [prediction if prediction in known else None for prediction in predictions]
    correct, predicted, actual = _label_counts(zip(mapped, references, strict=True))
    order = {label: i for i, label in enumerate(labels)}
    present = sorted(actual.keys() | predicted.keys(), key=lambda x: (order.get(x, len(order)), x))
    per_label = {}
    for label in present:
        precision, recall, f1 = _precision_recall_f1(correct[label], predicted[label], actual[label])
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual[label]}
    n = len(references)
    return {
        "accuracy": sum(correct.values()) / n if n else math.nan,
        "macro_f1": sum(s["f1"] for s in per_label.values()) / len(per_label) if per_label else math.nan,
        "per_label": per_label,
        "unmapped": sum(prediction is None for prediction in mapped),
    }


# ---------------------------------------------------------------------------------------------- JSON output

_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)
_OPENING = re.compile(r"[\[{]")
_decoder = json.JSONDecoder()


def parse_json_output(text: str) -> tuple[Any | None, str | None]:
    """The JSON value in a model's output: the whole text, else a ```json (or bare ```) fenced block, else
    the first balanced {...} or [...] in it. Returns (value, None), or (None, what was wrong)."""
    stripped = text.strip()
    if not stripped:
        return None, "empty output: expected a JSON value"
    try:
        return json.loads(stripped), None
    except json.JSONDecodeError as whole_error:
        error = whole_error
    for fence in _FENCE.finditer(stripped):
        try:
            return json.loads(fence.group(1)), None
        except json.JSONDecodeError:
            continue
    # raw_decode reads one value and ignores what follows, and skips braces inside strings.
    for opening in _OPENING.finditer(stripped):
        try:
            return _decoder.raw_decode(stripped, opening.start())[0], None
        except json.JSONDecodeError:
            continue
    return (
        None,
        f"no JSON value in the output: not JSON as a whole ({error}), no parsable fenced block or {{...}}/[...]",
    )


def json_field_scores(prediction_text: str, reference: Any) -> dict[str, float | int]:
    """Validity and precision/recall/F1 of the predicted JSON's leaf fields ('a.b[0].c' -> value) against
    the reference (a JSON string, or an already parsed value). Values compare as str(v).strip().lower()."""
    expected = _flatten(_reference_value(reference))
    value, error = parse_json_output(prediction_text)
    if error is not None:
        return {"valid": 0, "field_precision": 0.0, "field_recall": 0.0, "field_f1": 0.0}
    predicted = _flatten(value)
    if not predicted and not expected:
        return {"valid": 1, "field_precision": 1.0, "field_recall": 1.0, "field_f1": 1.0}
    matched = sum(1 for path, leaf in predicted.items() if expected.get(path) == leaf)
    precision = matched / len(predicted) if predicted else 0.0
    recall = matched / len(expected) if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"valid": 1, "field_precision": precision, "field_recall": recall, "field_f1": f1}


def _reference_value(reference: Any) -> Any:
    if not isinstance(reference, str):
        return reference
    try:
        return json.loads(reference)
    except json.JSONDecodeError as error:
        raise ValueError(f"reference is not valid JSON ({error}): {reference[:80]!r}") from error


def _flatten(value: Any, path: str = "") -> dict[str, str]:
    """Leaf path -> comparable text. An empty object or list inside the value is a leaf ('{}', '[]'); at the
    top it has no leaves, so two empty objects agree."""
    if isinstance(value, dict) and value:
        leaves: dict[str, str] = {}
        for key, child in value.items():
            leaves.update(_flatten(child, f"{path}.{key}" if path else str(key)))
        return leaves
    if isinstance(value, list) and value:
        leaves = {}
        for i, child in enumerate(value):
            leaves.update(_flatten(child, f"{path}[{i}]"))
        return leaves
    if isinstance(value, dict | list) and not path:
        return {}
    return {path: str(value).strip().lower()}
