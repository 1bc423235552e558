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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.store import atomic_write

from .encode import encode_images
from .fingerprint import dataset_fingerprint, digest, feature_key_parts, model_fingerprint

log = logging.getLogger(__name__)

__all__ = ["FeatureCache", "FeatureResult", "SharedFeatures", "extract_image_features", "image_features",
           "model_fingerprint", "model_hash_for"]


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


class SharedFeatures:
    """The features of one evaluation (one cell, one set of weights), in memory, shared by every task that
    reads the same (weights, dataset, preprocessing, split): each is encoded once. Backed by an on-disk
    :class:`FeatureCache` when given (``disk``). Same ``load`` / ``save`` / ``path`` interface as
    :class:`FeatureCache`; the weights' and datasets' hashes are computed once per object (the model must not
    change while the store is in use). ``encodes`` / ``encode_s`` / ``encoded_rows`` count the forward passes
    over datasets and their time."""

    def __init__(self, disk: FeatureCache | None = None):
        self.disk = disk
        self.root = disk.root if disk is not None else None
        self._mem: dict[str, np.ndarray] = {}
        self._hashes: dict[int, tuple[Any, str]] = {}
        self.hits = self.misses = self.writes = 0
        self.encodes = 0
        self.encoded_rows = 0
        self.encode_s = 0.0

    def __repr__(self) -> str:
        return f"SharedFeatures(disk={self.disk!r}, hits={self.hits}, misses={self.misses}, encodes={self.encodes})"

    def stats(self) -> dict[str, float]:
        return {"hits": self.hits, "misses": self.misses, "writes": self.writes, "encodes": self.encodes,
                "encoded_rows": self.encoded_rows, "encode_s": self.encode_s}

    def _memo(self, obj: Any, fn) -> str:
        got = self._hashes.get(id(obj))
        if got is None or got[0] is not obj:
            got = (obj, fn(obj))  # the object is kept, so its id is not reused while the store lives
            self._hashes[id(obj)] = got
        return got[1]

    def model_hash(self, model: Any) -> str:
        return self._memo(model, model_fingerprint)

    def dataset_hash(self, dataset: Any) -> str:
        return self._memo(dataset, dataset_fingerprint)

    def path(self, key: str, split: str = "") -> Path:
        return self.disk.path(key, split) if self.disk is not None else Path(f"{split}-{key}" if split else key)

    def load(self, key: str, split: str = "", n_rows: int | None = None) -> np.ndarray | None:
        arr = self._mem.get(key)
        if arr is None and self.disk is not None:
            arr = self.disk.load(key, split, n_rows=n_rows)
            if arr is not None:
                self._mem[key] = arr
        if arr is not None and (n_rows is None or arr.shape[0] == n_rows):
            self.hits += 1
            return arr
        self.misses += 1
        return None

    def save(self, key: str, array: np.ndarray, split: str = "", meta: dict[str, Any] | None = None) -> Path:
        self._mem[key] = array
        self.writes += 1
        if self.disk is not None:
            return self.disk.save(key, array, split, meta=meta)
        return self.path(key, split)

    def note_encode(self, seconds: float, rows: int) -> None:
        self.encodes += 1
        self.encoded_rows += int(rows)
        self.encode_s += float(seconds)


def model_hash_for(cache: Any, model: Any) -> str:
    """The weights' hash, memoised by the cache when it can (:class:`SharedFeatures`)."""
    fn = getattr(cache, "model_hash", None)
    return fn(model) if callable(fn) else model_fingerprint(model)


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
    ds_hash = cache.dataset_hash(dataset) if callable(getattr(cache, "dataset_hash", None)) else None
    parts = feature_key_parts(model, dataset, split, model_hash=model_hash or model_hash_for(cache, model),
                              dataset_hash=ds_hash)
    key = digest(parts)
    arr = cache.load(key, split, n_rows=len(dataset))
    if arr is not None:
        log.info("feature cache hit: %s (%d x %d)", cache.path(key, split).name, *arr.shape)
        return FeatureResult(arr.astype(np.float32, copy=False), cached=True)
    t0 = time.perf_counter()
    feats = encode_images(model, dataset, batch_size, desc=desc)
    if callable(getattr(cache, "note_encode", None)):
        cache.note_encode(time.perf_counter() - t0, len(dataset))
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
