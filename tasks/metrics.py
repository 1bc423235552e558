"""Classification metrics, as the MGLL downstream code defines them (paper.md section 2.6), with one fix:
a label whose ``y_true`` has a single class is left out of the macro averages (and counted) instead of
turning AUC and mAP into NaN.

Definitions (``C`` classes or labels, ``N`` samples):

- ``auc``: macro average over labels of ``sklearn.metrics.roc_auc_score`` per label. Multi-class with
  ``C > 2``: one-vs-rest per class (class ``c`` positive, column ``scores[:, c]``), which equals sklearn's
  ``roc_auc_score(..., multi_class="ovr", average="macro")`` when every class is present. Binary (``C == 2``):
  ``roc_auc_score(y, scores[:, 1])``. Multi-label: per label column.
- ``map``: the same macro average with ``sklearn.metrics.average_precision_score``.
- ``n_labels_skipped``: how many labels (classes for multi-class one-vs-rest; the positive class for binary)
  have only one class present in ``y_true`` and were therefore left out of ``auc`` and ``map``. When every
  label is skipped, ``auc`` and ``map`` are NaN and a warning is logged.
- ``acc``: multi-class: top-1 accuracy over samples (micro), ``mean(argmax(scores) == y)``. Multi-label: macro
  accuracy at the threshold (default 0.5; a label is predicted when ``score > threshold``, strictly, as
  torchmetrics does): the mean over labels of the per-label accuracy ``(TP + TN) / N``.
- ``f1``: macro F1 with ``F1 = 2 TP / (2 TP + FP + FN)`` per class (multi-class, predictions = argmax) or per
  label (multi-label, predictions = ``score > threshold``); a class/label with ``TP + FP + FN = 0`` (never
  true, never predicted) is left out of the mean. This equals sklearn's ``f1_score(average="macro")``
  (multi-class, default labels) and ``f1_score(average="macro", zero_division=np.nan)`` (multi-label).

``ci=True`` adds percentile-bootstrap 95 % intervals ``<metric>_ci_low`` / ``<metric>_ci_high`` for
``auc``, ``map``, ``acc`` and ``f1``: ``n_boot`` resamples of the samples with replacement drawn from
``numpy.random.default_rng(seed)``; per resample the metrics are recomputed (with the same skipping rule, by
an exact rank-based AUC and a step-wise AP that match sklearn) and the 2.5th and 97.5th percentiles of the
finite values are reported.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

log = logging.getLogger(__name__)

Kind = Literal["multiclass", "multilabel"]
KINDS = ("multiclass", "multilabel")
CI_METRICS = ("auc", "map", "acc", "f1")


def classification_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    kind: Kind,
    *,
    ci: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    threshold: float = 0.5,
) -> dict[str, float | int]:
    """``auc``, ``map``, ``acc``, ``f1`` and ``n_labels_skipped`` (see the module docstring), plus
    ``<metric>_ci_low`` / ``<metric>_ci_high`` when ``ci``.

    ``y_true``: int ``[N]`` class indices (multi-class) or 0/1 ``[N, C]`` (multi-label). ``scores``: float
    ``[N, C]`` (probabilities; for multi-class any scores whose argmax is the prediction and whose columns
    rank the samples). ``threshold`` applies to multi-label ``acc``/``f1`` only.
    """
    y, s = _validate(y_true, scores, kind)
    out: dict[str, float | int] = _point(y, s, kind, threshold)
    if not math.isfinite(out["auc"]):
        log.warning(
            "classification_metrics: all %d label(s) have a single class in y_true; auc and map are NaN",
            out["n_labels_skipped"],
        )
    if ci:
        if n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {n_boot}")
        out.update(_bootstrap(y, s, kind, threshold, n_boot, seed))
    return out


# -- input checks ---------------------------------------------------------------------------------------------
def _validate(y_true: np.ndarray, scores: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not allowed; allowed: {list(KINDS)}")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y_true)
    if s.ndim != 2 or s.shape[0] == 0:
        raise ValueError(f"scores must be a non-empty [N, C] array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf")
    n, c = s.shape
    if kind == "multiclass":
        if c < 2:
            raise ValueError(f"multiclass scores need at least 2 columns, got {c}")
        if y.shape != (n,):
            raise ValueError(f"multiclass y_true must have shape [N]={n}, got {y.shape}")
        if not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= c:
            raise ValueError(f"multiclass y_true must hold integer class indices in [0, {c}), got {np.unique(y)[:10]}")
        y = y.astype(np.int64)
    else:
        if y.shape != (n, c):
            raise ValueError(f"multilabel y_true must have the shape of scores {s.shape}, got {y.shape}")
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("multilabel y_true must be 0/1")
        y = y.astype(np.int64)
    return y, s


# -- per-label columns ---------------------------------------------------------------------------------------
def _ranking_columns(y: np.ndarray, s: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The 0/1 targets and scores each label is ranked by: binary -> the positive column only."""
    if kind == "multilabel":
        return y, s
    if s.shape[1] == 2:
        return (y == 1).astype(np.int64)[:, None], s[:, 1:2]
    return np.eye(s.shape[1], dtype=np.int64)[y], s


