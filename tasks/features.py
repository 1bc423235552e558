"""Frozen image features, with an on-disk cache so that re-evaluating a checkpoint computes nothing twice.

``FeatureCache(root)`` stores one ``.npy`` per (model weights, model config, preprocessing, dataset
content, split) key -- see :func:`tasks.fingerprint.feature_key_parts` -- plus a ``.json`` with the key's
components. Writes are atomic (``bench.store.atomic_write``: temporary file in the same folder, then
``os.replace``; mode 0666 less the umask), so concurrent evaluations of the same cell never read a
half-written file. Arrays are read with ``allow_pickle=False``. ``hits`` / ``misses`` / ``writes`` count what
happened.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.store import atomic_write

from .encode import encode_images
from .fingerprint import digest, feature_key_parts, model_fingerprint

log = logging.getLogger(__name__)

__all__ = ["FeatureCache", "FeatureResult", "extract_image_features", "image_features", "model_fingerprint"]


class FeatureCache:
    """A folder of cached feature arrays keyed by content hashes.

    Attributes ``hits``, ``misses`` and ``writes`` count lookups that found a valid array, lookups that did
    not, and arrays stored.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.writes = 0

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r}, hits={self.hits}, misses={self.misses}, writes={self.writes})"

    def stats(self) -> dict[str, int]:
        """The counters as a dict."""
        return {"hits": self.hits, "misses": self.misses, "writes": self.writes}

    def reset_counters(self) -> None:
        self.hits = self.misses = self.writes = 0

    def path(self, key: str, split: str = "") -> Path:
        """Where the array for ``key`` lives (the split name is in the file name for humans)."""
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", split)[:40]
        return self.root / (f"{tag}-{key}.npy" if tag else f"{key}.npy")

    def load(self, key: str, split: str = "", n_rows: int | None = None) -> np.ndarray | None:
        """The cached array, or ``None`` (a miss) when absent, unreadable or of the wrong length."""
        path = self.path(key, split)
        if path.is_file():
            try:
                arr = np.load(path, allow_pickle=False)
                if n_rows is None or (arr.ndim == 2 and arr.shape[0] == n_rows):
                    self.hits += 1
                    return arr
                log.warning("feature cache: %s has shape %s, expected %d rows; recomputing", path, arr.shape, n_rows)
            except (OSError, ValueError) as e:
                log.warning("feature cache: cannot read %s (%s); recomputing", path, e)
        self.misses += 1
        return None

    def save(self, key: str, array: np.ndarray, split: str = "", meta: dict[str, Any] | None = None) -> Path:
        """Store ``array`` atomically (and ``meta`` as JSON next to it); returns the ``.npy`` path."""
        path = self.path(key, split)
        if meta is not None:
            text = json.dumps(meta, indent=1, sort_keys=True, default=str)
            atomic_write(path.with_suffix(".json"), lambda f: f.write(text))
        atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False), mode="wb")
        self.writes += 1
        return path


@dataclass
class FeatureResult:
    """Features ``[N, D]`` (float32) and whether they were read from the cache."""

    features: np.ndarray
    cached: bool


def default_split_name(dataset: Any) -> str:
    """The samples' common ``split`` field, else the dataset's name."""
    names = {getattr(s, "split", None) for s in getattr(dataset, "samples", [])}
    if len(names) == 1 and None not in names:
        return str(names.pop())
    return str(getattr(dataset, "name", "dataset"))


def image_features(
    model: Any,
    dataset: Any,
    batch_size: int = 64,
    cache: FeatureCache | None = None,
    *,
    split: str | None = None,
    model_hash: str | None = None,
) -> FeatureResult:
    """Like :func:`extract_image_features`, also saying whether the result came from the cache."""
    split = split or default_split_name(dataset)
    desc = f"features[{split}]"
    if cache is None:
        return FeatureResult(encode_images(model, dataset, batch_size, desc=desc), cached=False)
    parts = feature_key_parts(model, dataset, split, model_hash=model_hash)
    key = digest(parts)
    arr = cache.load(key, split, n_rows=len(dataset))
    if arr is not None:
        log.info("feature cache hit: %s (%d x %d)", cache.path(key, split).name, *arr.shape)
        return FeatureResult(arr.astype(np.float32, copy=False), cached=True)
    feats = encode_images(model, dataset, batch_size, desc=desc)
    path = cache.save(key, feats, split, meta={**parts, "shape": list(feats.shape)})
    log.info("feature cache miss: computed and stored %s (%d x %d)", path.name, *feats.shape)
    return FeatureResult(feats, cached=False)


def extract_image_features(
    model: Any,
    dataset: Any,
    batch_size: int = 64,
    cache: FeatureCache | None = None,
    *,
    split: str | None = None,
    model_hash: str | None = None,
) -> np.ndarray:
    """float32 ``[N, D]`` frozen features ``model.encode_image(model.preprocess(images))`` of ``dataset``.

    Batched, under ``torch.no_grad()`` and eval mode (the model's own modes are restored), with a tqdm bar.
    With a ``cache``, the features are looked up by a key covering the model's weights and config, the
    preprocessing, the dataset content and ``split`` (default: the samples' common split field, else the
    dataset name), and stored on a miss. ``model_hash`` (from :func:`model_fingerprint`) saves re-hashing
    the weights when extracting several splits of one model.
    """
    return image_features(model, dataset, batch_size, cache, split=split, model_hash=model_hash).features
