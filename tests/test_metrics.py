"""Task metrics of the evaluation stage: every function against hand-computed values, properties, and speed."""

from __future__ import annotations

import json
import math
import statistics
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.evaluate.metrics import (
    Estimate,
    _interval,
    _stratified_indices,
    bootstrap,
    bootstrap_paired,
    classification_estimates,
    classification_scores,
    exact_match,
    extract_final_number,
    json_field_scores,
    macro_f1,
    map_to_label,
    normalize_answer,
    normalized_exact_match,
    parse_json_output,
    resampled_scores,
    token_f1,
)

GSM8K_SOLUTION = (
    "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
    "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer's market.\n"
    "#### 18"
)
BANKING_LABELS = ["card_arrival", "top_up_failed", "top_up_failed_reason", "card_linking", "pin_blocked"]


# ------------------------------------------------------------------------------------------------- Estimate


def test_estimate_to_dict_rounds_to_four_decimals():
    assert Estimate(0.123456, 0.10004, 0.99996, 12).to_dict() == {
        "value": 0.1235,
        "ci_low": 0.1,
        "ci_high": 1.0,
        "n": 12,
    }


def test_estimate_to_dict_writes_nan_as_none():
    # JSON has no NaN; an estimate over no examples is reported as null.
    assert Estimate(math.nan, math.nan, math.nan, 0).to_dict() == {
        "value": None,
        "ci_low": None,
        "ci_high": None,
        "n": 0,
    }


# ------------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_empty_input():
    estimate = bootstrap([])
    assert estimate.n == 0
    assert math.isnan(estimate.value) and math.isnan(estimate.ci_low) and math.isnan(estimate.ci_high)


@pytest.mark.parametrize("scores", [[0.7] * 20, [0.1] * 7, [0.3], [1.0, 1.0]])
def test_bootstrap_constant_scores_give_a_zero_width_interval(scores):
    # Every resample of a constant list is that list; the mean of seven 0.1s is exactly 0.1, not 0.0999...
    assert bootstrap(scores) == Estimate(scores[0], scores[0], scores[0], len(scores))


def test_bootstrap_two_scores_by_hand():
    # Resamples of [0, 1]: mean 0 (p=1/4), 0.5 (p=1/2), 1 (p=1/4). About 250 of 1000 resamples are 0 and 250
    # are 1, so the 2.5% and 97.5% percentiles are 0 and 1; the value is 0.5.
    assert bootstrap([0.0, 1.0]) == Estimate(0.5, 0.0, 1.0, 2)


def test_bootstrap_is_deterministic_for_a_seed():
    # Continuous scores: the interval ends are resample means (order statistics), which for a few 0/1 scores
    # are the same handful of fractions k/13 whatever the seed.
    scores = [0.3, 0.9, 0.15, 0.62, 0.05, 0.77, 0.41, 0.88, 0.2, 0.95, 0.5, 0.33, 0.7]
    assert bootstrap(scores, seed=3) == bootstrap(scores, seed=3)
    assert bootstrap(scores, seed=3) != bootstrap(scores, seed=4)


def test_bootstrap_interval_contains_the_value():
    # 7 of 10 correct: value 0.7.
    estimate = bootstrap([1, 0, 1, 1, 0, 1, 0, 1, 1, 1])
    assert estimate.value == pytest.approx(0.7)
    assert estimate.n == 10
    assert 0.0 <= estimate.ci_low < 0.7 < estimate.ci_high <= 1.0


def test_bootstrap_width_shrinks_with_n_like_one_over_sqrt_n():
    # Half right: the normal approximation's 95% width is 2 * 1.96 * sqrt(0.25 / n) = 0.196 at n=100 and
    # 0.0196 at n=10,000, a ratio of sqrt(100) = 10.
    small = bootstrap([1.0, 0.0] * 50)
    large = bootstrap([1.0, 0.0] * 5000)
    small_width, large_width = small.ci_high - small.ci_low, large.ci_high - large.ci_low
    assert small_width == pytest.approx(0.196, rel=0.15)
    assert large_width == pytest.approx(0.0196, rel=0.15)
    assert 7 < small_width / large_width < 13


