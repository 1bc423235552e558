"""Option checking of the data formats, on top of :mod:`bench.options` (the harness's one set of rules).

A format declares its options as a dataclass (field annotations are the types; ``metadata={"help": ...}``
documents them) and calls :func:`take`; messages name the option as the user writes it (``data.<key>``),
the format, the value and what is allowed, and raise :class:`~bench.errors.DataConfigError`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from .. import options as _opts
from ..errors import DataConfigError

#: options the harness passes to every builder when the format declares them (``data.resolution``)
COMMON = ("resolution",)


def owner(fmt: str) -> str:
    return f"data.format={fmt}"


def take(fmt: str, options: dict[str, Any], options_cls: type) -> dict[str, Any]:
    """``options`` checked against the dataclass ``options_cls`` (unknown keys, required keys, types, bounds,
    choices), defaults filled in, as a dict. ``None`` means "the default". A common option the format does
    not declare (``resolution`` for file formats: the model resizes images) is dropped."""
    names = {f.name for f in dataclasses.fields(options_cls)}
    given = {k: v for k, v in options.items() if not (k in COMMON and k not in names)}
    parsed = _opts.parse(options_cls, given, prefix="data.", owner=owner(fmt), error=DataConfigError, drop_none=True)
    return {f.name: getattr(parsed, f.name) for f in dataclasses.fields(options_cls)}


def choice(fmt: str, key: str, value: Any, allowed: Sequence[Any]) -> Any:
    return _opts.as_choice(f"data.{key}", value, allowed, error=DataConfigError)


def str_list(fmt: str, key: str, value: Any) -> list[str] | None:
    """A list of strings (a single string is a one-element list); ``None`` stays ``None``."""
    if value is None:
        return None
    return _opts.as_list(f"data.{key}", value, lambda k, v: _opts.coerce(k, v, str), error=DataConfigError)


def level_subset(fmt: str, value: Any, levels: Sequence[str]) -> tuple[str, ...]:
    """The ``levels`` option of a builder: ``None`` = all of ``levels``, else a non-empty sequence of
    distinct names from them (in the order given)."""
    if value is None:
        return tuple(levels)
    bad = isinstance(value, str) or not isinstance(value, Sequence) or not value
    if bad or len(set(value)) != len(value) or any(g not in levels for g in value):
        raise DataConfigError(
            f"data.levels={value!r} (data.format={fmt}) must be a non-empty list of distinct level names",
            key="data.levels", value=value, allowed=list(levels))
    return tuple(value)


def as_bool(fmt: str, key: str, value: Any) -> bool:
    return _opts.as_bool(f"data.{key}", value, error=DataConfigError)


def existing_path(fmt: str, key: str, value: Any, kind: str = "any") -> Path:
    """``value`` as a Path that exists (``kind``: ``file``, ``dir`` or ``any``)."""
    if value is None:
        raise DataConfigError(f"data.{key} is required for {owner(fmt)}", key=f"data.{key}")
    p = Path(str(value)).expanduser()
    if not p.exists():
        raise DataConfigError(f"data.{key}={str(value)!r} ({owner(fmt)}): no such file or folder", key=f"data.{key}", value=value)
    if kind == "file" and not p.is_file():
        raise DataConfigError(f"data.{key}={str(value)!r} ({owner(fmt)}) must be a file", key=f"data.{key}", value=value)
    if kind == "dir" and not p.is_dir():
        raise DataConfigError(f"data.{key}={str(value)!r} ({owner(fmt)}) must be a folder", key=f"data.{key}", value=value)
    return p
