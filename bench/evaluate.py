"""A cell's evaluation: every task on every dataset of its plan (:func:`bench.suites.eval_plan`).

- each dataset (the pretraining dataset's splits, the suite's, a task entry's own) is built once per cell
  (:class:`Datasets`, shared by the evaluation at init and the final one) and checked for overlap with the
  pretraining corpus (:mod:`bench.overlap`);
- the frozen features are computed once per (weights, dataset, preprocessing, split) and shared by every task
  reading them (:class:`tasks.features.SharedFeatures`, backed by the cell's on-disk feature cache when
  ``eval.feature_cache``);
- metric keys: ``<prefix><dataset>/<task key>/<metric>`` (no dataset part on the pretraining dataset), each
  run's ``.../time_s``, and ``<prefix>eval/...``: ``encodes`` (forward passes over a split), ``encode_s``
  (their time), ``time_s`` (every task run: encoding, fitting, scoring), ``build_s`` (building the datasets
  and the overlap check, the first time), ``datasets``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import store
from .data import SPLITS, build_dataset
from .overlap import check_overlap
from .suites import EvalDataset, eval_plan

log = logging.getLogger(__name__)

__all__ = ["Datasets", "evaluate"]


def data_key(options: Any) -> str:
    return json.dumps(options, sort_keys=True, default=str)


class Datasets:
    """The datasets of one cell, each built once: the pretraining dataset (given) and the others on demand,
    each checked against the pretraining corpus once."""

    def __init__(self, pretrain: Any, pretrain_splits: dict, pretrain_options: dict):
        self.pretrain = pretrain
        self.pretrain_splits = pretrain_splits
        self.pretrain_options = pretrain_options
        self._built: dict[str, tuple[Any, dict]] = {}
        self._hashes: dict[int, Any] = {}

    def splits(self, entry: EvalDataset) -> dict:
        if entry.data is None:
            return self.pretrain_splits
        k = data_key(entry.data)
        if k not in self._built:
            ds = build_dataset(entry.data)
            check_overlap(self.pretrain, ds, pretrain_name=f"the pretraining corpus (data: {_short(self.pretrain_options)})",
                          other_name=f"dataset {entry.name!r} ({entry.where}; data: {_short(entry.data)})",
                          hashes=self._hashes)
            self._built[k] = (ds, {s: ds.split(s) for s in SPLITS})
        return self._built[k][1]


def _short(options: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items() if v is not None)


def evaluate(model: Any, cfg: Any, datasets: Datasets, cache: Any, prefix: str = "",
             predictions_dir: Path | None = None) -> dict[str, Any]:
    """Run the cell's evaluation plan on ``model``; flat metrics (see the module doc). ``cache``: a
    :class:`tasks.features.SharedFeatures` for this model's weights."""
    import tasks

    t0 = time.perf_counter()
    metrics: dict[str, Any] = {}
    plan = eval_plan(cfg)
    built = [datasets.splits(entry) for entry in plan]  # built (and checked) once per cell
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    for entry, splits in zip(plan, built):
        for run in entry.runs:
            key = f"{prefix}{entry.prefix}{run.key}"
            task = tasks.build(run.name, **run.options)
            t1 = time.perf_counter()
            result = task.run(model, splits, cache=cache)
            metrics.update({f"{key}/{k}": v for k, v in result.items()})
            if predictions_dir is not None and getattr(task, "last_predictions", None) is not None:
                # the contract bench.report's paired bootstrap reads: predictions/<metric prefix, / -> __>.npz
                path = Path(predictions_dir) / (key.replace("/", "__") + ".npz")
                store.atomic_write(path, lambda f: np.savez(f, **task.last_predictions), mode="wb")
            metrics[f"{key}/time_s"] = time.perf_counter() - t1
    stats = cache.stats() if hasattr(cache, "stats") else {}
    metrics.update({
        f"{prefix}eval/time_s": time.perf_counter() - t0,
        f"{prefix}eval/encodes": int(stats.get("encodes", 0)),
        f"{prefix}eval/encode_s": float(stats.get("encode_s", 0.0)),
        f"{prefix}eval/datasets": len(plan),
        f"{prefix}eval/build_s": t_build,
    })
    return metrics
