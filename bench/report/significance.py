"""Is a row's difference from the reference row significant?

Reference. Each row is compared with the baseline row (``baseline=``; default the cells' ``report.baseline``,
else ``clip``; matched exactly, else ignoring case). When the row key has extra columns (e.g.
``data.missing_rate``), the reference is the baseline row with the same extra values, else the only
baseline row; otherwise the row is not tested (and the report says why).

Two tests, both two-sided, marked when ``p < alpha`` (default 0.05) whatever the sign of the difference:

- ``†`` paired t-test over seeds (``scipy.stats.ttest_rel``) on the seeds both rows have. Needs at least two
  pairs, else no marker and a note. When every paired difference is equal (zero variance) the t statistic
  is undefined: p = 1 if the difference is 0, else p = 0 (a constant, non-zero difference on every seed).
- ``‡`` paired bootstrap over test samples, when both cells of a seed saved their predictions (the contract
  below). For each resample (``n_boot``, default 1000; ``numpy.random.default_rng(0)``) the test samples
  are drawn with replacement, the metric is recomputed for both rows on the same samples, and the
  difference is averaged over the paired seeds (each seed has its own draw). p = 2 min(P(d <= 0), P(d >= 0))
  with the add-one correction, capped at 1. Only ``auc``, ``map``, ``acc`` and ``f1`` can be recomputed.

Predictions contract (written by the runner): ``<cell>/predictions/<task key with "/" replaced by
"__">.npz`` (``linear_probe/disease_multilabel`` -> ``predictions/linear_probe__disease_multilabel.npz``),
holding the test split's

- ``y_true``: int class ids ``[N]`` (multiclass) or 0/1 ``[N, C]`` (multilabel);
- ``scores``: float ``[N, C]`` (multilabel: probabilities, a label is predicted when ``score > threshold``;
  multiclass: any scores, prediction = argmax; two classes: column 1 ranks the positive class);
- ``kind``: the string ``"multiclass"`` or ``"multilabel"``;
- optional ``threshold`` (default 0.5) and ``ids`` ``[N]`` (sample ids; when both cells have them the
  samples are aligned by id, else they must be in the same order).

The two cells of a pair must hold the same test samples (equal ``y_true`` after alignment); a pair that
does not is skipped with a note. The metrics are those of ``tasks.metrics`` (macro AUC and AP over labels, a
label with a single class in a resample left out; macro accuracy and F1 at the threshold), computed by its
vectorised :func:`tasks.metrics.metric_on_resamples` (numpy only: the report never imports torch).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import ttest_rel

import tasks.metrics as metrics_impl

from .metrics import BOOTSTRAP_METRICS, metric_name
from .tables import Grouping

log = logging.getLogger(__name__)

DAGGER, DDAGGER = "\u2020", "\u2021"
TTEST, BOOTSTRAP = "ttest", "bootstrap"


@dataclass
class Comparison:
    """One test of ``row`` against ``reference`` on ``column``: p-value (None = not tested, see ``note``),
    number of paired seeds ``n``, mean difference ``diff`` (row minus reference, in metric units)."""

    row: tuple
    reference: tuple | None
    column: str
    test: str
    p: float | None
    n: int
    diff: float | None
    note: str = ""

    def significant(self, alpha: float) -> bool:
        return self.p is not None and math.isfinite(self.p) and self.p < alpha


# -- reference rows -------------------------------------------------------------------------------------------
def reference_rows(grouping: Grouping) -> tuple[dict[tuple, tuple | None], dict[tuple, str]]:
    """Row key -> its reference row key (None for the baseline rows and rows without one) and, for rows
    without a reference, why."""
    base = grouping.baseline_value
    refs: dict[tuple, tuple | None] = {}
    why: dict[tuple, str] = {}
    keys = [k for k, _ in grouping.groups]
    if base is None:
        for k in keys:
            refs[k], why[k] = None, "no baseline row"
        return refs, why
    base_rows = [k for k in keys if k[0] == base]
    for k in keys:
        if k[0] == base:
            refs[k], why[k] = None, "baseline"
            continue
        same = [b for b in base_rows if b[1:] == k[1:]]
        if same:
            refs[k] = same[0]
        elif len(base_rows) == 1:
            refs[k] = base_rows[0]
        else:
            refs[k], why[k] = None, f"no baseline row with the same {', '.join(grouping.headers[1:])}"
    return refs, why


# -- paired t-test over seeds ---------------------------------------------------------------------------------
def paired_ttest(a: dict[Any, float], b: dict[Any, float]) -> tuple[float | None, int, float | None, str]:
    """(p, number of pairs, mean difference a - b, note) over the seeds both dicts have (finite values)."""
    seeds = [s for s in a if s in b and math.isfinite(a[s]) and math.isfinite(b[s])]
    if not seeds:
        return None, 0, None, "no seed in common"
    x = np.array([a[s] for s in seeds], dtype=float)
    y = np.array([b[s] for s in seeds], dtype=float)
    d = x - y
    diff = float(d.mean())
    if len(seeds) < 2:
        return None, len(seeds), diff, "fewer than 2 paired seeds"
    if np.allclose(d, d[0], rtol=0, atol=1e-12 * max(1.0, float(np.abs(np.r_[x, y]).max()))):
        return (1.0 if abs(d[0]) <= 1e-12 else 0.0), len(seeds), diff, "zero variance of the differences"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_rel(x, y).pvalue)
    return p, len(seeds), diff, ""


# -- predictions ----------------------------------------------------------------------------------------------
@dataclass
class Predictions:
    y_true: np.ndarray
    scores: np.ndarray
    kind: str
    threshold: float = 0.5
    ids: np.ndarray | None = None


def predictions_path(cell_dir: Path, task_key: str) -> Path:
    """``<cell>/predictions/<task key with / replaced by __>.npz``."""
    return Path(cell_dir) / "predictions" / (task_key.replace("/", "__") + ".npz")


def load_predictions(cell_dir: Path, task_key: str) -> Predictions | None:
    """The saved test predictions of one task of one cell, or None when there are none. A file that breaks
    the contract raises ``ValueError`` naming the file and the problem."""
    path = predictions_path(cell_dir, task_key)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("y_true", "scores", "kind") if k not in z.files]
            if missing:
                raise ValueError(f"{path}: missing array(s) {missing}; needs y_true, scores, kind")
            y, s, kind = np.asarray(z["y_true"]), np.asarray(z["scores"], dtype=float), str(z["kind"])
            thr = float(z["threshold"]) if "threshold" in z.files else 0.5
            ids = np.asarray(z["ids"]) if "ids" in z.files else None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read predictions: {e}") from e
    if kind not in ("multiclass", "multilabel"):
        raise ValueError(f"{path}: kind={kind!r}; allowed: multiclass, multilabel")
    if s.ndim != 2 or len(s) != len(y):
        raise ValueError(f"{path}: scores must be [N, C] with N = len(y_true); got {s.shape} and {y.shape}")
    if kind == "multilabel" and y.shape != s.shape:
        raise ValueError(f"{path}: multilabel y_true must be [N, C] like scores; got {y.shape} and {s.shape}")
    if kind == "multiclass" and y.ndim != 1:
        raise ValueError(f"{path}: multiclass y_true must be [N] class ids; got {y.shape}")
    return Predictions(y.astype(np.int64), s, kind, thr, ids)


def _align(a: Predictions, b: Predictions) -> tuple[Predictions, Predictions] | None:
    if a.ids is not None and b.ids is not None:
        if len(a.ids) != len(b.ids) or set(a.ids.tolist()) != set(b.ids.tolist()):
            return None
        oa, ob = np.argsort(a.ids, kind="stable"), np.argsort(b.ids, kind="stable")
        a = Predictions(a.y_true[oa], a.scores[oa], a.kind, a.threshold, a.ids[oa])
        b = Predictions(b.y_true[ob], b.scores[ob], b.kind, b.threshold, b.ids[ob])
    if a.kind != b.kind or a.y_true.shape != b.y_true.shape or not np.array_equal(a.y_true, b.y_true):
        return None
    if a.scores.shape != b.scores.shape:
        return None
    return a, b


# -- metrics on resamples (tasks.metrics, the one implementation) ---------------------------------------------
def metric_on_resamples(p: Predictions, metric: str, idx: np.ndarray) -> np.ndarray:
    """``metric`` (auc, map, acc, f1) of predictions ``p`` on each row of sample indices ``idx`` [B, n]
    (:func:`tasks.metrics.metric_on_resamples`)."""
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"metric {metric!r} cannot be recomputed from predictions; allowed: {BOOTSTRAP_METRICS}")
    return metrics_impl.metric_on_resamples(p.y_true, p.scores, p.kind, metric, idx, p.threshold)


def point_metric(p: Predictions, metric: str) -> float:
    """The metric on all test samples (equals the task's metric for predictions that follow the contract)."""
    return float(metric_on_resamples(p, metric, np.arange(len(p.y_true))[None, :])[0])


def paired_bootstrap(pairs: list[tuple[Predictions, Predictions]], metric: str, n_boot: int = 1000,
                     seed: int = 0) -> tuple[float, float]:
    """(p, observed difference a - b averaged over pairs) of the paired bootstrap described in the module
    docstring."""
    rng = np.random.default_rng(seed)
    deltas = np.zeros(n_boot)
    observed = 0.0
    for a, b in pairs:
        n = len(a.y_true)
        observed += point_metric(a, metric) - point_metric(b, metric)
        step = metrics_impl.resample_chunk(n, a.scores.shape[1] if metric in ("acc", "f1") else 1)
        for start in range(0, n_boot, step):
            idx = rng.integers(0, n, size=(min(step, n_boot - start), n))
            deltas[start:start + len(idx)] += metric_on_resamples(a, metric, idx) - metric_on_resamples(b, metric, idx)
    deltas /= len(pairs)
    observed /= len(pairs)
    d = deltas[np.isfinite(deltas)]
    if len(d) == 0:
        return math.nan, observed
    low = (1 + np.sum(d <= 0)) / (1 + len(d))
    high = (1 + np.sum(d >= 0)) / (1 + len(d))
    return float(min(1.0, 2 * min(low, high))), observed


# -- all comparisons of a table -------------------------------------------------------------------------------
class _PredictionCache:
    def __init__(self, root: Path):
        self.root, self.cache, self.errors = Path(root), {}, []

    def get(self, cell: str, task_key: str) -> Predictions | None:
        k = (cell, task_key)
        if k not in self.cache:
            try:
                self.cache[k] = load_predictions(self.root / cell, task_key)
            except ValueError as e:
                log.warning("%s", e)
                self.errors.append(str(e))
                self.cache[k] = None
        return self.cache[k]


def compare(results, grouping: Grouping, table, *, n_boot: int = 1000) -> list[Comparison]:
    """Every row of ``table`` against its reference row, for every column with a direction: a t-test over
    seeds and, where predictions were saved, a paired bootstrap."""
    refs, why = reference_rows(grouping)
    by_key = dict(grouping.groups)
    rows = {r.key: r for r in table.rows}
    cache = _PredictionCache(results.root)
    out: list[Comparison] = []
    for row in table.rows:
        ref = refs.get(row.key)
        if ref is None:
            if why.get(row.key) not in (None, "baseline", "no baseline row"):
                out += [Comparison(row.key, None, c.key, TTEST, None, 0, None, why[row.key])
                        for c in table.columns if c.direction]
            continue
        ref_row = rows.get(ref)
        for col in table.columns:
            if not col.direction:
                continue
            a = row.stats[col.key].values
            b = ref_row.stats[col.key].values if ref_row is not None else {}
            p, n, diff, note = paired_ttest(a, b)
            out.append(Comparison(row.key, ref, col.key, TTEST, p, n, diff, note))
            metric = metric_name(col.key)
            task_key = col.key.rsplit("/", 1)[0] if "/" in col.key else ""
            if metric not in BOOTSTRAP_METRICS or task_key not in results.tasks:
                continue
            seeds = {}
            for which, key in (("a", row.key), ("b", ref)):
                cells = by_key[key]
                cells = cells[cells["state"] == "done"]
                seeds[which] = {cells.at[i, "seed"]: cells.at[i, "cell"] for i in cells.index}
            pairs, skipped = [], []
            for s in sorted(set(seeds["a"]) & set(seeds["b"]), key=str):
                pa, pb = cache.get(seeds["a"][s], task_key), cache.get(seeds["b"][s], task_key)
                if pa is None or pb is None:
                    continue
                aligned = _align(pa, pb)
                if aligned is None:
                    skipped.append(f"seed {s}: test samples differ")
                    continue
                pairs.append(aligned)
                for pred, stat_values in ((pa, a), (pb, b)):
                    saved = stat_values.get(s)
                    if saved is not None and math.isfinite(saved):
                        recomputed = point_metric(pred, metric)
                        if math.isfinite(recomputed) and abs(recomputed - saved) > 1e-6:
                            log.warning("%s seed %s: %s recomputed from predictions = %.6f, metrics.json = %.6f",
                                        col.key, s, metric, recomputed, saved)
            if not pairs:
                if skipped:
                    out.append(Comparison(row.key, ref, col.key, BOOTSTRAP, None, 0, None, "; ".join(skipped)))
                continue
            p, diff = paired_bootstrap(pairs, metric, n_boot=n_boot)
            out.append(Comparison(row.key, ref, col.key, BOOTSTRAP, p, len(pairs), diff, "; ".join(skipped)))
    return out


def markers(comparisons: list[Comparison], alpha: float) -> dict[tuple[tuple, str], str]:
    """(row key, column) -> ``†`` (t-test), ``‡`` (bootstrap) or both, for the significant comparisons."""
    out: dict[tuple[tuple, str], str] = {}
    for c in comparisons:
        if c.significant(alpha):
            sym = DAGGER if c.test == TTEST else DDAGGER
            cur = out.get((c.row, c.column), "")
            out[(c.row, c.column)] = "".join(x for x in (DAGGER, DDAGGER) if x in cur + sym)
    return out
