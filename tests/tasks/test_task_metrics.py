"""classification_metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score
from sklearn.preprocessing import label_binarize

from tasks.metrics import classification_metrics, fast_ap, fast_auc


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# -- hand-computed ---------------------------------------------------------------------------------------------
def test_binary_by_hand():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    m = classification_metrics(y, np.c_[1 - p1, p1], "multiclass")
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    assert m["auc"] == pytest.approx(0.75)
    # ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): AP = 1/2 * 1 + 1/2 * 2/3
    assert m["map"] == pytest.approx(0.5 + 1 / 3)
    # argmax predictions [0, 0, 0, 1] -> 3 of 4 right
    assert m["acc"] == pytest.approx(0.75)
    # class 0: tp=2 fp=1 fn=0 -> 4/5 ; class 1: tp=1 fp=0 fn=1 -> 2/3
    assert m["f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["n_labels_skipped"] == 0


def test_binary_uses_positive_column_only():
    y = np.array([0, 0, 1, 1, 0, 1])
    p1 = np.array([0.2, 0.6, 0.7, 0.9, 0.1, 0.3])
    col0 = np.array([0.9, 0.1, 0.8, 0.2, 0.5, 0.4])  # unrelated to p1: not 1 - p1
    m = classification_metrics(y, np.c_[col0, p1], "multiclass")
    assert m["auc"] == pytest.approx(roc_auc_score(y, p1))
    assert m["map"] == pytest.approx(average_precision_score(y, p1))
    assert m["auc"] != pytest.approx(roc_auc_score(y, -col0))


def test_multilabel_by_hand():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.3, 0.6], [0.6, 0.4], [0.5, 0.7]])
    m = classification_metrics(y, s, "multilabel")
    # label 0: pos {0.9, 0.6} neg {0.3, 0.5} -> all 4 pairs right -> 1 ; AP 1
    # label 1: pos {0.6, 0.4} neg {0.2, 0.7} -> (0.6>0.2)(0.6<0.7)(0.4>0.2)(0.4<0.7) -> 1/2
    #          ranking 0.7(-) 0.6(+) 0.4(+) 0.2(-): AP = 1/2 * 1/2 + 1/2 * 2/3
    assert m["auc"] == pytest.approx((1 + 0.5) / 2)
    assert m["map"] == pytest.approx((1 + (0.25 + 1 / 3)) / 2)
    # predictions (> 0.5): label 0 [1,0,1,0] all right -> 1 ; label 1 [0,1,0,1] -> right on rows 1, 2? row1 yes,
    # row2 (y=1, pred 0) no, row0 (y=0,pred 0) yes, row3 (y=0, pred 1) no -> 1/2
    assert m["acc"] == pytest.approx((1 + 0.5) / 2)
    # F1: label 0: tp 2 -> 1 ; label 1: tp 1 fp 1 fn 1 -> 2/4
    assert m["f1"] == pytest.approx((1 + 0.5) / 2)


def test_multilabel_threshold_is_strict():
    y = np.array([[1], [0]])
    m = classification_metrics(y, np.array([[0.5], [0.2]]), "multilabel")
    assert m["acc"] == pytest.approx(0.5)  # 0.5 is not > 0.5: predicted negative
    m = classification_metrics(y, np.array([[0.1], [-0.3]]), "multilabel", threshold=0.0)
    assert m["acc"] == pytest.approx(1.0)


# -- against scikit-learn -------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 200)
    p = softmax(rng.normal(size=(200, 4)) + 1.5 * np.eye(4)[y])
    m = classification_metrics(y, p, "multiclass")
    assert m["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["map"] == pytest.approx(average_precision_score(label_binarize(y, classes=range(4)), p, average="macro"))
    assert m["acc"] == pytest.approx(accuracy_score(y, p.argmax(1)))
    assert m["f1"] == pytest.approx(f1_score(y, p.argmax(1), average="macro"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((150, 5)) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(size=(150, 5)) + 2 * y - 1)))
    m = classification_metrics(y, p, "multilabel")
    assert m["auc"] == pytest.approx(roc_auc_score(y, p, average="macro"))
    assert m["map"] == pytest.approx(average_precision_score(y, p, average="macro"))
    pred = (p > 0.5).astype(int)
    assert m["acc"] == pytest.approx(np.mean([accuracy_score(y[:, j], pred[:, j]) for j in range(5)]))
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=np.nan))


@pytest.mark.parametrize("seed", range(5))
def test_fast_auc_ap_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(300) < 0.3).astype(int)
    s = np.round(rng.normal(size=300) + y, 1)  # rounding creates many ties
    assert fast_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert fast_ap(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


# -- single-class labels --------------------------------------------------------------------------------------
def test_one_class_label_is_skipped_not_nan():
    rng = np.random.default_rng(0)
    y = (rng.random((80, 3)) < 0.4).astype(int)
    y[:, 1] = 0  # never positive
    p = rng.random((80, 3))
    m = classification_metrics(y, p, "multilabel")
    assert m["n_labels_skipped"] == 1
    expect = np.mean([roc_auc_score(y[:, j], p[:, j]) for j in (0, 2)])
    assert m["auc"] == pytest.approx(expect)
    assert m["map"] == pytest.approx(np.mean([average_precision_score(y[:, j], p[:, j]) for j in (0, 2)]))
    y[:, 2] = 1  # always positive: skipped as well
    m = classification_metrics(y, p, "multilabel")
    assert m["n_labels_skipped"] == 2
    assert m["auc"] == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]))


def test_absent_class_skipped_in_multiclass_ovr():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 90)  # class 3 of 4 never occurs
    p = softmax(rng.normal(size=(90, 4)))
    m = classification_metrics(y, p, "multiclass")
    assert m["n_labels_skipped"] == 1
    assert m["auc"] == pytest.approx(np.mean([roc_auc_score(y == c, p[:, c]) for c in range(3)]))
    assert math.isfinite(m["map"])


def test_all_labels_skipped_gives_nan_and_warns(caplog):
    y = np.zeros(10, dtype=int)
    p = np.c_[np.full(10, 0.7), np.full(10, 0.3)]
    with caplog.at_level(logging.WARNING, logger="tasks.metrics"):
        m = classification_metrics(y, p, "multiclass")
    assert math.isnan(m["auc"]) and math.isnan(m["map"])
    assert m["n_labels_skipped"] == 1
    assert m["acc"] == pytest.approx(1.0)
    assert "NaN" in caplog.text


# -- bootstrap ------------------------------------------------------------------------------------------------
def test_bootstrap_ci_seeded_and_contains_point():
    rng = np.random.default_rng(3)
    y = (rng.random((120, 3)) < 0.4).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(size=(120, 3)) + 1.5 * y - 0.75)))
    a = classification_metrics(y, p, "multilabel", ci=True, n_boot=200, seed=7)
    b = classification_metrics(y, p, "multilabel", ci=True, n_boot=200, seed=7)
    c = classification_metrics(y, p, "multilabel", ci=True, n_boot=200, seed=8)
    assert a == b
    assert a["auc_ci_low"] != c["auc_ci_low"]
    for name in ("auc", "map", "acc", "f1"):
        assert a[f"{name}_ci_low"] <= a[name] <= a[f"{name}_ci_high"]
        assert a[f"{name}_ci_high"] - a[f"{name}_ci_low"] > 0


def test_bootstrap_multiclass_keys():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    p = softmax(rng.normal(size=(60, 3)) + np.eye(3)[y])
    m = classification_metrics(y, p, "multiclass", ci=True, n_boot=50)
    assert {"auc_ci_low", "auc_ci_high", "map_ci_low", "map_ci_high", "acc_ci_low", "acc_ci_high", "f1_ci_low", "f1_ci_high"} <= set(m)
    assert "auc_ci_low" not in classification_metrics(y, p, "multiclass")


# -- input checks ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "y, s, kind",
    [
        (np.array([0, 1]), np.array([[0.5, 0.5], [0.1, 0.9]]), "multi"),
        (np.array([0, 2]), np.array([[0.5, 0.5], [0.1, 0.9]]), "multiclass"),
        (np.array([[0, 1]]), np.array([[0.5, 0.5], [0.1, 0.9]]), "multilabel"),
        (np.array([0, 1]), np.array([[np.nan, 0.5], [0.1, 0.9]]), "multiclass"),
    ],
)
def test_bad_inputs_raise(y, s, kind):
    with pytest.raises(ValueError):
        classification_metrics(y, s, kind)
