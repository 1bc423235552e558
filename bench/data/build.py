"""``build_dataset(cfg.data)``: the format's builder, then the options every format shares.

Shared options (handled here, not by the formats): ``format`` (which builder), ``levels`` (which text
levels the run uses, in order; default: all the data has). Everything else is passed to the format's
builder, which validates it.
"""

from __future__ import annotations

import logging
from typing import Any

from .registry import DataConfigError, get_format
from .sample import MultiGranularDataset

log = logging.getLogger(__name__)

SHARED_OPTIONS = ("format", "levels")


def _as_dict(cfg: Any) -> dict:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return dict(cfg)


def build_dataset(cfg: Any) -> MultiGranularDataset:
    options = _as_dict(cfg)
    if "format" not in options:
        raise DataConfigError("data.format is required")
    builder = get_format(options.pop("format"))
    levels = options.pop("levels", None)
    options = {k: v for k, v in options.items() if v is not None}
    dataset = builder(**options)
    if levels:
        missing = [g for g in levels if g not in dataset.levels]
        if missing:
            raise DataConfigError(
                f"data.levels names {missing}, absent from the data ({dataset.name}); it has levels {list(dataset.levels)}"
            )
        dataset = dataset.with_levels(levels)
    log.info("data: %s", dataset)
    return dataset