def test_bootstrap_alpha_sets_the_coverage():
    scores = [1.0, 0.0] * 200
    wide, narrow = bootstrap(scores, alpha=0.01), bootstrap(scores, alpha=0.5)
    assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low


def test_bootstrap_median_and_a_custom_statistic():
    # Median of [1, 2, 3, 4, 100] is 3; the outlier does not move it.
    assert bootstrap([1, 2, 3, 4, 100], statistic=np.median).value == 3.0
    assert bootstrap([1, 2, 3, 4, 100], statistic=statistics.median).value == 3.0
    # A statistic we do not vectorize runs row by row: the max of any resample is at most 100.
    estimate = bootstrap([1, 2, 3, 4, 100], statistic=lambda a: float(np.max(a)))
    assert estimate.value == 100.0 and estimate.ci_high == 100.0 and estimate.ci_low <= 100.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"resamples": 0}, "resamples"), ({"alpha": 0.0}, "alpha"), ({"alpha": 1.0}, "alpha")],
)
def test_bootstrap_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap([1.0, 0.0], **kwargs)


def test_bootstrap_rejects_nested_scores():
    with pytest.raises(ValueError, match="flat sequence"):
        bootstrap([[1.0, 0.0], [0.0, 1.0]])


def test_bootstrap_of_10000_scores_takes_under_a_second():
    scores = np.random.default_rng(0).random(10_000)
    start = time.perf_counter()
    bootstrap(scores, resamples=1000)
    assert time.perf_counter() - start < 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=40), st.integers(0, 9))
def test_bootstrap_mean_interval_is_within_the_scores_and_around_the_value(scores, seed):
    estimate = bootstrap(scores, resamples=200, seed=seed)
    assert min(scores) <= estimate.ci_low <= estimate.value <= estimate.ci_high <= max(scores)
    assert estimate.n == len(scores)


def test_interval_is_centred_on_the_value_when_the_resamples_are_biased():
    # Resamples ~ N(0.5, 1) around a value of 0: the percentile interval would be 0.5 -+ 1.96. The share below 0
    # is Phi(-0.5), so z0 = -0.5 and the percentiles are read at Phi(-1 -+ 1.96): 0.5 - 2.96 and 0.5 + 0.96,
    # an interval as far below the value as the resamples lie above it.
    normal = statistics.NormalDist()
    stats = np.array([0.5 + normal.inv_cdf((i + 0.5) / 100_000) for i in range(100_000)])  # exact quantiles
    estimate = _interval(0.0, stats, 50, 0.05)
    assert (estimate.ci_low, estimate.ci_high) == pytest.approx((-2.46, 1.46), abs=0.005)
    # Without bias (half the resamples below the value) it is the percentile interval.
    unbiased = _interval(0.5, stats, 50, 0.05)
    assert (unbiased.ci_low, unbiased.ci_high) == pytest.approx((0.5 - 1.96, 0.5 + 1.96), abs=0.005)


def test_interval_falls_back_to_the_percentiles_when_the_value_is_beyond_the_resamples():
    # Every resample above the value: bias correction has no range left, so the percentile interval is given
    # (and misses the value, which the evaluation report then says) instead of a zero-width one.
    stats = np.arange(1.0, 1001.0)
    estimate = _interval(0.0, stats, 10, 0.05)
    # The 25th and 975th of the 1,000 order statistics, give or take the last bit of Phi(-1.96) = 0.025.
    assert 25.0 <= estimate.ci_low <= 26.0 and 975.0 <= estimate.ci_high <= 976.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=300), st.floats(-1e3, 1e3))
