"""The options of ``data.format=fundus_synth`` (:class:`FundusSynthOptions`), checked with
:func:`bench.options.parse`, and their resolution against the chosen variant (:func:`check_options`).

Every problem is a :class:`~bench.errors.DataConfigError` naming ``data.<option>``, the value and what is
allowed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ...errors import DataConfigError
from ...options import as_float, check_known, parse
from .diseases import DEFAULT_PREVALENCE
from .text import LEVELS
from .variants import DEFAULT_VARIANT, VARIANTS

OWNER = "data.format=fundus_synth"
PREFIX = "data."

#: difficulty options: name -> (default, min, max)
DIFFICULTY: dict[str, tuple[float, float, float]] = {
    "lesion_contrast": (1.0, 0.05, 5.0),
    "lesion_size": (1.0, 0.25, 4.0),
    "noise": (1.0, 0.0, 10.0),
    "blur": (1.0, 0.0, 5.0),
    "illumination": (1.0, 0.0, 3.0),
    "artifacts": (1.0, 0.0, 5.0),
}
SUPERSAMPLE_VALUES = (1, 2, 3, 4)
#: options that do not change the content (left out of the cache key)
NOT_CONTENT = ("cache_dir", "levels", "progress")


def _err(message: str, key: str, value: Any, allowed: Any) -> DataConfigError:
    return DataConfigError(message, key=key, value=value, allowed=allowed)


def _prevalence_entries(key: str, value: dict) -> dict:
    """The keys and values of ``data.prevalence`` (each a probability); the sums are checked after merging."""
    check_known(value, DEFAULT_PREVALENCE, prefix=key + ".", owner=OWNER, error=DataConfigError)
    return {k: as_float(f"{key}.{k}", v, min=0.0, max=1.0, error=DataConfigError) for k, v in value.items()}


def _distinct(key: str, value: tuple) -> tuple:
    if len(set(value)) != len(value):
        raise _err(f"{key}={list(value)!r} names a level twice", key, value, f"distinct names from {list(LEVELS)}")
    return value


def _cache_dir(key: str, value: Any) -> Any:
    if value is False:
        return False
    if isinstance(value, str) and value.strip().lower() == "false":  # the one boolean rule: "false" is false
        return False
    if isinstance(value, (str, os.PathLike)) and str(value).strip():
        return value
    raise _err(f"{key}={value!r} must be a folder path, or false (no cache)", key, value,
               "null (the default folder), false (no cache) or a folder path")


def _difficulty(name: str, help: str) -> Any:
    default, lo, hi = DIFFICULTY[name]
    return field(default=default, metadata={"min": lo, "max": hi, "help": help})


@dataclass(frozen=True)
class FundusSynthOptions:
    """The options of ``data.format=fundus_synth`` (``None`` = the variant's default where it says so)."""

    variant: str = field(default=DEFAULT_VARIANT, metadata={
        "choices": tuple(VARIANTS),
        "help": "which dataset: the pretraining corpus (pretrain) or a downstream dataset with a domain shift "
                "(dr, glaucoma, amd, multidisease: other cameras, prevalences, tasks; see the package docstring)"})
    size: int | None = field(default=None, metadata={
        "min": 0, "help": "train + val images (null: the variant's, 2500 for every variant)"})
    val_fraction: float | None = field(default=None, metadata={
        "min": 0.0, "max": 1.0, "max_open": True, "help": "share of `size` that goes to val (null: 0.2)"})
    test_size: int | None = field(default=None, metadata={
        "min": 0, "help": "test images, drawn from their own seed stream (null: the variant's: 500 for pretrain, "
                          "5000 for the downstream variants)"})
    resolution: int = field(default=64, metadata={"min": 16, "max": 1024, "help": "image side in pixels"})
    seed: int = field(default=0, metadata={"min": 0, "help": "seed of every image (with the variant's streams)"})
    prevalence: dict | None = field(default=None, metadata={
        "check": _prevalence_entries,
        "help": f"override some marginal prevalences of the variant (keys: {', '.join(DEFAULT_PREVALENCE)})"})
    levels: tuple[str, ...] | None = field(default=None, metadata={
        "choices": LEVELS, "min_len": 1, "check": _distinct,
        "help": "text levels to keep, in order (null: category, disease, description)"})
    supersample: int = field(default=1, metadata={
        "choices": SUPERSAMPLE_VALUES, "help": "draw at this multiple of the resolution and average down"})
    lesion_contrast: float = _difficulty("lesion_contrast", "multiplies every lesion's contrast")
    lesion_size: float = _difficulty("lesion_size", "multiplies every lesion's size")
    noise: float = _difficulty("noise", "multiplies the sensor noise (0: none)")
    blur: float = _difficulty("blur", "multiplies the blur (0: none)")
    illumination: float = _difficulty("illumination", "multiplies the illumination fall-off and colour jitter")
    artifacts: float = _difficulty("artifacts", "multiplies the rate of eyelash shadows, flares and dust (0: none)")
    cache_dir: Any = field(default=None, metadata={
        "check": _cache_dir,
        "help": "cache folder (null: $CONTRASTIVE_BENCH_CACHE/fundus_synth or ~/.cache/contrastive-bench/"
                "fundus_synth; false: no cache)"})
    progress: bool = field(default=True, metadata={"help": "a tqdm bar while drawing large sets"})


def check_prevalence(prevalence: dict[str, float] | None, base: dict[str, float] | None = None,
                     key: str = "data.prevalence") -> dict[str, float]:
    """The full prevalence table: ``base`` (default: the pretraining table) updated with ``prevalence``,
    checked (each a probability; the DR grades sum to at most 1; DME at most moderate + severe + PDR)."""
    prev = dict(DEFAULT_PREVALENCE if base is None else base)
    if prevalence is None:
        return prev
    if not isinstance(prevalence, dict):
        raise _err(f"{key}={prevalence!r} must be a mapping", key, prevalence, f"keys {list(DEFAULT_PREVALENCE)}")
    prev.update(_prevalence_entries(key, prevalence))
    dr = prev["mild_npdr"] + prev["moderate_npdr"] + prev["severe_npdr"] + prev["pdr"]
    if dr > 1.0 + 1e-9:
        raise _err(f"{key}={prevalence!r}: the DR grades sum to {dr:.3g}", key, prevalence,
                   "DR grade prevalences (mild_npdr + moderate_npdr + severe_npdr + pdr) summing to <= 1")
    if prev["dme"] > prev["moderate_npdr"] + prev["severe_npdr"] + prev["pdr"] + 1e-9:
        raise _err(f"{key}={prevalence!r}: dme {prev['dme']:.3g} exceeds moderate + severe + PDR DR", key, prevalence,
                   "'dme' <= moderate_npdr + severe_npdr + pdr (DME needs exudates: moderate DR or worse)")
    return prev


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check ``build``'s options; return them resolved: every option filled in (the variant's sizes where
    left null), ``prevalence`` the full table, ``levels`` a tuple."""
    o = asdict(parse(FundusSynthOptions, options, prefix=PREFIX, owner=OWNER, error=DataConfigError))
    v = VARIANTS[o["variant"]]
    for k in ("size", "val_fraction", "test_size"):
        if o[k] is None:
            o[k] = getattr(v, k)
    if o["size"] + o["test_size"] == 0:
        raise _err("data.size=0 and data.test_size=0 draw no image", "data.size", 0, "size + test_size >= 1")
    o["prevalence"] = check_prevalence(o["prevalence"], v.prevalence)
    o["levels"] = LEVELS if o["levels"] is None else tuple(o["levels"])
    return o
