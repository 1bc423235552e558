"""``tasks.metrics`` vectorised over resamples: every row of a batch equals sklearn, a single-class row is NaN,
the bootstrap draws equal the point metric on the drawn samples, and the module stays free of torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from tasks.metrics import auc_ap_rows, classification_metrics, metrics_on_resamples, validate


def test_rows_match_sklearn_with_ties_and_single_class_rows():
    rng = np.random.default_rng(0)
    Y = (rng.random((6, 50)) < 0.4).astype(int)
    S = np.round(rng.normal(size=(6, 50)) + Y, 1)  # many ties
    Y[4] = 0  # single class
    Y[5] = 1
    auc, ap = auc_ap_rows(Y, S)
    for b in range(4):
        assert auc[b] == pytest.approx(roc_auc_score(Y[b], S[b]), abs=1e-12)
        assert ap[b] == pytest.approx(average_precision_score(Y[b], S[b]), abs=1e-12)
    assert np.isnan(auc[4:]).all() and np.isnan(ap[4:]).all()


@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
def test_each_resample_equals_the_point_metric_on_its_samples(kind):
    rng = np.random.default_rng(1)
    if kind == "multiclass":
        y = rng.integers(0, 4, 60)
        s = rng.random((60, 4)) + 0.5 * np.eye(4)[y]
    else:
        y = (rng.random((60, 3)) < 0.4).astype(int)
        s = rng.random((60, 3))
    yv, sv = validate(y, s, kind)
    idx = rng.integers(0, 60, size=(5, 60))
    got = metrics_on_resamples(yv, sv, kind, ("auc", "map", "acc", "f1"), idx)
    for b in range(5):
        want = classification_metrics(y[idx[b]], s[idx[b]], kind)
        for m in ("auc", "map", "acc", "f1"):
            assert got[m][b] == pytest.approx(want[m], abs=1e-12, nan_ok=True), (m, b)
    if kind == "multiclass":
        assert got["f1"][0] == pytest.approx(f1_score(y[idx[0]], s[idx[0]].argmax(1), average="macro"), abs=1e-12)


def test_import_tasks_metrics_loads_neither_torch_nor_sklearn():
    code = "import sys, tasks.metrics; print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
