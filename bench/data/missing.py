"""Missing levels (the paper's robustness experiment): drop a level's text for a fraction of training samples.

Rule, per level ``g`` in ``missing_levels`` (default: every level of the dataset), independently:
among the *training* samples that have a text at ``g``, the ``round(missing_rate * n)`` whose key
``blake2b(f"{missing_seed}/{g}/{id}")`` is smallest lose that text (``texts[g] = None``). So the choice
depends only on the seed, the level and the sample ids (not on sample order or on the other levels); a
sample can lose several or all of its levels; ``val``/``test`` samples are never touched; labels are kept
(only the text goes missing). The result is a new container; the input is not modified.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Sequence

import numpy as np

from .registry import DataConfigError
from .dataset import MultiGranularDataset

log = logging.getLogger(__name__)


def _key(seed: int, level: str, sample_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}/{level}/{sample_id}".encode(), digest_size=8).digest()


def check_rate(rate: object) -> float:
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= float(rate) <= 1.0:
        raise DataConfigError(f"data.missing_rate={rate!r} must be a number in [0, 1]")
    return float(rate)


def drop_texts(
    dataset: MultiGranularDataset,
    levels: Sequence[str],
    rate: float,
    seed: int = 0,
    split: str = "train",
) -> tuple[MultiGranularDataset, dict[str, int]]:
    """``dataset`` with texts dropped as described in the module docstring, and the number of texts dropped
    per level."""
    rate = check_rate(rate)
    table = dataset.table
    in_split = table.split.where(split)
    ids = None
    counts: dict[str, int] = {}
    texts = dict(table.texts)
    for level in levels:
        col = texts.get(level)
        cand = np.flatnonzero(in_split & (col.codes >= 0)) if col is not None else np.zeros(0, np.int64)
        k = round(rate * len(cand))
        if ids is None and k:
            ids = dataset.sample_ids()
        chosen = sorted(cand.tolist(), key=lambda i: _key(seed, level, ids[i]))[:k]
        counts[level] = len(chosen)
        if chosen:
            mask = np.zeros(len(dataset), dtype=bool)
            mask[chosen] = True
            texts[level] = col.replaced(mask, None)
    log.info("data: missing_rate=%s (missing_seed=%s): dropped texts per level on %s: %s", rate, seed, split, counts)
    return dataset.with_table(table.replace(texts=texts)), counts