def test_interval_contains_the_value_when_enough_resamples_lie_on_each_side(stats, value):
    stats = np.array(stats)
    below, above = np.mean(stats < value), np.mean(stats > value)
    estimate = _interval(value, stats, 1, 0.05)
    if below + np.mean(stats == value) / 2 > 0.025 and above + np.mean(stats == value) / 2 > 0.025:
        assert estimate.ci_low <= value <= estimate.ci_high
    assert stats.min() <= estimate.ci_low <= estimate.ci_high <= stats.max()


# ------------------------------------------------------------------------------------------ bootstrap_paired


def _per_token(pairs):
    """A corpus-level statistic as the evaluation's perplexity uses: summed NLL over summed tokens."""
    return sum(nll for nll, _ in pairs) / sum(tokens for _, tokens in pairs)


def test_bootstrap_paired_value_is_the_statistic_on_all_pairs():
    pairs = [(2.0, 1), (3.0, 2), (1.0, 1), (6.0, 4)]
    estimate = bootstrap_paired(pairs, _per_token)
    # (2 + 3 + 1 + 6) / (1 + 2 + 1 + 4) = 12 / 8, not the mean of the per-pair ratios (2 + 1.5 + 1 + 1.5) / 4.
    assert estimate.value == 1.5
    assert estimate.n == 4
    assert estimate.ci_low <= estimate.value <= estimate.ci_high


def test_bootstrap_paired_resamples_like_bootstrap():
    # Same seed, same resample indices: accuracy resampled as pairs equals the mean of 0/1 scores resampled.
    rng = np.random.default_rng(1)
    references = [str(x) for x in rng.integers(0, 3, 300)]
    predictions = [str(x) for x in rng.integers(0, 3, 300)]
    pairs = list(zip(predictions, references, strict=True))
    paired = bootstrap_paired(pairs, lambda ps: sum(p == r for p, r in ps) / len(ps), seed=5)
    scores = bootstrap([float(p == r) for p, r in pairs], seed=5)
    assert paired.value == pytest.approx(scores.value)
    assert paired.ci_low == pytest.approx(scores.ci_low)
    assert paired.ci_high == pytest.approx(scores.ci_high)


def test_bootstrap_paired_deterministic_constant_and_empty():
    pairs = [(2.0, 1), (3.0, 2), (1.0, 1), (6.0, 4), (0.5, 1)] * 4
    assert bootstrap_paired(pairs, _per_token, seed=2) == bootstrap_paired(pairs, _per_token, seed=2)
    constant = [(2.0, 1), (4.0, 2)] * 5
    assert bootstrap_paired(constant, _per_token) == Estimate(2.0, 2.0, 2.0, 10)
    assert bootstrap_paired([], _per_token).n == 0 and math.isnan(bootstrap_paired([], _per_token).value)


# ------------------------------------------------------------------------------------------ answers as text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat, sat!  on a   mat.", "cat sat on mat"),
        ("An apple", "apple"),
        ("theater then", "theater then"),  # articles are whole words only
        ("Don't  stop", "dont stop"),  # SQuAD drops punctuation without a space
        ("  ", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GSM8K_SOLUTION, "18"),  # the marker beats the last number (also 18 here) and the 9s before it
        ("She makes 9 * 2 = $18 every day.", "18"),  # no marker: the last number
        ("#### 18\n\nQuestion: Tom has 5 apples and buys 3 more.", "18"),  # first marker, its own line
        ("Total: 7 apples.\n####\nnothing", "7"),  # a marker without a number: the last number
        ("#### 1,000", "1000"),
        ("1,000.00", "1000"),
        ("$18", "18"),
        ("-3.5", "-3.5"),
        ("The answer is $18.00.", "18"),  # sentence-final '.' is not a decimal point
        ("3.50", "3.5"),
        ("-0.0", "0"),
        ("007", "7"),
        ("the list 1,2,3", "3"),  # thousands commas only in groups of three
        ("16-3-4 = 9", "9"),  # '-' between numbers is subtraction, not a sign
        ("no numbers here", None),
        ("x2 and Q3", None),  # digits glued to a word are not answers
        ("", None),
    ],
)
def test_extract_final_number(text, expected):
    assert extract_final_number(text) == expected


