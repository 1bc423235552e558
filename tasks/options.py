"""Option parsing and validators shared by the task classes.

Every task declares its options as a dataclass (``Task.Options``); :func:`parse_options` rejects unknown or
missing options and each task's ``validate`` normalises values with the checkers below. All failures raise
:class:`~tasks.registry.TaskConfigError` naming the task, the option and what is allowed. Values coming from
YAML/OmegaConf (``ListConfig``, numeric strings such as ``"1e-3"``) are accepted and converted.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Sequence

from .registry import TaskConfigError


def parse_options(task: str, options_cls: type, options: dict[str, Any]) -> Any:
    """Instantiate ``options_cls`` from ``options``; unknown or missing names raise ``TaskConfigError``."""
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    for key in options:
        if key not in fields:
            raise TaskConfigError(task, key, "unknown option", value=key, allowed=sorted(fields))
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        if required and name not in options:
            raise TaskConfigError(task, name, "is required")
    return options_cls(**options)


def _as_float(task: str, option: str, value: Any) -> float:
    if isinstance(value, bool):
        raise TaskConfigError(task, option, f"must be a number, got {value!r}", value=value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TaskConfigError(task, option, f"must be a number, got {value!r}", value=value) from None
    if not math.isfinite(out):
        raise TaskConfigError(task, option, f"must be finite, got {value!r}", value=value)
    return out


def check_int(task: str, option: str, value: Any, *, minimum: int | None = None) -> int:
    """An integer (``3`` or ``"3"``, not ``3.5`` or ``True``), at least ``minimum``."""
    if isinstance(value, bool):
        raise TaskConfigError(task, option, f"must be an integer, got {value!r}", value=value)
    try:
        out = int(value)
        ok = float(value) == out
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise TaskConfigError(task, option, f"must be an integer, got {value!r}", value=value)
    if minimum is not None and out < minimum:
        raise TaskConfigError(task, option, f"must be >= {minimum}, got {out}", value=value)
    return out


def check_float(
    task: str,
    option: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number in the interval given (``low_open``/``high_open`` exclude the end points)."""
    out = _as_float(task, option, value)
    lo_bad = low is not None and (out <= low if low_open else out < low)
    hi_bad = high is not None and (out >= high if high_open else out > high)
    if lo_bad or hi_bad:
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        interval = f"{lb}{'-inf' if low is None else low}, {'inf' if high is None else high}{hb}"
        raise TaskConfigError(task, option, f"must be in {interval}, got {value!r}", value=value)
    return out


def check_bool(task: str, option: str, value: Any) -> bool:
    """``True``/``False`` (also ``"true"``/``"false"``, ``0``/``1``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int,)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise TaskConfigError(task, option, f"must be true or false, got {value!r}", value=value, allowed=[True, False])


def check_choice(task: str, option: str, value: Any, allowed: Sequence[Any]) -> Any:
    """One of ``allowed``."""
    if value not in allowed:
        raise TaskConfigError(task, option, f"{value!r} is not allowed", value=value, allowed=allowed)
    return value


def check_str(task: str, option: str, value: Any, *, allow_none: bool = False) -> str | None:
    """A non-empty string (or ``None`` when allowed)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        raise TaskConfigError(task, option, f"must be a non-empty string, got {value!r}", value=value)
    return value


def _as_sequence(task: str, option: str, value: Any) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TaskConfigError(task, option, f"must be a list, got {value!r}", value=value)
    return list(value)


def check_float_tuple(task: str, option: str, value: Any, *, positive: bool = True) -> tuple[float, ...]:
    """A non-empty list of finite numbers (strictly positive unless ``positive=False``)."""
    items = _as_sequence(task, option, value)
    if not items:
        raise TaskConfigError(task, option, "must not be empty", value=value)
    out = tuple(_as_float(task, option, v) for v in items)
    if positive and any(v <= 0 for v in out):
        raise TaskConfigError(task, option, f"every value must be > 0, got {list(out)}", value=value)
    return out


def check_int_tuple(task: str, option: str, value: Any, *, minimum: int = 1) -> tuple[int, ...]:
    """A non-empty list of integers >= ``minimum`` (sorted, duplicates removed)."""
    items = _as_sequence(task, option, value)
    if not items:
        raise TaskConfigError(task, option, "must not be empty", value=value)
    return tuple(sorted({check_int(task, option, v, minimum=minimum) for v in items}))


def check_templates(task: str, option: str, value: Any) -> tuple[str, ...]:
    """One prompt template or a list of them; each must contain exactly one ``{}`` placeholder."""
    items = [value] if isinstance(value, str) else _as_sequence(task, option, value)
    if not items:
        raise TaskConfigError(task, option, "must not be empty", value=value)
    for t in items:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise TaskConfigError(
                task, option, f"each template must be a string with exactly one '{{}}' placeholder, got {t!r}", value=t
            )
        try:
            t.format("x")
        except (IndexError, KeyError, ValueError) as e:
            raise TaskConfigError(task, option, f"template {t!r} does not format: {e}", value=t) from None
    return tuple(items)


def check_str_tuple(task: str, option: str, value: Any, *, allow_none: bool = True) -> tuple[str, ...] | None:
    """A non-empty list of non-empty strings (or ``None``)."""
    if value is None and allow_none:
        return None
    items = _as_sequence(task, option, value)
    if not items or any(not isinstance(v, str) or not v for v in items):
        raise TaskConfigError(task, option, f"must be a non-empty list of non-empty strings, got {value!r}", value=value)
    return tuple(items)
