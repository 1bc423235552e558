"""Registry of data formats: ``data.format=<name>`` picks a builder that returns a MultiGranularDataset.

A builder is a function ``build(**options) -> MultiGranularDataset``; it validates its own options and
raises ``DataConfigError`` (or ``ValueError``) naming the option and what is allowed. Adding a format is one
module in ``bench/data/`` plus one ``@register_format`` line here.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

from .sample import MultiGranularDataset

FORMATS: dict[str, Callable[..., MultiGranularDataset]] = {}


from ..errors import DataConfigError  # noqa: E402  (re-exported: the data layer's ConfigError)


def register_format(name: str):
    def deco(fn: Callable[..., MultiGranularDataset]):
        FORMATS[name] = fn
        return fn

    return deco


def get_format(name: str) -> Callable[..., MultiGranularDataset]:
    if name not in FORMATS:
        close = difflib.get_close_matches(str(name), list(FORMATS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DataConfigError(f"data.format={name!r} is unknown{hint}; allowed: {sorted(FORMATS)}")
    return FORMATS[name]


# -- the formats --------------------------------------------------------------------------------------------
@register_format("fundus_synth")
def _fundus_synth(**options: Any) -> MultiGranularDataset:
    from .fundus_synth import build

    return build(**options)


@register_format("digits")
def _digits(**options: Any) -> MultiGranularDataset:
    from .digits import build

    return build(**options)


@register_format("mgll_json")
def _mgll_json(**options: Any) -> MultiGranularDataset:
    from .mgll_json import build

    return build(**options)


@register_format("csv_multilabel")
def _csv_multilabel(**options: Any) -> MultiGranularDataset:
    from .csv_multilabel import build

    return build(**options)


@register_format("jsonl")
def _jsonl(**options: Any) -> MultiGranularDataset:
    from .jsonl import build

    return build(**options)


@register_format("downstream_csv")
def _downstream_csv(**options: Any) -> MultiGranularDataset:
    from .downstream_csv import build

    return build(**options)