@given(st.integers(-(10**9), 10**9))
def test_extract_final_number_reads_any_formatted_integer(number):
    assert extract_final_number(f"so the total is\n#### {number:,}") == str(number)
    assert extract_final_number(f"It costs ${number:,}.00 in total.") == str(number)


def test_exact_match():
    assert exact_match(" 18 \n", "18") == 1.0  # only surrounding whitespace is forgiven
    assert exact_match("18.0", "18") == 0.0
    assert exact_match("Paris", "paris") == 0.0


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("So she makes $18 a day.", GSM8K_SOLUTION, 1.0),  # both final numbers are 18
        ("9 eggs... #### 18.00", GSM8K_SOLUTION, 1.0),
        ("#### 17", GSM8K_SOLUTION, 0.0),
        ("I don't know", GSM8K_SOLUTION, 0.0),  # no number in the prediction
        ("That is 1000 dollars", "1,000", 1.0),  # a bare-number reference compares by value
        ("eiffel tower!", "The Eiffel Tower", 1.0),  # SQuAD normalization
        ("apollo 11.", "Apollo 11", 1.0),
        ("Apollo 13, not 11", "Apollo 11", 0.0),  # a number inside a text answer stays text
    ],
)
def test_normalized_exact_match(prediction, reference, expected):
    assert normalized_exact_match(prediction, reference) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        # [cat, sat] vs [cat, sat, down]: overlap 2 -> P=2/2, R=2/3, F1 = 2*1*(2/3) / (1+2/3) = 0.8
        ("the cat sat", "a cat sat down", 0.8),
        # [cat, cat, cat] vs [cat]: overlap min(3, 1) = 1 -> P=1/3, R=1, F1 = (2/3) / (4/3) = 0.5
        ("cat cat cat", "cat", 0.5),
        ("dog", "cat", 0.0),
        ("", "", 1.0),
        ("the", "", 1.0),  # 'the' normalizes to nothing: both empty
        ("", "cat", 0.0),
        ("Cat.", "cat", 1.0),
    ],
)
def test_token_f1(prediction, reference, expected):
    assert token_f1(prediction, reference) == pytest.approx(expected)


@given(st.text(max_size=30), st.text(max_size=30))
def test_token_f1_is_symmetric_and_bounded(a, b):
    assert token_f1(a, b) == pytest.approx(token_f1(b, a))
    assert 0.0 <= token_f1(a, b) <= 1.0
    assert token_f1(a, a) == 1.0


# ------------------------------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("generated", "expected"),
    [
        ("card_arrival", "card_arrival"),
        ("Card arrival", "card_arrival"),  # case and '_' <-> ' '
        ("top up failed", "top_up_failed"),
        ("  CARD_ARRIVAL.  ", "card_arrival"),  # surrounding punctuation
        ('"card_arrival"', "card_arrival"),
        ("card_arrival\nThe customer asks when the card arrives.", "card_arrival"),  # first line
        ("pin_blocked because the PIN was entered wrong three times", "pin_blocked"),  # first word
        ("The intent is: card_arrival.", "card_arrival"),  # a whole phrase inside the text
        ("I think it is top-up failed.", "top_up_failed"),  # hyphens count as spaces too
        ("Either card linking or card arrival.", "card_linking"),  # earliest wins
        ("Label: top up failed reason", "top_up_failed_reason"),  # longest at the same position wins
        ("card_arrivals", None),  # whole words only
        ("nothing relevant", None),
        ("", None),
    ],
)
def test_map_to_label(generated, expected):
    assert map_to_label(generated, BANKING_LABELS) == expected


def test_map_to_label_without_labels():
    assert map_to_label("card_arrival", []) is None


# A = card_arrival, T = top_up_failed, L = card_linking (never predicted), pin_blocked absent.
REFERENCES = ["card_arrival", "card_arrival", "card_arrival", "top_up_failed", "top_up_failed", "card_linking"]
PREDICTIONS = ["card_arrival", "card_arrival", "top_up_failed", "top_up_failed", None, "card_arrival"]


