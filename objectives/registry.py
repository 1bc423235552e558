"""The registry of objectives: names (and aliases) -> classes, and :func:`build`.

- :data:`OBJECTIVES` maps a name (and each alias) to its class; :func:`register` fills it;
- :func:`build` returns the objective registered as ``name``, its options checked now (unknown keys, bad
  values: :class:`~objectives.errors.ObjectiveConfigError` naming the objective, the option and what is
  allowed), not at the first step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.errors import close_matches

from .errors import ObjectiveConfigError

__all__ = ["OBJECTIVES", "build", "register"]

OBJECTIVES: dict[str, type] = {}


def register(name: str, *aliases: str) -> Callable[[type], type]:
    """Class decorator: ``@register("soft_clip", "unicl", "flair")`` adds the class under each name."""

    def deco(cls: type) -> type:
        for key in (name, *aliases):
            if key in OBJECTIVES and OBJECTIVES[key] is not cls:
                raise ValueError(f"objective name {key!r} is already registered by {OBJECTIVES[key].__name__}")
            OBJECTIVES[key] = cls
        cls.name = name
        cls.aliases = tuple(aliases)
        options = getattr(cls, "Options", None)
        if options is not None and "objective" not in vars(options):
            options.objective = name  # the name option messages use when the dataclass is built directly
        return cls

    return deco


def build(name: str, **options: Any):
    """The objective registered as ``name``, built with ``options`` (checked now)."""
    if name not in OBJECTIVES:
        close = close_matches(str(name), list(OBJECTIVES))
        hint = f"; did you mean {close}?" if close else ""
        raise ObjectiveConfigError(str(name), None, f"unknown objective{hint}", allowed=sorted(OBJECTIVES))
    return OBJECTIVES[name](_name=name, **options)
