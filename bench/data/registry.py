"""Registry of data formats: ``data.format=<name>`` picks a builder that returns a MultiGranularDataset.

A format is one module in ``bench/data/`` that declares its options as a dataclass and registers its
builder with the decorator::

    @register_format("jsonl", options=Options)
    def build(**options) -> MultiGranularDataset: ...

``options`` documents the format (``python -m bench.run --help data`` and the docs tables are generated from
it); ``own_splits=True`` marks formats that draw their own splits (they receive ``data.split_seed``,
``val_fraction`` and ``test_fraction`` as their options). The builder validates its options
(:func:`bench.data.options.take`) and raises :class:`~bench.errors.DataConfigError`. The package
``bench/data/__init__.py`` imports every format module once; this module imports none of them (no cycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import DataConfigError, did_you_mean
from .dataset import MultiGranularDataset

__all__ = ["FORMATS", "DataConfigError", "Format", "get_format", "register_format"]


@dataclass(frozen=True)
class Format:
    """A registered format: its builder, its options dataclass (or None) and whether it draws its own splits."""

    name: str
    build: Callable[..., MultiGranularDataset]
    options: type | None = None
    own_splits: bool = False

    def __call__(self, **options: Any) -> MultiGranularDataset:
        return self.build(**options)


FORMATS: dict[str, Format] = {}


def register_format(name: str, options: type | None = None, own_splits: bool = False):
    """Decorator: register ``fn`` as the builder of ``data.format=<name>``."""

    def deco(fn: Callable[..., MultiGranularDataset]):
        if name in FORMATS and FORMATS[name].build is not fn:
            raise ValueError(f"data format {name!r} is already registered by {FORMATS[name].build.__module__}")
        FORMATS[name] = Format(name, fn, options, own_splits)
        return fn

    return deco


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise DataConfigError(f"data.format={name!r} is unknown{did_you_mean(name, FORMATS)}", key="data.format",
                              value=name, allowed=sorted(FORMATS))
    return FORMATS[name]