def test_classification_scores_by_hand():
    scores = classification_scores(PREDICTIONS, REFERENCES, BANKING_LABELS)
    # Correct at positions 0, 1, 3: accuracy 3/6.
    assert scores["accuracy"] == 0.5
    assert scores["unmapped"] == 1
    per_label = scores["per_label"]
    # A: predicted at 0, 1, 5 (2 right) -> P=2/3; 3 in references (2 found) -> R=2/3; F1=2/3.
    assert per_label["card_arrival"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    # T: predicted at 2, 3 (1 right) -> P=1/2; 2 in references, the None at 4 misses one -> R=1/2; F1=1/2.
    assert per_label["top_up_failed"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    # L: never predicted -> P=0 (sklearn's zero_division=0), R=0/1, F1=0; it still counts in the macro average.
    assert per_label["card_linking"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # Labels in neither references nor predictions are left out, as sklearn does for labels=None.
    assert list(per_label) == ["card_arrival", "top_up_failed", "card_linking"]
    # macro = (2/3 + 1/2 + 0) / 3 = 7/18
    assert scores["macro_f1"] == pytest.approx(7 / 18)
    assert macro_f1(list(zip(PREDICTIONS, REFERENCES, strict=True))) == pytest.approx(7 / 18)


def test_classification_scores_a_predicted_label_without_support_lowers_macro_f1():
    # pin_blocked is predicted once but never the reference: P=0/1, R=0/0 -> F1=0, and it joins the average.
    # card_arrival: P=1/1, R=1/2 -> F1=2/3. macro = (2/3 + 0) / 2 = 1/3.
    scores = classification_scores(["card_arrival", "pin_blocked"], ["card_arrival", "card_arrival"], BANKING_LABELS)
    assert scores["per_label"]["pin_blocked"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert scores["macro_f1"] == pytest.approx(1 / 3)


def test_classification_scores_treat_a_prediction_outside_the_labels_as_unmapped():
    scores = classification_scores(["card arrival?", "card_arrival"], ["card_arrival", "card_arrival"], BANKING_LABELS)
    # One unmapped (wrong, no false positive): card_arrival P=1/1, R=1/2 -> F1=2/3, the only label present.
    assert scores["unmapped"] == 1
    assert scores["accuracy"] == 0.5
    assert scores["macro_f1"] == pytest.approx(2 / 3)


def test_macro_f1_averages_the_labels_in_use_not_all_labels():
    # The issue's case: 5 labels known, the references use 2 of them (A = card_arrival, T = top_up_failed), the
    # model also names pin_blocked (P) once and names no label once.
    references = ["card_arrival"] * 3 + ["top_up_failed"] * 3
    predictions = ["card_arrival", "card_arrival", None, "top_up_failed", "top_up_failed", "pin_blocked"]
    scores = classification_scores(predictions, references, BANKING_LABELS)
    # A: tp 2, predicted 2, true 3 -> F1 = 2*2 / (2 + 3) = 4/5; T likewise 4/5 (its third row was called P);
    # P: predicted once, never a reference -> F1 0. The None is a miss of A, not a class of its own.
    # Over {A, T, P}: (4/5 + 4/5 + 0) / 3 = 8/15; over all 5 labels it would read 8/25, with an "unmapped" class 2/5.
    assert scores["macro_f1"] == pytest.approx(8 / 15)
    assert list(scores["per_label"]) == ["card_arrival", "top_up_failed", "pin_blocked"]
    assert scores["accuracy"] == pytest.approx(4 / 6) and scores["unmapped"] == 1
    assert macro_f1(list(zip(predictions, references, strict=True))) == scores["macro_f1"]


def test_classification_scores_match_sklearn_with_unmapped_predictions_as_misses():
    from sklearn import metrics as sklearn_metrics

    rng = np.random.default_rng(7)
    references = [BANKING_LABELS[i] for i in rng.integers(0, 4, 200)]  # pin_blocked never a reference
    predictions = [BANKING_LABELS[i] if i < 5 else None for i in rng.integers(0, 6, 200)]
    scores = classification_scores(predictions, references, BANKING_LABELS)
    # sklearn on the label strings, a None as a string outside `labels`: counted wrong, averaged over no class.
    as_text = [p or "<no label>" for p in predictions]
    used = sorted(set(references) | {p for p in predictions if p})
    expected = sklearn_metrics.f1_score(references, as_text, labels=used, average="macro", zero_division=0)
    assert scores["macro_f1"] == pytest.approx(expected, abs=1e-12)
    assert scores["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(references, as_text))
    assert scores["per_label"]["pin_blocked"]["support"] == 0 and scores["per_label"]["pin_blocked"]["f1"] == 0.0


def test_classification_scores_errors_and_empty_input():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        classification_scores(["a", "b"], ["a"], ["a", "b"])
    empty = classification_scores([], [], BANKING_LABELS)
    assert math.isnan(empty["accuracy"]) and math.isnan(empty["macro_f1"])
    assert empty["per_label"] == {} and empty["unmapped"] == 0


# ---------------------------------------------------------------------------- classification intervals


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 120), st.integers(0, 2**32 - 1))
def test_resampled_scores_are_sklearns_to_the_last_bit(k, n, seed):
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k + 1, n)  # code k: a prediction naming no label
    rows = rng.integers(0, n, size=(4, n))
    accuracy, macro = resampled_scores(y_true, y_pred, k, rows)
    for i, row in enumerate(rows):
        assert accuracy[i] == accuracy_score(y_true[row], y_pred[row])
        assert macro[i] == f1_score(y_true[row], y_pred[row], labels=np.arange(k), average="macro", zero_division=0)


def _skewed_dataset(seed: int, k: int, n: int, skew: float, accuracy: float, unmapped: float):
    """References over k labels with Zipf-like shares (skew 2: most labels have one or two examples), errors
    drawn from the same shares, some predictions naming no label."""
    rng = np.random.default_rng(seed)
    shares = 1.0 / np.arange(1, k + 1) ** skew
    shares /= shares.sum()
    names = [f"intent_{i}" for i in range(k)]
    truth = rng.choice(k, n, p=shares)
    guess = np.where(rng.random(n) < accuracy, truth, rng.choice(k, n, p=shares))
    predictions = [None if rng.random() < unmapped else names[g] for g in guess]
    return predictions, [names[t] for t in truth], names


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([2, 10, 77, 150]),
    st.integers(1, 400),
    st.sampled_from([0.0, 1.0, 2.0]),
    st.floats(0.0, 1.0),
    st.sampled_from([0.0, 0.1, 0.5]),
)
def test_every_classification_metric_lies_inside_its_interval(seed, k, n, skew, accuracy, unmapped):
    predictions, references, labels = _skewed_dataset(seed, k, n, skew, accuracy, unmapped)
    estimates = classification_estimates(predictions, references, labels, seed=seed % 7)
    scores = classification_scores(predictions, references, labels)
    for name in ("accuracy", "macro_f1"):
        estimate = estimates[name]
        assert estimate.value == scores[name]  # the same sklearn value as the per-label report
        assert estimate.ci_low <= estimate.value <= estimate.ci_high, (name, estimate)
        assert estimate.n == n


def test_issue_15_the_value_lies_in_its_interval_where_plain_resampling_put_it_below():
    # 10 intents x 30 rows in the references (a label-ordered file's first rows), 30% wrong answers, most of
    # them naming one of 120 other intents once or twice: those labels score F1 0 and join the macro average.
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(10), 30)
    wrong, elsewhere = rng.random(300) < 0.3, rng.random(300) < 0.6
    guess = np.where(~wrong, truth, np.where(elsewhere, 10 + rng.integers(0, 120, 300), rng.integers(0, 10, 300)))
    predictions, references = [f"intent_{g}" for g in guess], [f"intent_{t}" for t in truth]
    labels = [f"intent_{i}" for i in range(130)]
    # Resampling all rows and averaging over the labels of each resample, as before: a predicted-once label
    # drops out of about a third of the resamples, each drop lifts the average, and every resample lies above.
    plain = bootstrap_paired(list(zip(predictions, references, strict=True)), macro_f1, resamples=200)
    assert plain.value < plain.ci_low
    estimate = classification_estimates(predictions, references, labels)["macro_f1"]
    assert estimate.value == plain.value == pytest.approx(0.125, abs=1e-3)
    assert estimate.ci_low < estimate.value < estimate.ci_high


