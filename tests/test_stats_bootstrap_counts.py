"""The macro-F1 bootstrap drawn as confusion counts (issue 11, at scale): the counts, the F1
from counts and the interval against sklearn and scipy's per-image bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import bootstrap
from sklearn.metrics import confusion_matrix, f1_score

from dagster_project.analysis.agreement import (
    bootstrap_f1_interval,
    confusion_counts,
    confusion_macro_f1,
    fixed_label_f1,
)


def _sample(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    truth[truth == k - 1] = 0  # the last label never occurs as truth: F1 over the FIXED labels
    pred = np.where(rng.random(n) < 0.65, truth, rng.integers(-1, k, n))  # -1: outside the labels
    return truth, pred


def test_confusion_counts_match_sklearn_confusion_matrix():
    truth, pred = _sample(500, 6, seed=2)
    counts = confusion_counts(truth, pred, 6)
    assert counts.shape == (6, 7) and counts.sum() == 500
    assert (counts[:, :6] == confusion_matrix(truth, pred, labels=range(6))).all()
    assert (counts[:, 6] == np.bincount(truth[pred < 0], minlength=6)).all()  # errors outside the labels


def test_macro_f1_from_counts_equals_sklearn_with_the_fixed_labels():
    truth, pred = _sample(400, 6, seed=3)
    want = f1_score(truth, pred, labels=range(6), average="macro", zero_division=0)
    assert confusion_macro_f1(confusion_counts(truth, pred, 6)) == pytest.approx(want, abs=1e-12)
    # a batch of samples (the leading axis) at once, each equal to sklearn on its own
    t2, p2 = _sample(400, 6, seed=4)
    both = fixed_label_f1(np.stack([truth, t2]), np.stack([pred, p2]), 6)
    assert both[1] == pytest.approx(f1_score(t2, p2, labels=range(6), average="macro", zero_division=0), abs=1e-12)


def test_count_bootstrap_matches_scipy_per_image_bootstrap():
    # Same bootstrap law (images drawn with replacement), different draws: the percentile
    # intervals agree to Monte Carlo error (~0.002 at 4,000 resamples; tolerance 5x that).
    truth, pred = _sample(300, 6, seed=5)
    low, high = bootstrap_f1_interval(confusion_counts(truth, pred, 6), 4000, 0.05, np.random.default_rng(0))
    ref = bootstrap((truth, pred), lambda a, b, axis=-1: fixed_label_f1(a, b, 6, axis), paired=True,
                    vectorized=True, n_resamples=4000, method="percentile", rng=np.random.default_rng(1))
    assert (low, high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), abs=0.01)
    estimate = f1_score(truth, pred, labels=range(6), average="macro", zero_division=0)
    assert low < estimate < high and high - low > 0.05
