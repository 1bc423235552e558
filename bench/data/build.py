"""``build_dataset(cfg.data)``: the format's builder, then the options every format shares.

Shared options (handled here, not by the formats; ``None`` = the default):

- ``format``: which builder (``registry.FORMATS``); ``levels``: which text levels the run uses, in order
  (default: all the data has; a level the data lacks is a validation problem);
- ``on_bad_sample``: ``error`` (default: any problem raises :class:`DataValidationError` listing them all) or
  ``skip`` (bad samples are dropped and counted in ``dataset.stats["bad_samples_skipped"]``; problems of the
  whole file or dataset still raise);
- ``check_images`` (``auto`` default): which image files validation opens before training: ``all``, a
  ``sample``, ``none`` (see ``validate.check_plan``); the rest are found while loading;
- ``workers``: the loader's worker processes (``bench.data.loader.configure``, with ``on_bad_sample``);
- ``split_seed`` (0), ``val_fraction`` (0.1), ``test_fraction`` (0.1): splits drawn, grouped by patient, when
  no sample has a split (see ``splits.py``). Formats that make their own splits (``fundus_synth``,
  ``digits``) receive these keys as their own options instead;
- ``missing_rate`` (0), ``missing_seed`` (0), ``missing_levels`` (default: every level used): drop a level's
  text for that fraction of *training* samples (see ``missing.py``).

Order: build -> validate (parse problems + ``validate.find_problems``) -> skip or raise -> select levels ->
splits -> missing texts. Columns are replaced, never modified, when splits or texts change (a builder may
cache its dataset), and the result is always a new container with its own ``stats``.
Everything else is passed to the format's builder, which validates it.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from typing import Any

import numpy as np

from ..options import coerce
from ..schema import DataShared
from .missing import drop_texts
from .problems import DataValidationError, Problem
from .registry import DataConfigError, get_format
from .dataset import MultiGranularDataset
from .splits import DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION, assign_splits
from .validate import find_problems

log = logging.getLogger(__name__)

SPLIT_OPTIONS = ("split_seed", "val_fraction", "test_fraction")
SHARED_OPTIONS = (
    "format",
    "levels",
    "on_bad_sample",
    "check_images",
    "workers",
    *SPLIT_OPTIONS,
    "missing_rate",
    "missing_seed",
    "missing_levels",
)
ON_BAD_SAMPLE = ("error", "skip")


def _as_dict(cfg: Any) -> dict:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return dict(cfg)


def _shared(options: dict, own_splits: bool) -> dict:
    """The shared options popped from ``options`` and checked (schema: :class:`bench.schema.DataShared`);
    ``None`` = the default. Formats that draw their own splits receive the split options themselves."""
    hints = typing.get_type_hints(DataShared)
    meta = {f.name: f.metadata for f in dataclasses.fields(DataShared)}
    out = {}
    for k in SHARED_OPTIONS:
        if k == "format" or (own_splits and k in SPLIT_OPTIONS):
            continue
        v = options.pop(k, None)
        out[k] = None if v is None else coerce(f"data.{k}", v, hints[k], meta[k], error=DataConfigError)
    return out


def _int(value: Any, default: int) -> int:
    return default if value is None else int(value)


def _validated(dataset: MultiGranularDataset, parse_problems: list[Problem], levels, on_bad: str, check_images: str):
    """The dataset without bad samples (``skip``), or a DataValidationError listing every problem."""
    found = find_problems(dataset, required_levels=levels, check_images=check_images)
    problems = parse_problems + [p for _, p in found]
    stats = dict(dataset.stats)
    if on_bad == "skip":
        stats["bad_samples_skipped"] = 0
    if not problems:
        return dataset, stats
    if on_bad == "error":
        raise DataValidationError(problems)
    fatal = [p for p in problems if not p.skippable]
    if fatal:
        raise DataValidationError(fatal)
    bad = {i for i, _ in found if i is not None}
    n_skipped = len({p.sample for p in parse_problems}) + len(bad)
    log.warning(
        "data: skipping %d bad sample(s) (data.on_bad_sample=skip); %d problem(s), first: %s",
        n_skipped, len(problems), problems[0],
    )
    for p in problems:
        log.debug("data problem: %s", p)
    stats["bad_samples_skipped"] = n_skipped
    keep = np.setdiff1d(np.arange(len(dataset)), np.fromiter(bad, np.int64, count=len(bad)))
    return dataset.with_table(dataset.table.take(keep), stats), stats


def build_dataset(cfg: Any) -> MultiGranularDataset:
    options = _as_dict(cfg)
    if "format" not in options:
        raise DataConfigError("data.format is required")
    fmt = options.pop("format")
    builder = get_format(fmt)
    own_splits = builder.own_splits
    shared = _shared(options, own_splits)
    levels = shared["levels"]
    on_bad = shared["on_bad_sample"] or "error"
    check_images = shared["check_images"] or "auto"
    from .loader import configure as configure_loader  # torch: only when a dataset is built

    configure_loader(workers=shared["workers"], on_bad_sample=on_bad)
    rate = 0.0 if shared["missing_rate"] is None else shared["missing_rate"]
    missing_seed = _int(shared["missing_seed"], 0)
    missing_levels = shared["missing_levels"]

    options = {k: v for k, v in options.items() if v is not None}
    parse_problems: list[Problem] = []
    try:
        dataset = builder(**options)
    except DataValidationError as e:
        if e.partial is None:
            raise
        dataset, parse_problems = e.partial, e.problems
    dataset, stats = _validated(dataset, parse_problems, levels, on_bad, check_images)
    if levels:
        dataset = dataset.with_levels(levels)

    if not own_splits:
        dataset = _splits(dataset, shared)

    if rate > 0 or shared["missing_levels"] is not None:
        use = missing_levels if missing_levels is not None else list(dataset.levels)
        unknown = [g for g in use if g not in dataset.levels]
        if unknown:
            raise DataConfigError(f"data.missing_levels names {unknown}, not levels of this run {list(dataset.levels)}")
        dataset, dropped = drop_texts(dataset, use, rate, missing_seed)
        for g, n in dropped.items():
            stats[f"missing_dropped/{g}"] = n

    out = dataset.with_table(dataset.table, stats)
    log.info("data: %s", out)
    return out


def _splits(dataset: MultiGranularDataset, shared: dict) -> MultiGranularDataset:
    split = dataset.table.split
    have = split.codes >= 0
    given = [k for k in SPLIT_OPTIONS if shared.get(k) is not None]
    if len(dataset) and have.all():
        if given:
            raise DataConfigError(
                f"{dataset.name}: the data sets its own splits, so {['data.' + k for k in given]} would be unused; "
                "remove them (or drop the split column/field to draw splits)"
            )
        return dataset
    if have.any():
        lacking = [dataset.sample_id(int(i)) for i in np.flatnonzero(~have)]
        raise DataConfigError(
            f"{dataset.name}: {len(lacking)} of {len(dataset)} samples have no split (e.g. {lacking[:3]}) while the "
            "others have one; give every sample a split, or none (to draw them with data.split_seed)"
        )
    return assign_splits(
        dataset,
        seed=_int(shared.get("split_seed"), DEFAULT_SPLIT_SEED),
        val_fraction=DEFAULT_VAL_FRACTION if shared.get("val_fraction") is None else shared["val_fraction"],
        test_fraction=DEFAULT_TEST_FRACTION if shared.get("test_fraction") is None else shared["test_fraction"],
    )