def test_stratified_resamples_keep_every_labels_count():
    y_true = np.array([0] * 7 + [1] * 2 + [2] * 1 + [3] * 40)
    blocks = list(_stratified_indices(y_true, 300, seed=4))
    rows = np.concatenate(blocks)
    assert rows.shape == (300, y_true.size)
    assert (np.sort(y_true[rows], axis=1) == np.sort(y_true)).all()  # each resample: 7, 2, 1 and 40 rows
    assert len({row.tobytes() for row in rows}) > 250  # and they differ
    assert all((a == b).all() for a, b in zip(blocks, _stratified_indices(y_true, 300, seed=4), strict=True))


def test_classification_estimates_are_fast_seeded_and_handle_edge_cases():
    # Banking77's test set: 77 intents x 40 rows.
    predictions, references, labels = _skewed_dataset(3, 77, 3080, 0.0, 0.8, 0.03)
    start = time.perf_counter()
    estimates = classification_estimates(predictions, references, labels, resamples=1000)
    assert time.perf_counter() - start < 1.0  # measured about 0.15 s; sklearn per resample took 6 s
    assert estimates == classification_estimates(predictions, references, labels, resamples=1000)
    assert estimates != classification_estimates(predictions, references, labels, resamples=1000, seed=1)
    all_right = classification_estimates(["a", "b"] * 5, ["a", "b"] * 5, ["a", "b"])
    assert all_right == {"accuracy": Estimate(1.0, 1.0, 1.0, 10), "macro_f1": Estimate(1.0, 1.0, 1.0, 10)}
    empty = classification_estimates([], [], ["a"])
    assert empty["macro_f1"].n == 0 and math.isnan(empty["accuracy"].value)
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        classification_estimates(["a", "b", "a"], ["a", "b"], ["a", "b"])


