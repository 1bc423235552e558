"""Classification metrics, as the MGLL downstream code defines them (paper.md section 2.6), with one fix:
a label whose ``y_true`` has a single class is left out of the macro averages (and counted) instead of
turning AUC and mAP into NaN. The one implementation of these metrics in the project: the tasks, the
bootstrap intervals below and the report's significance tests (``bench.report.significance``) all call
it. It needs numpy only (no torch, no sklearn), so ``import tasks.metrics`` is cheap, and it is
vectorised over resamples: :func:`metric_on_resamples` computes a metric on ``B`` index draws at once.

Definitions (``C`` classes or labels, ``N`` samples):

- ``auc``: macro average over labels of the ROC AUC per label (the Mann-Whitney statistic with average
  ranks for ties, equal to ``sklearn.metrics.roc_auc_score``). Multi-class with ``C > 2``: one-vs-rest per
  class (class ``c`` positive, column ``scores[:, c]``), which equals sklearn's
  ``roc_auc_score(..., multi_class="ovr", average="macro")`` when every class is present. Binary
  (``C == 2``): ``roc_auc_score(y, scores[:, 1])``. Multi-label: per label column.
- ``map``: the same macro average of the average precision ``sum_k (R_k - R_{k-1}) P_k`` over distinct
  score thresholds (equal to ``sklearn.metrics.average_precision_score``).
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
``numpy.random.default_rng(seed)``; per resample the metrics are recomputed (same definitions, same skipping
rule) and the 2.5th and 97.5th percentiles of the finite values are reported.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

Kind = Literal["multiclass", "multilabel"]
KINDS = ("multiclass", "multilabel")
CI_METRICS = ("auc", "map", "acc", "f1")
#: at most about this many array elements per chunk of resamples (bounds the bootstrap's memory)
CHUNK_ELEMENTS = 2_000_000

__all__ = ["CI_METRICS", "KINDS", "ap_rows", "auc_ap_rows", "auc_rows", "classification_metrics", "fast_ap",
           "fast_auc", "metric_on_resamples", "metrics_on_resamples", "ranking_columns", "validate"]


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
    y, s = validate(y_true, scores, kind)
    point = metrics_on_resamples(y, s, kind, CI_METRICS, np.arange(len(y))[None, :], threshold)
    out: dict[str, float | int] = {m: float(point[m][0]) for m in CI_METRICS}
    Y, _ = ranking_columns(y, s, kind)
    out["n_labels_skipped"] = int(np.sum(Y.min(axis=0) == Y.max(axis=0)))
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
def validate(y_true: np.ndarray, scores: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``(y, scores)`` as int64 / float64 arrays; ``ValueError`` naming the problem when they break the
    contract of :func:`classification_metrics`."""
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
    else:
        if y.shape != (n, c):
            raise ValueError(f"multilabel y_true must have the shape of scores {s.shape}, got {y.shape}")
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("multilabel y_true must be 0/1")
    return y.astype(np.int64), s


