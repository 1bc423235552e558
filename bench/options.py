"""The one option-checking module: every builder (run config, data formats, towers, objectives, tasks,
launchers, report) checks what the user wrote with these rules, so a value means the same everywhere and
every message says the key, the value and what is allowed.

The rules
---------
- **boolean**: ``true`` or ``false`` (a bool, or the strings ``"true"``/``"false"`` in any case). Nothing
  else: not ``yes``/``no``, not ``0``/``1``.
- **number**: an int or float (never a bool), or a string that reads as one (``"1e-3"``: plain YAML leaves
  that a string); finite. An integer option takes whole numbers only (``3``, ``3.0``, ``"3"``; not ``3.5``).
  Bounds come with the option (``min``/``max``, open or closed).
- **string / choice**: a string; a choice names the allowed values and the close matches of a misspelling.
- **list**: a list (or tuple); a single item stands for a one-element list (``objective.terms=sclip``).
- **unknown option**: the key, the close matches ("did you mean"), and every allowed key.

Options as dataclasses
----------------------
A builder declares its options as a dataclass; :func:`parse` checks a mapping against it. The annotation of
a field is its type (``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]``,
``list[X]``, fixed tuples, ``dict``, ``Any`` and unions of these); ``field(metadata=...)`` adds ``help``
(documentation: ``--help`` and the docs tables are generated from it), ``min``/``max`` (with
``min_open``/``max_open``), ``choices`` and ``check`` (a callable ``(key, value) -> value`` for anything else).
An annotation this module does not know is a ``TypeError`` when the options are parsed: a programming
error, never silently let through. :func:`describe` lists the options for documentation.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Union

from .errors import NOTSET, ConfigError, close_matches, did_you_mean, format_allowed

__all__ = [
    "OptionDoc",
    "as_bool",
    "as_choice",
    "as_float",
    "as_int",
    "as_list",
    "as_mapping",
    "as_str",
    "check_known",
    "coerce",
    "describe",
    "parse",
]

ErrorType = Callable[..., Exception]


def _fail(error: ErrorType, key: str, value: Any, problem: str, allowed: Any = None) -> Exception:
    hint = did_you_mean(value, allowed) if isinstance(value, str) and allowed is not None and not isinstance(allowed, str) else ""
    return error(f"{key}={value!r} {problem}{hint}", key=key, value=value, allowed=allowed)


# ----------------------------------------------------------------------------------------------------------
# scalar rules
# ----------------------------------------------------------------------------------------------------------
def as_bool(key: str, value: Any, *, error: ErrorType = ConfigError) -> bool:
    """``true``/``false`` (bools, or those strings in any case); anything else is an error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _fail(error, key, value, "must be true or false")


def _number(key: str, value: Any, error: ErrorType) -> float:
    if isinstance(value, bool) or value is None:
        raise _fail(error, key, value, "must be a number")
    if isinstance(value, numbers.Real):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise _fail(error, key, value, "must be a number") from None
    else:
        raise _fail(error, key, value, "must be a number")
    if not math.isfinite(out):
        raise _fail(error, key, value, "must be a finite number")
    return out


def _bounds(key: str, value: Any, out: float, lo, hi, lo_open: bool, hi_open: bool, error: ErrorType) -> None:
    bad_lo = lo is not None and (out <= lo if lo_open else out < lo)
    bad_hi = hi is not None and (out >= hi if hi_open else out > hi)
    if bad_lo or bad_hi:
        lo_s, hi_s = (f"{b:g}" if isinstance(b, float) else str(b) for b in (lo, hi))
        if hi is None:
            want = f"> {lo_s}" if lo_open else f">= {lo_s}"
        elif lo is None:
            want = f"< {hi_s}" if hi_open else f"<= {hi_s}"
        else:
            want = f"in {'(' if lo_open else '['}{lo_s}, {hi_s}{')' if hi_open else ']'}"
        raise _fail(error, key, value, f"must be {want}")


