"""Evaluation's speed-ups must not change its numbers: the vectorized perplexity interval and token-budgeted
batches."""

from __future__ import annotations

import math
import random

import pytest

from executor.evaluate.generate import token_batches
from executor.evaluate.metrics import bootstrap_paired, perplexity_estimate


def test_perplexity_estimate_is_bootstrap_paired_with_the_perplexity_statistic():
    rng = random.Random(3)
    pairs = [(rng.random() * 8, rng.randint(1, 9)) for _ in range(700)]

    def ppl(ps):
        return math.exp(sum(s for s, _ in ps) / sum(n for _, n in ps))

    slow, fast = bootstrap_paired(pairs, ppl, seed=4), perplexity_estimate(pairs, seed=4)
    assert (fast.value, fast.ci_low, fast.ci_high) == pytest.approx((slow.value, slow.ci_low, slow.ci_high), rel=1e-9)


def test_token_batches_keep_every_row_once_within_the_budget():
    lengths = [5, 50, 7, 30, 30, 1, 12]
    batches = token_batches(lengths, 60, rows=0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 60 or len(b) == 1 for b in batches)
    assert [len(b) for b in token_batches(lengths, None, rows=3)] == [3, 3, 1]