# ----------------------------------------------------------------------------------------------- JSON output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("  [1, 2]\n", [1, 2]),
        ("42", 42),
        ('Sure! Here is the JSON: {"a": {"b": [1, {"c": "x}"}]}} Hope this helps.', {"a": {"b": [1, {"c": "x}"}]}}),
        ('Result:\n```json\n{"name": "Ada"}\n```\nDone.', {"name": "Ada"}),
        ('```\n["x"]\n```', ["x"]),  # a fence without a language
        ('Use {braces} like this:\n```JSON\n{"ok": true}\n```', {"ok": True}),  # the fence beats prose braces
        ('See [1] for details. {"answer": null} end', [1]),  # the first balanced value wins, even a citation
        ('See [note] below: {"answer": null} end', {"answer": None}),  # '[note]' is not JSON: skipped
    ],
)
def test_parse_json_output_finds_the_value(text, expected):
    assert parse_json_output(text) == (expected, None)


@pytest.mark.parametrize("text", ['{"a": 1,', "no json at all", "{'a': 1}", ""])
def test_parse_json_output_reports_what_was_wrong(text):
    value, error = parse_json_output(text)
    assert value is None
    assert error and ("no JSON value" in error or "empty output" in error)


REFERENCE = {"name": "Ada", "address": {"city": "London", "zip": "N1"}, "tags": ["x", "y"]}