def as_int(key: str, value: Any, *, min: int | None = None, max: int | None = None, error: ErrorType = ConfigError) -> int:
    """A whole number (``3``, ``3.0``, ``"3"``), within ``[min, max]``."""
    if isinstance(value, bool) or value is None:
        raise _fail(error, key, value, "must be an integer")
    if isinstance(value, numbers.Integral):
        out = int(value)
    else:
        try:
            f = _number(key, value, error)
        except ConfigError:
            raise _fail(error, key, value, "must be an integer") from None
        if f != int(f):
            raise _fail(error, key, value, "must be an integer")
        out = int(f)
    _bounds(key, value, out, min, max, False, False, error)
    return out


def as_float(
    key: str,
    value: Any,
    *,
    min: float | None = None,
    max: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
    error: ErrorType = ConfigError,
) -> float:
    """A finite number within the bounds (``min_open``/``max_open`` exclude the end points)."""
    out = _number(key, value, error)
    _bounds(key, value, out, min, max, min_open, max_open, error)
    return out


def as_str(key: str, value: Any, *, allow_empty: bool = False, error: ErrorType = ConfigError) -> str:
    """A string (non-empty unless ``allow_empty``)."""
    if not isinstance(value, str) or (not value and not allow_empty):
        raise _fail(error, key, value, "must be a non-empty string" if not allow_empty else "must be a string")
    return value


def as_choice(key: str, value: Any, allowed: Sequence[Any], *, error: ErrorType = ConfigError) -> Any:
    """One of ``allowed`` (the message lists them, with close matches of a misspelling)."""
    if isinstance(value, (list, dict)) or value not in list(allowed):
        raise _fail(error, key, value, "is not allowed", allowed=list(allowed))
    return value


def as_list(
    key: str,
    value: Any,
    item: Callable[[str, Any], Any] | None = None,
    *,
    min_len: int = 0,
    length: int | None = None,
    error: ErrorType = ConfigError,
) -> list:
    """A list (a single item counts as a one-element list); ``item(key, value)`` checks each element."""
    if value is None:
        raise _fail(error, key, value, "must be a list")
    if isinstance(value, (str, bytes, numbers.Number)) or not isinstance(value, (Sequence, Iterable)) or isinstance(value, Mapping):
        if isinstance(value, Mapping):
            raise _fail(error, key, value, "must be a list")
        value = [value]
    items = list(value)
    if length is not None and len(items) != length:
        raise _fail(error, key, value, f"must be a list of {length} values")
    if len(items) < min_len:
        raise _fail(error, key, value, "must not be empty" if min_len == 1 else f"must have at least {min_len} values")
    if item is not None:
        items = [item(f"{key}[{i}]", v) for i, v in enumerate(items)]
    return items


def as_mapping(key: str, value: Any, *, error: ErrorType = ConfigError) -> dict:
    if not isinstance(value, Mapping):
        raise _fail(error, key, value, "must be a mapping (key: value, ...)")
    return dict(value)


def check_known(
    given: Iterable[str],
    allowed: Iterable[str],
    *,
    prefix: str = "",
    owner: str = "",
    error: ErrorType = ConfigError,
) -> None:
    """Raise for the first key of ``given`` not in ``allowed``: the key, close matches, every allowed key."""
    allowed = list(allowed)
    unknown = [str(k) for k in given if k not in allowed]
    if not unknown:
        return
    first = unknown[0]
    also = f" (also unknown: {', '.join(prefix + k for k in unknown[1:])})" if len(unknown) > 1 else ""
    where = f" of {owner}" if owner else ""
    close = close_matches(first, allowed)
    hint = f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""
    raise error(
        f"{prefix}{first} is not an option{where}{hint}{also}",
        key=prefix + first,
        allowed=[prefix + a for a in allowed] or "none",
    )


# ----------------------------------------------------------------------------------------------------------
# type-directed coercion (dataclass fields)
# ----------------------------------------------------------------------------------------------------------
def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def coerce(key: str, value: Any, tp: Any, meta: Mapping[str, Any] | None = None, *, error: ErrorType = ConfigError) -> Any:
    """``value`` checked and converted to the annotation ``tp`` with the rules above (``meta``: the field's
    metadata: ``min``, ``max``, ``min_open``, ``max_open``, ``choices``, ``check``)."""
    meta = dict(meta or {})
    out = _coerce(key, value, tp, meta, error)
    check = meta.get("check")
    if check is not None and out is not None:
        out = check(key, out)
    return out


