"""Missing levels (the paper's robustness experiment): drop a level's text for a fraction of training samples.

Rule, per level ``g`` in ``missing_levels`` (default: every level of the dataset), independently:
among the *training* samples that have a text at ``g``, the ``round(missing_rate * n)`` whose key
``blake2b(f"{missing_seed}/{g}/{id}")`` is smallest lose that text (``texts[g] = None``). So the choice
depends only on the seed, the level and the sample ids (not on sample order or on the other levels); a
sample can lose several or all of its levels; ``val``/``test`` samples are never touched; labels are kept
(only the text goes missing). Affected samples are replaced by copies; the input samples are not modified.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Sequence

from .registry import DataConfigError
from .sample import Sample

log = logging.getLogger(__name__)


def _key(seed: int, level: str, sample_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}/{level}/{sample_id}".encode(), digest_size=8).digest()


def check_rate(rate: object) -> float:
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= float(rate) <= 1.0:
        raise DataConfigError(f"data.missing_rate={rate!r} must be a number in [0, 1]")
    return float(rate)


def drop_texts(
    samples: Sequence[Sample],
    levels: Sequence[str],
    rate: float,
    seed: int = 0,
    split: str = "train",
) -> tuple[list[Sample], dict[str, int]]:
    """Copies of ``samples`` with texts dropped as described in the module docstring, and the number of
    texts dropped per level."""
    rate = check_rate(rate)
    drop: dict[int, list[str]] = {}
    counts: dict[str, int] = {}
    for level in levels:
        cand = [i for i, s in enumerate(samples) if s.split == split and s.texts.get(level) is not None]
        k = round(rate * len(cand))
        chosen = sorted(cand, key=lambda i: _key(seed, level, samples[i].id))[:k]
        counts[level] = len(chosen)
        for i in chosen:
            drop.setdefault(i, []).append(level)
    out = list(samples)
    for i, lv in drop.items():
        s = samples[i]
        out[i] = dataclasses.replace(s, texts={g: (None if g in lv else t) for g, t in s.texts.items()})
    log.info("data: missing_rate=%s (missing_seed=%s): dropped texts per level on %s: %s", rate, seed, split, counts)
    return out, counts
