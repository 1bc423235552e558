"""Option checking shared by the format builders: unknown keys, required keys, choices, types.

Every message names the option as the user writes it (``data.<key>``), the format, and what is allowed.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable, Sequence

from .registry import DataConfigError

# keys every builder accepts (``data.resolution`` is always passed; file formats ignore it: the model
# resizes images)
COMMON = {"resolution": None}


def take(fmt: str, options: dict[str, Any], defaults: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    """``options`` merged over ``defaults``; an unknown or missing key is a :class:`DataConfigError`."""
    allowed = {**COMMON, **defaults}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(allowed), n=2)
            if close:
                hints.append(f"{key} -> {' or '.join(close)}?")
        hint = f" (did you mean: {'; '.join(hints)})" if hints else ""
        raise DataConfigError(
            f"data.format={fmt}: unknown option(s) {['data.' + k for k in unknown]}{hint}; "
            f"allowed: {sorted('data.' + k for k in allowed)}"
        )
    out = {**allowed, **options}
    missing = [k for k in required if out.get(k) is None]
    if missing:
        raise DataConfigError(f"data.format={fmt}: option(s) {['data.' + k for k in missing]} required")
    return out


def choice(fmt: str, key: str, value: Any, allowed: Sequence[Any]) -> Any:
    if value not in allowed:
        raise DataConfigError(f"data.format={fmt}: data.{key}={value!r} is not allowed; allowed: {list(allowed)}")
    return value


def str_list(fmt: str, key: str, value: Any) -> list[str] | None:
    """A list of strings (a single string is a one-element list); ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) for v in value):
        return [str(v) for v in value]
    raise DataConfigError(f"data.format={fmt}: data.{key} must be a string or a list of strings, got {value!r}")


def level_subset(fmt: str, value: Any, levels: Sequence[str]) -> tuple[str, ...]:
    """The ``levels`` option of a builder: ``None`` = all of ``levels``, else a non-empty sequence of
    distinct names from them (in the order given)."""
    if value is None:
        return tuple(levels)
    bad = isinstance(value, str) or not isinstance(value, Sequence) or not value
    if bad or len(set(value)) != len(value) or any(g not in levels for g in value):
        raise DataConfigError(
            f"data.format={fmt}: bad value {value!r} for option 'levels'; allowed: None or a non-empty "
            f"sequence of distinct names from {list(levels)}"
        )
    return tuple(value)


def as_bool(fmt: str, key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise DataConfigError(f"data.format={fmt}: data.{key} must be true or false, got {value!r}")


def existing_path(fmt: str, key: str, value: Any, kind: str = "any") -> Path:
    """``value`` as a Path that exists (``kind``: ``file``, ``dir`` or ``any``)."""
    if value is None:
        raise DataConfigError(f"data.format={fmt}: data.{key} is required")
    p = Path(str(value)).expanduser()
    if not p.exists():
        raise DataConfigError(f"data.format={fmt}: data.{key}={str(value)!r}: no such file or folder")
    if kind == "file" and not p.is_file():
        raise DataConfigError(f"data.format={fmt}: data.{key}={str(value)!r} must be a file")
    if kind == "dir" and not p.is_dir():
        raise DataConfigError(f"data.format={fmt}: data.{key}={str(value)!r} must be a folder")
    return p
