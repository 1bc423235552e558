"""Option parsing and validators shared by the task classes.

Every task declares its options as a dataclass (``Task.Options``); :func:`parse_options` checks them with the
harness's one set of rules (:mod:`bench.options`: types from the annotations, unknown options with close
matches) and each task's ``validate`` normalises values with the checkers below (thin wrappers of the same
rules). All failures raise :class:`~tasks.registry.TaskConfigError` naming the task, the option, the value and
what is allowed. Values coming from YAML/OmegaConf (``ListConfig``, numeric strings such as ``"1e-3"``) are
accepted and converted.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from bench import options as _opts

from .registry import TaskConfigError


def error_for(task: str):
    """The ``error=`` factory :mod:`bench.options` raises with: a :class:`TaskConfigError` of ``task``."""

    def make(message: str, *, key: str | None = None, value: Any = None, allowed: Any = None) -> TaskConfigError:
        option = key.split("[", 1)[0] if key else key  # c_grid[1] -> c_grid
        return TaskConfigError.from_message(task, message, option=option, value=value, allowed=allowed)

    return make


def parse_options(task: str, options_cls: type, options: dict[str, Any]) -> Any:
    """Instantiate ``options_cls`` from ``options`` with the harness's rules (:func:`bench.options.parse`):
    unknown or missing names, and values of the wrong type, raise ``TaskConfigError``."""
    return _opts.parse(options_cls, options, error=error_for(task))


def check_int(task: str, option: str, value: Any, *, minimum: int | None = None) -> int:
    """An integer (``3`` or ``"3"``, not ``3.5`` or ``True``), at least ``minimum``."""
    return _opts.as_int(option, value, min=minimum, error=error_for(task))


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
    return _opts.as_float(option, value, min=low, max=high, min_open=low_open, max_open=high_open, error=error_for(task))


def check_bool(task: str, option: str, value: Any) -> bool:
    """``true``/``false`` (the harness's one boolean rule)."""
    return _opts.as_bool(option, value, error=error_for(task))


def check_choice(task: str, option: str, value: Any, allowed: Sequence[Any]) -> Any:
    """One of ``allowed``."""
    return _opts.as_choice(option, value, allowed, error=error_for(task))


def check_str(task: str, option: str, value: Any, *, allow_none: bool = False) -> str | None:
    """A non-empty string (or ``None`` when allowed)."""
    if value is None and allow_none:
        return None
    return _opts.as_str(option, value, error=error_for(task))


def _as_sequence(task: str, option: str, value: Any) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TaskConfigError.from_message(task, f"{option}={value!r} must be a list", option=option, value=value)
    return list(value)


def check_float_tuple(task: str, option: str, value: Any, *, positive: bool = True) -> tuple[float, ...]:
    """A non-empty list of finite numbers (strictly positive unless ``positive=False``)."""
    items = _opts.as_list(option, value, lambda k, v: _opts.as_float(k, v, min=0 if positive else None, min_open=positive,
                                                                      error=error_for(task)),
                          min_len=1, error=error_for(task))
    return tuple(items)


def check_int_tuple(task: str, option: str, value: Any, *, minimum: int = 1) -> tuple[int, ...]:
    """A non-empty list of integers >= ``minimum`` (sorted, duplicates removed)."""
    items = _opts.as_list(option, value, lambda k, v: _opts.as_int(k, v, min=minimum, error=error_for(task)),
                          min_len=1, error=error_for(task))
    return tuple(sorted(set(items)))


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
