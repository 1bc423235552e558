"""Exceptions raised by the objective registry.

- :class:`ObjectiveConfigError` (a ``ValueError``): an unknown objective name, an unknown option key or a bad
  option value. Raised by :func:`objectives.build` (build time) or, when the problem can only be seen with a
  batch (e.g. ``skl`` asked for and the batch has one level), at the first call. The message names the
  objective, the option and what is allowed.
- :class:`ObjectiveInputError` (a ``ValueError``): a batch that does not fit the call contract (shapes, a
  missing level, ids given where multi-hot labels are required).
- :class:`ObjectiveNumericsError` (a ``FloatingPointError``): a term came out NaN or infinite. The message
  names the term. The runner records it as a failed cell.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Iterable

from bench.errors import ConfigError

__all__ = ["ObjectiveConfigError", "ObjectiveInputError", "ObjectiveNumericsError"]


class ObjectiveConfigError(ConfigError):
    """A bad objective name or option. ``objective``, ``option``, ``value`` and ``allowed`` are kept as
    attributes for programs; the message says all of them in words."""

    def __init__(
        self,
        objective: str,
        option: str | None,
        message: str,
        *,
        value: Any = None,
        allowed: Iterable[Any] | str | None = None,
    ):
        self.objective = objective
        self.option = option
        head = f"objective {objective!r}"
        if option is not None:
            head += f", option {option!r}"
        text = f"{head}: {message}"
        if allowed is not None:
            text += f" (allowed: {allowed if isinstance(allowed, str) else list(allowed)})"
        super().__init__(text, key=f"objective.{option}" if option else "objective.name", value=value)
        self.allowed = allowed if isinstance(allowed, (str, type(None))) else list(allowed)


class ObjectiveInputError(ValueError):
    """A batch that does not fit the call contract of an objective."""


class ObjectiveNumericsError(FloatingPointError):
    """A loss term is NaN or infinite; ``term`` names it."""

    def __init__(self, objective: str, term: str, message: str):
        self.objective = objective
        self.term = term
        super().__init__(f"objective {objective!r}: term {term!r} {message}")
