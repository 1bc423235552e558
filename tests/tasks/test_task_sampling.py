"""Label fractions: deterministic, stratified, the fraction respected, every label kept."""

from __future__ import annotations

import numpy as np
import pytest

from tasks import build
from tasks.sampling import label_fraction_indices, stratify_key


def test_multiclass_deterministic_and_stratified():
    rng = np.random.default_rng(0)
    y = rng.choice(4, size=1000, p=[0.5, 0.3, 0.15, 0.05])
    a = label_fraction_indices(y, "multiclass", 0.1, seed=3)
    assert np.array_equal(a, label_fraction_indices(y, "multiclass", 0.1, seed=3))
    assert not np.array_equal(a, label_fraction_indices(y, "multiclass", 0.1, seed=4))
    assert len(a) == 100 and len(np.unique(a)) == 100 and np.all(np.diff(a) > 0)
    full, sub = np.bincount(y, minlength=4), np.bincount(y[a], minlength=4)
    assert np.all(np.abs(sub - 0.1 * full) <= 1)  # proportional, up to rounding


def test_every_class_kept_at_tiny_fractions():
    y = np.r_[np.zeros(500, int), np.ones(5, int), np.full(3, 2)]
    idx = label_fraction_indices(y, "multiclass", 0.01, seed=0)
    assert set(y[idx]) == {0, 1, 2}
    assert len(idx) == 5  # round(0.01 * 508) = 5, and 3 strata fit


def test_fraction_one_returns_everything_and_bad_fraction_raises():
    y = np.arange(10) % 3
    assert np.array_equal(label_fraction_indices(y, "multiclass", 1.0), np.arange(10))
    with pytest.raises(ValueError):
        label_fraction_indices(y, "multiclass", 0.0)


def test_multilabel_rarest_label_key():
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    # counts: label0 3, label1 3, label2 1 -> rarest first: 2, then (tie 3/3) the lower index 0
    assert stratify_key(y, "multilabel").tolist() == [0, 0, -1, 2, 1]


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.2, 0.5])
def test_multilabel_fraction_positive_per_label(fraction):
    rng = np.random.default_rng(1)
    y = (rng.random((1000, 6)) < [0.3, 0.2, 0.1, 0.05, 0.02, 0.004]).astype(int)
    idx = label_fraction_indices(y, "multilabel", fraction, seed=0)
    assert np.array_equal(idx, label_fraction_indices(y, "multilabel", fraction, seed=0))
    assert np.all(y[idx].sum(0) >= 1)  # every label keeps a positive
    target = round(fraction * 1000)
    n_strata = len(np.unique(stratify_key(y, "multilabel")))
    assert max(target, n_strata) <= len(idx) <= max(target, n_strata) + y.shape[1]
    if fraction >= 0.2:
        assert len(idx) == target
        # common labels keep their prevalence (within a few samples)
        assert np.all(np.abs(y[idx].sum(0)[:3] - fraction * y.sum(0)[:3]) <= 0.25 * fraction * y.sum(0)[:3] + 2)


def test_linear_probe_reports_the_fraction(colour_model, colour_splits):
    splits = colour_splits("multiclass", {"train": 200, "val": 30, "test": 30})
    m = build("linear_probe", target="colour", label_fraction=0.1, c=1.0, seed=5).run(colour_model(), splits)
    assert m["n_train"] == 20 and m["n_train_total"] == 200 and m["label_fraction"] == 0.1
    m2 = build("finetune", target="colour", label_fraction=0.1, epochs=1).run(colour_model(), splits)
    assert m2["n_train"] == 20
