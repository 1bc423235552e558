"""Fingerprints of everything that changes frozen image features: model weights, model config,
preprocessing, and the dataset's samples. Used as the feature-cache key (:mod:`tasks.features`).

Hashes are BLAKE2b over raw bytes (fast: about 1 GB/s), rendered as hex.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.sample import ImageRef

#: Bump when the feature-extraction code changes in a way that changes the features.
FEATURE_VERSION = 1


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    flat = t.detach().cpu().contiguous().reshape(-1)
    if flat.dtype != torch.uint8 and flat.element_size() > 0:
        flat = flat.view(torch.uint8)
    return memoryview(flat.numpy())


def model_fingerprint(model: Any) -> str:
    """Hash of the content of ``model.state_dict()``: every parameter and buffer's name, dtype, shape and bytes.

    A model without ``state_dict`` hashes to its class name only (nothing else is knowable about it).
    """
    h = hashlib.blake2b(digest_size=20)
    state = model.state_dict() if hasattr(model, "state_dict") else {}
    for name in sorted(state):
        value = state[name]
        if isinstance(value, torch.Tensor):
            h.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
            h.update(_tensor_bytes(value))
        else:  # extra state objects
            h.update(f"{name}|{value!r}|".encode())
    return h.hexdigest()


def _floats(value: Any) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return [float(v) for v in value.detach().cpu().reshape(-1)]
    return [float(v) for v in np.asarray(value).reshape(-1)]


def model_config(model: Any) -> dict[str, Any]:
    """What defines the model besides its weights: class, its ``config`` dict if it has one, the autocast
    dtype it runs at, resolution, embed_dim, normalisation flag, and the towers' ``repr``."""
    cls = type(model)
    dtype_fn = getattr(model, "autocast_dtype", None)
    return {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "config": getattr(model, "config", None),  # TwoTower: every constructor argument
        "autocast_dtype": str(dtype_fn()) if callable(dtype_fn) else None,
        "resolution": getattr(model, "resolution", None),
        "embed_dim": getattr(model, "embed_dim", None),
        "normalize_embeddings": getattr(model, "normalize_embeddings", None),
        "visual": repr(getattr(model, "visual", None)),
        "text": repr(getattr(model, "text", None)),
    }


def preprocess_config(model: Any) -> dict[str, Any]:
    """The preprocessing that feeds the image tower: resolution, mean/std, and which function does it."""
    fn = getattr(model, "preprocess", None)
    fn = getattr(fn, "__func__", fn)
    return {
        "resolution": getattr(model, "resolution", None),
        "mean": _floats(getattr(model, "pixel_mean", None)),
        "std": _floats(getattr(model, "pixel_std", None)),
        "function": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}",
    }


def dataset_fingerprint(dataset: Any) -> str:
    """Hash of the samples, in order: each sample's id, plus its image bytes (dtype, shape, data) when the
    image is in memory, or its path, size and modification time (ns) when it is a file, or its
    ``ImageRef.fingerprint()`` (a shard member)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"n={len(dataset)}|".encode())
    table = getattr(dataset, "table", None)
    pairs = zip(table.ids, (table.images[i] for i in range(len(table)))) if table is not None else (
        (s.id, s.image) for s in dataset.samples)
    for sid, image in pairs:
        h.update(f"id={sid}|".encode())
        if isinstance(image, np.ndarray):
            arr = np.ascontiguousarray(image)
            h.update(f"arr|{arr.dtype.str}|{arr.shape}|".encode())
            h.update(arr.reshape(-1).view(np.uint8))
        elif isinstance(image, ImageRef):  # e.g. a shard member: where it lies and the shard's stamp
            h.update(f"src|{image.fingerprint()}|".encode())
        else:
            path = Path(image)
            try:
                st = os.stat(path)
                h.update(f"file|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|".encode())
            except OSError:
                h.update(f"file|{path}|missing|".encode())
    return h.hexdigest()


def feature_key_parts(model: Any, dataset: Any, split: str, *, model_hash: str | None = None,
                      dataset_hash: str | None = None) -> dict[str, Any]:
    """Every component of the feature-cache key, as a JSON-serialisable dict (stored next to the features)."""
    return {
        "version": FEATURE_VERSION,
        "model_state": model_hash or model_fingerprint(model),
        "model_config": model_config(model),
        "preprocess": preprocess_config(model),
        "dataset": dataset_hash or dataset_fingerprint(dataset),
        "split": split,
    }


def digest(parts: dict[str, Any]) -> str:
    """Stable hex hash of a JSON-serialisable dict."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=20).hexdigest()
