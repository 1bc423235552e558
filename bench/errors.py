"""The one error root of the harness: :class:`ConfigError`, and its subclasses.

Every problem a user can fix by changing a configuration, a grid/suite/profile file or the data it points to
raises a :class:`ConfigError` (a ``ValueError``). The entry points (``bench.run``, ``bench.report``,
``bench.status``, ``bench.data.export``) catch it, print ``error: <message>`` and exit with status 2, no
traceback. Subclasses exist where a caller needs to tell the kinds apart (a test expecting an objective
error, the preflight grouping its problems by section):

==========================  =====================================================================
class                       raised for
==========================  =====================================================================
``DataConfigError``         ``data.*`` options, data formats, suites' datasets
``ModelConfigError``        ``image.*``, ``text.*``, ``model.*``
``ObjectiveConfigError``    ``objective.*`` (defined in :mod:`objectives.errors`)
``TaskConfigError``         task entries (defined in :mod:`tasks.registry`)
``LauncherError``           ``launcher.*`` and SLURM profiles (defined in :mod:`bench.launch`)
``ReportError``             ``bench.report`` options and results folders it cannot report
==========================  =====================================================================

The message always names the key as the user writes it (``train.epochs``, ``objective.terms``,
``tasks[1].label_fraction``), the value, and what is allowed; :mod:`bench.options` builds those messages.
The parts are also kept as attributes (``key``, ``value``, ``allowed``) for programs and tests.

This module imports nothing heavy: ``objectives`` and ``tasks`` import it without loading the harness.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

__all__ = ["ConfigError", "DataConfigError", "ModelConfigError", "NOTSET", "close_matches", "did_you_mean"]


class _NotSet:
    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return "NOTSET"


#: "no value given" (``None`` is a legitimate value of many options)
NOTSET: Any = _NotSet()


def close_matches(name: Any, candidates: Iterable[Any], n: int = 3) -> list[str]:
    """Up to ``n`` candidates close to ``name`` (case-insensitive), as strings."""
    cands = [str(c) for c in candidates]
    lower: dict[str, str] = {}
    for c in cands:
        lower.setdefault(c.lower(), c)
    found = difflib.get_close_matches(str(name).lower(), list(lower), n=n, cutoff=0.6)
    return [lower[f] for f in found]


def did_you_mean(name: Any, candidates: Iterable[Any]) -> str:
    """``" (did you mean a, b?)"`` or ``""``."""
    close = close_matches(name, candidates)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def format_allowed(allowed: Any) -> str:
    if isinstance(allowed, str):
        return allowed
    try:
        items = list(allowed)
    except TypeError:
        return str(allowed)
    return ", ".join(str(a) for a in items) if items else "none"


class ConfigError(ValueError):
    """A configuration problem the user can fix. ``str()`` is the whole message.

    ``ConfigError(message, key=..., value=..., allowed=...)``: ``allowed`` (a list or a phrase) is appended to
    the message as ``; allowed: ...``. The attributes keep the parts."""

    def __init__(self, message: str, *, key: str | None = None, value: Any = NOTSET, allowed: Any = None):
        self.key = key
        self.value = value
        self.allowed = list(allowed) if allowed is not None and not isinstance(allowed, str) else allowed
        text = str(message)
        if allowed is not None:
            text += f"; allowed: {format_allowed(allowed)}"
        super().__init__(text)


class DataConfigError(ConfigError):
    """A ``data.*`` option, a data format or a dataset of a suite is wrong."""


class ModelConfigError(ConfigError):
    """An ``image.*``, ``text.*`` or ``model.*`` option is wrong."""