def _point(y: np.ndarray, s: np.ndarray, kind: str, threshold: float) -> dict[str, float | int]:
    Y, S = _ranking_columns(y, s, kind)
    aucs, aps, skipped = [], [], 0
    for j in range(Y.shape[1]):
        yj = Y[:, j]
        if yj.min() == yj.max():
            skipped += 1
            continue
        aucs.append(roc_auc_score(yj, S[:, j]))
        aps.append(average_precision_score(yj, S[:, j]))
    acc, f1 = _acc_f1(y, s, kind, threshold)
    return {
        "auc": float(np.mean(aucs)) if aucs else float("nan"),
        "map": float(np.mean(aps)) if aps else float("nan"),
        "acc": acc,
        "f1": f1,
        "n_labels_skipped": int(skipped),
    }


def _acc_f1(y: np.ndarray, s: np.ndarray, kind: str, threshold: float) -> tuple[float, float]:
    if kind == "multiclass":
        pred = s.argmax(axis=1)
        acc = float(np.mean(pred == y))
        c = s.shape[1]
        T = np.eye(c, dtype=bool)[y]
        P = np.eye(c, dtype=bool)[pred]
    else:
        T = y.astype(bool)
        P = s > threshold
        acc = float(np.mean(T == P))  # = mean over labels of the per-label accuracy (equal N per label)
    tp = np.sum(T & P, axis=0)
    fp = np.sum(~T & P, axis=0)
    fn = np.sum(T & ~P, axis=0)
    denom = 2 * tp + fp + fn
    keep = denom > 0
    f1 = float(np.mean(2 * tp[keep] / denom[keep])) if keep.any() else float("nan")
    return acc, f1


# -- fast exact AUC / AP for the bootstrap -------------------------------------------------------------------
def fast_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney statistic with average ranks for ties (equal to sklearn's)."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    r = rankdata(s)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def fast_ap(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision as sklearn defines it: ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds."""
    order = np.argsort(-s, kind="mergesort")
    ss, yy = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(ss)), len(ss) - 1]
    tps = np.cumsum(yy)[ends]
    precision = tps / (ends + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _fast_point(y: np.ndarray, s: np.ndarray, kind: str, threshold: float) -> tuple[float, float, float, float]:
    Y, S = _ranking_columns(y, s, kind)
    aucs, aps = [], []
    for j in range(Y.shape[1]):
        yj = Y[:, j]
        if yj.min() == yj.max():
            continue
        aucs.append(fast_auc(yj, S[:, j]))
        aps.append(fast_ap(yj, S[:, j]))
    acc, f1 = _acc_f1(y, s, kind, threshold)
    nan = float("nan")
    return (float(np.mean(aucs)) if aucs else nan, float(np.mean(aps)) if aps else nan, acc, f1)


def _bootstrap(y: np.ndarray, s: np.ndarray, kind: str, threshold: float, n_boot: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    n = len(y)
    values = np.empty((n_boot, len(CI_METRICS)))
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        values[b] = _fast_point(y[idx], s[idx], kind, threshold)
    out: dict[str, float] = {}
    for j, name in enumerate(CI_METRICS):
        col = values[:, j]
        col = col[np.isfinite(col)]
        low, high = (np.percentile(col, [2.5, 97.5]) if len(col) else (float("nan"), float("nan")))
        out[f"{name}_ci_low"] = float(low)
        out[f"{name}_ci_high"] = float(high)
    return out