def test_json_field_scores_nested_fields_by_hand():
    # Reference leaves: name, address.city, address.zip, tags[0], tags[1] (5).
    # Predicted leaves: name ('ada ' -> 'ada' matches), address.city (Paris: wrong), address.zip, tags[0] (4).
    # 3 matched: P = 3/4, R = 3/5, F1 = 2 * 0.75 * 0.6 / 1.35 = 2/3.
    prediction = 'Here it is: {"name": "ada ", "address": {"city": "Paris", "zip": "N1"}, "tags": ["x"]}'
    scores = json_field_scores(prediction, REFERENCE)
    assert scores == pytest.approx({"valid": 1, "field_precision": 0.75, "field_recall": 0.6, "field_f1": 2 / 3})
    # A JSON-string reference scores the same as the parsed one.
    assert json_field_scores(prediction, json.dumps(REFERENCE)) == scores


def test_json_field_scores_invalid_prediction_scores_zero():
    assert json_field_scores('{"name": "Ada",', REFERENCE) == {
        "valid": 0,
        "field_precision": 0.0,
        "field_recall": 0.0,
        "field_f1": 0.0,
    }


def test_json_field_scores_empty_objects_and_leaf_text():
    assert json_field_scores("{}", "{}") == {"valid": 1, "field_precision": 1.0, "field_recall": 1.0, "field_f1": 1.0}
    # An empty prediction against one field: nothing predicted, nothing found.
    assert json_field_scores("{}", {"a": 1})["field_f1"] == 0.0
    # Values compare as str(v).strip().lower(): 42 == "42", true == "True"; empty lists are leaves too.
    assert (
        json_field_scores('{"n": 42, "ok": true, "tags": []}', {"n": "42", "ok": "True", "tags": []})["field_f1"] == 1.0
    )
    assert json_field_scores('{"tags": ["x"]}', {"tags": []})["field_f1"] == 0.0


def test_json_field_scores_rejects_an_invalid_reference():
    with pytest.raises(ValueError, match="reference is not valid JSON"):
        json_field_scores("{}", "{not json")


# ---------------------------------------------------------------------------------------------------- speed


def test_per_example_metrics_are_fast():
    # 10,000 examples of each per-example metric, well under a second each.
    n = 10_000
    cases = [
        (token_f1, ["the cat sat on the mat today"] * n, ["a cat sat down on a mat"] * n),
        (normalized_exact_match, ["so she makes $18 a day"] * n, [GSM8K_SOLUTION] * n),
        (lambda g, _: map_to_label(g, BANKING_LABELS), ["The intent is: top up failed."] * n, [None] * n),
        (json_field_scores, ['Here: {"name": "Ada", "tags": ["x"]}'] * n, [REFERENCE] * n),
    ]
    for metric, predictions, references in cases:
        start = time.perf_counter()
        for prediction, reference in zip(predictions, references, strict=True):
            metric(prediction, reference)
        assert time.perf_counter() - start < 1.0, metric


def test_labels_with_one_test_row_each_still_get_an_interval():
    # A pilot's sample: 25 rows over 20 labels, 2 right. Drawn within labels, every resample was the sample itself
    # (an interval of zero width around 8%); drawn over all rows, the interval shows how little 25 rows say.
    labels = [f"intent_{i}" for i in range(20)]
    references = [labels[i % 20] for i in range(25)]
    predictions = [r if i in (0, 7) else None for i, r in enumerate(references)]
    accuracy = classification_estimates(predictions, references, labels)["accuracy"]
    assert accuracy.value == 0.08 and accuracy.ci_low < 0.04 and accuracy.ci_high > 0.15


def test_labels_with_enough_rows_are_still_resampled_within_labels():
    from executor.evaluate import metrics

    references = [f"l{i % 4}" for i in range(40)]  # ten rows a label
    drawn = next(metrics._stratified_indices(np.array([i % 4 for i in range(40)]), 3, 0))
    assert all(sorted(np.array([i % 4 for i in range(40)])[row]) == sorted(i % 4 for i in range(40)) for row in drawn)
    estimate = classification_estimates(references, references, sorted(set(references)))["accuracy"]
    assert (estimate.value, estimate.ci_low, estimate.ci_high) == (1.0, 1.0, 1.0)
