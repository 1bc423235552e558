"""The on-disk cache of built datasets: one ``.npz`` per content (images + sample metadata as JSON), keyed by
a hash of every option that changes the content and :data:`GENERATOR_VERSION`; written atomically.

Rules: package docstring (``Caching``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .options import NOT_CONTENT
from .text import NAME
from .variants import DEFAULT_VARIANT, VARIANTS

GENERATOR_VERSION = 2  # 1 = development drafts (caches written while this module was being tuned)


def cache_key(o: dict) -> str:
    """The content hash of resolved options ``o`` (see :func:`.options.check_options`). The pretraining
    corpus keeps the key it had before variants existed (its caches stay valid); a downstream variant adds
    its whole definition (cameras, prevalences, streams), so editing a variant changes its key."""
    keyed = {k: v for k, v in o.items() if k not in NOT_CONTENT and k != "variant"}
    keyed["prevalence"] = sorted(o["prevalence"].items())
    keyed["version"] = GENERATOR_VERSION
    if o["variant"] != DEFAULT_VARIANT:
        keyed["variant"] = VARIANTS[o["variant"]].key()
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    env = os.environ.get("CONTRASTIVE_BENCH_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "contrastive-bench"
    return root / NAME


def path_for(o: dict) -> Path | None:
    """The cache file of resolved options ``o`` (None when caching is off)."""
    if o["cache_dir"] is False:
        return None
    d = default_cache_dir() if o["cache_dir"] is None else Path(o["cache_dir"]).expanduser()
    return d / f"{NAME}-{cache_key(o)}.npz"


def save(path: Path, images: np.ndarray, meta: list[dict]) -> None:
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, meta=blob)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: Path) -> tuple[np.ndarray, list[dict]]:
    with np.load(path, allow_pickle=False) as z:
        images = z["images"]
        meta = json.loads(z["meta"].tobytes().decode("utf-8"))
    return images, meta