def _coerce(key: str, value: Any, tp: Any, meta: dict, error: ErrorType) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if _is_union(tp):
        members = [a for a in args if a is not type(None)]
        if value is None:
            if type(None) in args:
                return None
            raise _fail(error, key, value, "must not be empty (null)")
        if len(members) == 1:
            return _coerce(key, value, members[0], meta, error)
        # several types: the first that accepts the value (bool before numbers, numbers before strings)
        order = sorted(members, key=lambda t: {bool: 0, int: 1, float: 2, str: 4}.get(t, 3))
        for t in order:
            try:
                return _coerce(key, value, t, meta, error)
            except ConfigError:
                continue
        raise _fail(error, key, value, f"must be {_type_words(tp)}")
    if value is None:
        raise _fail(error, key, value, f"must be {_type_words(tp)}, not null")
    if origin is Literal:
        return as_choice(key, value, list(args), error=error)
    if tp is bool:
        return as_bool(key, value, error=error)
    if tp is int:
        out = as_int(key, value, min=meta.get("min"), max=meta.get("max"), error=error)
        if "choices" in meta:
            as_choice(key, out, meta["choices"], error=error)
        return out
    if tp is float:
        return as_float(key, value, min=meta.get("min"), max=meta.get("max"), min_open=bool(meta.get("min_open")),
                        max_open=bool(meta.get("max_open")), error=error)
    if tp is str:
        if "choices" in meta:
            return as_choice(key, value, meta["choices"], error=error)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _fail(error, key, value, "must be a string")
        return as_str(key, str(value), allow_empty=bool(meta.get("allow_empty")), error=error)
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        item_meta = {k: v for k, v in meta.items() if k in ("min", "max", "min_open", "max_open", "choices")}
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            items = as_list(key, value, length=len(args), min_len=meta.get("min_len", 0), error=error)
            return tuple(_coerce(f"{key}[{i}]", v, t, item_meta, error) for i, (v, t) in enumerate(zip(items, args)))
        item_tp = args[0] if args else Any
        items = as_list(key, value, lambda k, v: _coerce(k, v, item_tp, item_meta, error), min_len=meta.get("min_len", 0),
                        error=error)
        return list(items) if origin is list or tp is list else tuple(items)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return as_mapping(key, value, error=error)
    raise TypeError(f"bench.options: option {key!r} has an annotation this module does not check: {tp!r}")


def _type_words(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_union(tp):
        words = [_type_words(a) for a in args if a is not type(None)]
        return " or ".join(words) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + format_allowed(args)
    if origin in (tuple, list) or tp in (tuple, list):
        return "a list"
    if origin in (dict, Mapping) or tp is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def parse(
    cls: type,
    given: Mapping[str, Any] | None,
    *,
    prefix: str = "",
    owner: str = "",
    error: ErrorType = ConfigError,
    drop_none: bool = False,
) -> Any:
    """``cls(**checked)``: unknown keys, missing required keys and every value checked (see :func:`coerce`).

    ``prefix`` is how the user writes the section (``"objective."``), ``owner`` what the options belong to
    (``"objective.name=mgll"``), both used in messages. With ``drop_none`` a ``None`` value means "the
    default" (how open sections of the run config leave an option unset)."""
    given = dict(given or {})
    if drop_none:
        given = {k: v for k, v in given.items() if v is not None}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_known(given, fields, prefix=prefix, owner=owner, error=error)
    hints = _hints(cls)
    values = {}
    for name, f in fields.items():
        if name in given:
            values[name] = coerce(prefix + name, given[name], hints[name], f.metadata, error=error)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise error(f"{prefix}{name} is required" + (f" for {owner}" if owner else ""), key=prefix + name)
    return cls(**values)


@dataclass(frozen=True)
class OptionDoc:
    """One option for documentation: key, type in words, default, help."""

    key: str
    type: str
    default: Any
    help: str


def describe(cls: type, prefix: str = "") -> list[OptionDoc]:
    """The options of ``cls`` (a dataclass) in declaration order, for ``--help`` and the docs tables."""
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = NOTSET
        words = _type_words(hints[f.name])
        if "choices" in f.metadata:
            words = "one of " + format_allowed(f.metadata["choices"])
        out.append(OptionDoc(prefix + f.name, words, "(required)" if default is NOTSET else default, str(f.metadata.get("help", ""))))
    return out
