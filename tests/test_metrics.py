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
    bootstrap,
    bootstrap_paired,
    classification_scores,
    exact_match,
    extract_final_number,
    json_field_scores,
    macro_f1,
    map_to_label,
    normalize_answer,
    normalized_exact_match,
    parse_json_output,
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
    scores = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1, 0, 0, 1]
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


# ------------------------------------------------------------------------------------------ bootstrap_paired


def test_bootstrap_paired_value_is_the_statistic_on_all_pairs():
    pairs = [("a", "a"), ("b", "a"), ("b", "b"), (None, "b")]
    estimate = bootstrap_paired(pairs, macro_f1)
    # a: P=1/1, R=1/2 -> F1=2/3; b: P=1/2, R=1/2 -> F1=1/2; macro = (2/3 + 1/2) / 2 = 7/12.
    assert estimate.value == pytest.approx(7 / 12)
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
    pairs = [("x", "x"), ("y", "x"), ("y", "y"), ("x", "y"), ("x", "x")] * 4
    assert bootstrap_paired(pairs, macro_f1, seed=2) == bootstrap_paired(pairs, macro_f1, seed=2)
    all_right = [("x", "x"), ("y", "y")] * 5
    assert bootstrap_paired(all_right, macro_f1) == Estimate(1.0, 1.0, 1.0, 10)
    assert bootstrap_paired([], macro_f1).n == 0 and math.isnan(bootstrap_paired([], macro_f1).value)


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


def test_classification_scores_match_sklearn_without_unmapped_predictions():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    references = [BANKING_LABELS[i] for i in rng.integers(0, 4, 200)]  # pin_blocked never a reference
    predictions = [BANKING_LABELS[i] for i in rng.integers(0, 5, 200)]
    scores = classification_scores(predictions, references, BANKING_LABELS)
    assert scores["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(references, predictions, average="macro"))
    assert scores["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(references, predictions))


def test_classification_scores_errors_and_empty_input():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        classification_scores(["a", "b"], ["a"], ["a", "b"])
    empty = classification_scores([], [], BANKING_LABELS)
    assert math.isnan(empty["accuracy"]) and math.isnan(empty["macro_f1"])
    assert empty["per_label"] == {} and empty["unmapped"] == 0


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
