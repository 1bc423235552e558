"""Linear probe: a logistic-regression classifier on frozen image features.

Protocol:
1. Frozen features ``model.encode_image(model.preprocess(images))`` of train, val and test (batched,
   ``no_grad``, eval mode; from the :class:`~tasks.features.FeatureCache` when one is given).
2. ``label_fraction < 1``: a stratified deterministic subsample of train (:mod:`tasks.sampling`).
3. Features standardised with the mean/std of that training subset.
4. One L2-regularised logistic regression per C of ``c_grid`` (multinomial softmax for multi-class, one
   binary model per label for multi-label; scikit-learn's objective, solved by Newton's method by default,
   see :mod:`tasks.logreg`), fitted on the training subset only.
5. C chosen by ``select_metric`` on val; ties (a saturated AUC of 1.0 is common) are broken by the val
   log-loss (lower wins: a proper score, so a near-uniform over-regularised model does not win a tie with
   a confident correct one), then by the smaller C. There
   is no refit on train+val: the chosen model *is* the one fitted on train, so a 1 % label fraction stays
   1 % of labels (train+val would add all of val's labels). The val split is used for selection only.
6. One pass on test: :func:`tasks.metrics.classification_metrics`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .base import Metrics, Task
from .encode import model_device
from .features import FeatureCache, image_features, model_hash_for
from .logreg import SOLVERS, choose_solver, fit_path
from .metrics import CI_METRICS, classification_metrics
from .options import check_bool, check_choice, check_float, check_float_tuple, check_int, check_str
from .registry import register
from .sampling import label_fraction_indices

log = logging.getLogger(__name__)

DEFAULT_C_GRID = tuple(float(c) for c in np.logspace(-3, 3, 10))


@register("linear_probe")
class LinearProbe(Task):
    """Frozen image features -> logistic regression, C chosen on val, evaluated once on test."""

    @dataclass
    class Options:
        target: str
        """Downstream task name in the datasets' ``task_specs`` (e.g. ``disease_multilabel``)."""
        c_grid: tuple[float, ...] = field(default_factory=lambda: DEFAULT_C_GRID)
        """Inverse L2 strengths searched on val (default: 10 log-spaced values from 1e-3 to 1e3)."""
        c: float | None = None
        """A fixed C: no search, and no val split needed."""
        select_metric: str = "auc"
        """Validation metric that picks C: auc, map, acc or f1."""
        label_fraction: float = 1.0
        """Fraction of the train split used, in (0, 1]; stratified, deterministic given ``seed``."""
        seed: int = 0
        """Seed of the label-fraction subsample and of the bootstrap."""
        batch_size: int = 64
        """Feature-extraction batch."""
        solver: str = "auto"
        """newton, torch (L-BFGS), sklearn (lbfgs), or auto (newton unless the problem is too large)."""
        max_iter: int = 1000
        """Iteration cap of the solver."""
        standardize: bool = True
        """Standardise features with the training subset's mean and std."""
        ci: bool = False
        """Add bootstrap 95 % intervals to the test metrics."""
        n_boot: int = 1000
        """Bootstrap resamples (with ``ci``)."""

    def validate(self) -> None:
        o, t = self.options, self.name
        o.target = check_str(t, "target", o.target)
        o.c_grid = check_float_tuple(t, "c_grid", o.c_grid)
        if o.c is not None:
            o.c = check_float(t, "c", o.c, low=0.0, low_open=True)
        o.select_metric = check_choice(t, "select_metric", o.select_metric, CI_METRICS)
        o.label_fraction = check_float(t, "label_fraction", o.label_fraction, low=0.0, high=1.0, low_open=True)
        o.seed = check_int(t, "seed", o.seed)
        o.batch_size = check_int(t, "batch_size", o.batch_size, minimum=1)
        o.solver = check_choice(t, "solver", o.solver, SOLVERS)
        o.max_iter = check_int(t, "max_iter", o.max_iter, minimum=1)
        o.standardize = check_bool(t, "standardize", o.standardize)
        o.ci = check_bool(t, "ci", o.ci)
        o.n_boot = check_int(t, "n_boot", o.n_boot, minimum=1)

    def needed_splits(self, splits: Mapping[str, Any]) -> tuple[str, ...]:
        return ("train", "val", "test") if self.options.c is None else ("train", "test")

    def run(self, model: Any, splits: Mapping[str, Any], cache: FeatureCache | None = None) -> Metrics:
        o = self.options
        search = o.c is None
        names = ("train", "val", "test") if search else ("train", "test")
        data = dict(zip(names, self.require_splits(splits, *names)))
        spec = self.target_spec(data["train"], o.target)
        for split, ds in data.items():
            if self.target_spec(ds, o.target) != spec:
                raise ValueError(f"task {self.name!r}: split {split!r} declares {o.target!r} differently from train")
        kind, n_out = spec.kind, len(spec.classes)
        y = {s: ds.task_targets(o.target) for s, ds in data.items()}

        sub = label_fraction_indices(y["train"], kind, o.label_fraction, o.seed)
        model_hash = model_hash_for(cache, model) if cache is not None else None
        feats, cached = {}, []
        for split, ds in data.items():
            if split == "train" and cache is None and len(sub) < len(ds):
                ds = ds.subset(sub)  # no cache: encode only the labelled subsample
            res = image_features(model, ds, o.batch_size, cache, split=split, model_hash=model_hash)
            feats[split] = res.features
            cached.append(res.cached)
        if len(feats["train"]) != len(sub):
            feats["train"] = feats["train"][sub]
        y["train"] = y["train"][sub]

        x_train, transform = _standardizer(feats["train"], o.standardize)
        device = model_device(model)
        solver = choose_solver(o.solver, x_train.shape[1], kind, n_out)
        grid = o.c_grid if search else (o.c,)
        log.info(
            "linear probe %s (%s, %d classes): %d train samples (fraction %g), dim %d, %d C value(s), solver %s",
            o.target, kind, n_out, len(x_train), o.label_fraction, x_train.shape[1], len(grid), solver,
        )
        fitted = fit_path(x_train, y["train"], kind, n_out, grid, solver=solver, max_iter=o.max_iter, device=device)

        out: Metrics = {}
        best = 0
        if search:
            x_val = transform(feats["val"])
            val_probs = [m.predict_proba(x_val) for m in fitted]
            val_scores = [_score(classification_metrics(y["val"], p, kind), o.select_metric) for p in val_probs]
            val_losses = [log_loss(y["val"], p, kind) for p in val_probs]
            best = _best_index(val_scores, val_losses, grid)
            if math.isinf(val_scores[best]):
                log.warning("linear probe: val %s is NaN for every C (one class per label in val?); using C=%g",
                            o.select_metric, grid[best])
            out[f"val_{o.select_metric}"] = float(val_scores[best]) if math.isfinite(val_scores[best]) else float("nan")
            out["val_log_loss"] = float(val_losses[best])
        test_scores = fitted[best].predict_proba(transform(feats["test"]))
        out.update(classification_metrics(y["test"], test_scores, kind, ci=o.ci, n_boot=o.n_boot, seed=o.seed))
        self.record_predictions(y["test"], test_scores, kind)
        out.update(
            c=float(grid[best]),
            select_metric=o.select_metric if search else "fixed",
            fit_on="train",
            label_fraction=float(o.label_fraction),
            seed=int(o.seed),
            n_train=int(len(sub)),
            n_train_total=int(len(data["train"])),
            n_val=int(len(data["val"])) if search else 0,
            n_test=int(len(data["test"])),
            feature_dim=int(x_train.shape[1]),
            solver=solver,
            features_cached=int(cache is not None and all(cached)),
        )
        return out


def _standardizer(x_train: np.ndarray, standardize: bool):
    """Return standardised training features and the same transform for other splits."""
    x_train = np.asarray(x_train, dtype=np.float64)
    if not standardize:
        return x_train, lambda x: np.asarray(x, dtype=np.float64)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std < 1e-12] = 1.0

    def transform(x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - mean) / std

    return transform(x_train), transform


def _score(metrics: Mapping[str, Any], name: str) -> float:
    v = float(metrics[name])
    return v if math.isfinite(v) else -math.inf


def log_loss(y: np.ndarray, probs: np.ndarray, kind: str) -> float:
    """Mean negative log-likelihood: categorical (multi-class) or per-label binary, averaged (multi-label)."""
    p = np.clip(probs, 1e-12, 1.0 - 1e-12)
    if kind == "multiclass":
        return float(-np.mean(np.log(p[np.arange(len(y)), y])))
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _best_index(scores: list[float], losses: list[float], grid: tuple[float, ...]) -> int:
    """Highest validation metric; ties (e.g. a saturated AUC of 1) -> the lowest validation log-loss, then
    the smallest C."""
    order = sorted(range(len(grid)), key=lambda i: (-scores[i], losses[i], grid[i]))
    return order[0]
