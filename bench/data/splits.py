"""Train/val/test splits: read from the data (a split column or field), or drawn deterministically by seed.

Drawing (``assign_splits``): samples are grouped by ``patient_id`` (a sample without one is its own group),
the group keys are sorted and shuffled with ``numpy.random.default_rng(split_seed)``, and whole groups are
dealt in that order to ``test`` until it holds ``round(test_fraction * N)`` samples or more, then to ``val``
likewise, and the rest to ``train``. So no patient is in two splits, and the result depends only on the
seed, the fractions and the set of (id, patient) pairs, not on the order of the samples.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Sequence

import numpy as np

from .registry import DataConfigError
from .dataset import MultiGranularDataset
from .sample import SPLITS, Sample
from .table import Interned

log = logging.getLogger(__name__)

# values a split column may hold (case-insensitive) -> our split names
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}

DEFAULT_VAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_SPLIT_SEED = 0


def normalize_split(value: str) -> str:
    """A split column's value -> ``train``/``val``/``test``; anything else raises ValueError naming the
    allowed values."""
    key = str(value).strip().lower()
    if key not in SPLIT_ALIASES:
        raise ValueError(f"split value {value!r} is not one of {sorted(SPLIT_ALIASES)}")
    return SPLIT_ALIASES[key]


def check_fractions(val_fraction: float, test_fraction: float) -> tuple[float, float]:
    for key, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= float(v) < 1.0:
            raise DataConfigError(f"data.{key}={v!r} must be a number in [0, 1)")
    if float(val_fraction) + float(test_fraction) >= 1.0:
        raise DataConfigError(
            f"data.val_fraction + data.test_fraction = {float(val_fraction) + float(test_fraction)} must be < 1 "
            "(some samples must be left for training)"
        )
    return float(val_fraction), float(test_fraction)


def group_key(s: Sample) -> str:
    return _group(s.id, s.patient_id)


def _group(sample_id: str, patient_id: str | None) -> str:
    return f"p:{patient_id}" if patient_id not in (None, "") else f"s:{sample_id}"


def _keys(samples: "Sequence[Sample] | MultiGranularDataset") -> list[str]:
    if isinstance(samples, MultiGranularDataset):  # the columns: no Sample objects built
        return [_group(i, p) for i, p in zip(samples.sample_ids(), samples.patient_ids())]
    return [group_key(s) for s in samples]


def draw_splits(
    samples: "Sequence[Sample] | MultiGranularDataset",
    seed: int = DEFAULT_SPLIT_SEED,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> list[str]:
    """The split of each sample (see the module docstring)."""
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(_keys(samples)):
        groups[key].append(i)
    keys = sorted(groups)
    order = np.random.default_rng(int(seed)).permutation(len(keys))
    n = len(samples)
    quota = {"test": round(test_fraction * n), "val": round(val_fraction * n)}
    out = [""] * n
    filled = {"test": 0, "val": 0}
    stage = [s for s in ("test", "val") if quota[s] > 0]
    for k in order:
        members = groups[keys[k]]
        while stage and filled[stage[0]] >= quota[stage[0]]:
            stage.pop(0)
        name = stage[0] if stage else "train"
        if name != "train":
            filled[name] += len(members)
        for i in members:
            out[i] = name
    return out


def assign_splits(
    dataset: MultiGranularDataset,
    seed: int = DEFAULT_SPLIT_SEED,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> MultiGranularDataset:
    """``dataset`` with a drawn ``split`` per sample (a new container; the input is not modified)."""
    names = draw_splits(dataset, seed, val_fraction, test_fraction)
    out = dataset.with_table(dataset.table.replace(split=Interned.of(names)))
    counts = {name: names.count(name) for name in SPLITS}
    n_groups = len(set(_keys(dataset)))
    log.info(
        "data: drew splits (split_seed=%s, val_fraction=%s, test_fraction=%s, %d groups): %s",
        seed, val_fraction, test_fraction, n_groups, counts,
    )
    return out