# -- per-label ranking metrics, vectorised over rows -----------------------------------------------------------
def ranking_columns(y: np.ndarray, s: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The 0/1 targets ``[N, L]`` and the scores each label is ranked by: binary -> the positive column only."""
    if kind == "multilabel":
        return y, s
    if s.shape[1] == 2:
        return (y == 1).astype(np.int64)[:, None], s[:, 1:2]
    return np.eye(s.shape[1], dtype=np.int64)[y], s


def auc_ap_rows(Y: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision of each row of 0/1 targets ``Y`` [B, n] ranked by scores ``S`` [B, n],
    from one sort per row; NaN for a row with a single class.

    Ties form groups of equal scores. AUC is the Mann-Whitney statistic with each sample at its group's
    average rank (equal to ``sklearn.metrics.roc_auc_score``); AP is ``sum_k (R_k - R_{k-1}) P_k`` over the
    distinct scores taken as thresholds from the highest down (equal to ``average_precision_score``): each
    positive contributes ``1 / n1`` times the precision at its group's score."""
    b, n = Y.shape
    order = np.argsort(S, axis=1, kind="stable")
    ss = np.take_along_axis(S, order, axis=1)
    yy = np.take_along_axis(Y, order, axis=1).astype(float)
    pos = np.broadcast_to(np.arange(n), (b, n))
    starts = np.ones((b, n), dtype=bool)
    starts[:, 1:] = ss[:, 1:] != ss[:, :-1]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)  # first position of each sample's group
    ends = np.ones((b, n), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    last = np.minimum.accumulate(np.where(ends, pos, n)[:, ::-1], axis=1)[:, ::-1]  # last position of it
    n1 = yy.sum(axis=1)
    n0 = n - n1
    positives_below = np.take_along_axis(np.cumsum(yy, axis=1) - yy, first, axis=1)  # positives scored lower
    precision = (n1[:, None] - positives_below) / (n - first)  # at the threshold "score >= the group's score"
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (((first + last) / 2 + 1) * yy).sum(axis=1) - n1 * (n1 + 1) / 2
        auc = auc / (n1 * n0)
        ap = (yy * precision).sum(axis=1) / n1
    single = (n1 == 0) | (n0 == 0)
    auc[single] = np.nan
    ap[single] = np.nan
    return auc, ap


def auc_rows(Y: np.ndarray, S: np.ndarray) -> np.ndarray:
    """ROC AUC of each row (see :func:`auc_ap_rows`)."""
    return auc_ap_rows(Y, S)[0]


def ap_rows(Y: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Average precision of each row (see :func:`auc_ap_rows`)."""
    return auc_ap_rows(Y, S)[1]


def fast_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC of one 0/1 vector ``y`` ranked by ``s`` (equal to sklearn's ``roc_auc_score``)."""
    return float(auc_rows(np.asarray(y)[None, :], np.asarray(s, dtype=float)[None, :])[0])


def fast_ap(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision of one 0/1 vector ``y`` ranked by ``s`` (equal to sklearn's
    ``average_precision_score``)."""
    return float(ap_rows(np.asarray(y)[None, :], np.asarray(s, dtype=float)[None, :])[0])


def _macro(per_label: list[np.ndarray]) -> np.ndarray:
    """Mean over labels ignoring NaN (a skipped label); NaN where every label is skipped."""
    m = np.vstack(per_label)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(m, axis=0)


def metrics_on_resamples(y: np.ndarray, s: np.ndarray, kind: str, metrics, idx: np.ndarray,
                         threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Each of ``metrics`` on each row of sample indices ``idx`` [B, n] (``auc`` and ``map`` share their sorts)."""
    out: dict[str, np.ndarray] = {}
    ranking = [m for m in metrics if m in ("auc", "map")]
    if ranking:
        Y, S = ranking_columns(y, s, kind)
        per_label = [auc_ap_rows(Y[:, j][idx], S[:, j][idx]) for j in range(Y.shape[1])]
        for m in ranking:
            out[m] = _macro([p[0 if m == "auc" else 1] for p in per_label])
    for m in metrics:
        if m not in out:
            out[m] = metric_on_resamples(y, s, kind, m, idx, threshold)
    return out


def metric_on_resamples(y: np.ndarray, s: np.ndarray, kind: str, metric: str, idx: np.ndarray,
                        threshold: float = 0.5) -> np.ndarray:
    """``metric`` (auc, map, acc, f1) on each row of sample indices ``idx`` [B, n] (``y``, ``s`` as returned
    by :func:`validate`); ``idx = arange(N)[None]`` gives the point value."""
    if metric in ("auc", "map"):
        return metrics_on_resamples(y, s, kind, (metric,), idx, threshold)[metric]
    if kind == "multiclass":
        pred = s.argmax(axis=1)
        if metric == "acc":
            return (y == pred)[idx].mean(axis=1)
        c = s.shape[1]
        T, P = np.eye(c, dtype=bool)[y], np.eye(c, dtype=bool)[pred]
    else:
        T, P = y.astype(bool), s > threshold
        if metric == "acc":
            return (T == P)[idx].mean(axis=(1, 2))  # = mean over labels of the per-label accuracy
    if metric != "f1":
        raise ValueError(f"metric {metric!r} cannot be computed from predictions; allowed: {list(CI_METRICS)}")
    Ti, Pi = T[idx], P[idx]
    tp = (Ti & Pi).sum(axis=1)
    fp = (~Ti & Pi).sum(axis=1)
    fn = (Ti & ~Pi).sum(axis=1)
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)
    return _macro(list(f1.T))


def resample_chunk(n: int, width: int) -> int:
    """How many resamples of ``n`` samples x ``width`` columns to draw at once (about CHUNK_ELEMENTS)."""
    return max(1, int(CHUNK_ELEMENTS // max(1, n * width)))


# -- bootstrap intervals ---------------------------------------------------------------------------------------
def _bootstrap(y: np.ndarray, s: np.ndarray, kind: str, threshold: float, n_boot: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    n = len(y)
    values = np.empty((n_boot, len(CI_METRICS)))
    step = resample_chunk(n, s.shape[1])
    for start in range(0, n_boot, step):
        idx = rng.integers(0, n, size=(min(step, n_boot - start), n))
        got = metrics_on_resamples(y, s, kind, CI_METRICS, idx, threshold)
        for j, name in enumerate(CI_METRICS):
            values[start:start + len(idx), j] = got[name]
    out: dict[str, float] = {}
    for j, name in enumerate(CI_METRICS):
        col = values[:, j]
        col = col[np.isfinite(col)]
        low, high = (np.percentile(col, [2.5, 97.5]) if len(col) else (float("nan"), float("nan")))
        out[f"{name}_ci_low"] = float(low)
        out[f"{name}_ci_high"] = float(high)
    return out
