"""Objective options: one frozen dataclass per objective, checked by ``bench.options``.

Every field is declared with its type and ``field(metadata=...)`` (``help``, ``min``, ``choices``, ``min_len``);
:func:`bench.options.parse` checks what the user wrote (unknown keys with "did you mean", booleans, numbers,
choices, lists) and ``__post_init__`` checks again whatever constructs the dataclass directly, then runs the
class's :meth:`CommonOptions.check` for the rules that involve several fields. Every message names the
objective (as the user called it: an alias is named as such), the option, the value and what is allowed, as
an :class:`~objectives.errors.ObjectiveConfigError` (a ``bench.errors.ConfigError``).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bench import options as bench_options
from bench.errors import NOTSET

from .errors import ObjectiveConfigError

__all__ = ["CommonOptions", "IMPLS", "parse"]

IMPLS = ("fast", "reference")

#: the objective's name as the user called it, while its options are checked (for messages)
_LABEL: contextvars.ContextVar[str | None] = contextvars.ContextVar("objective_label", default=None)


def _option_of(key: str | None) -> str | None:
    """``objective.weights[2]`` -> ``weights``."""
    if not key:
        return None
    key = key[len("objective."):] if key.startswith("objective.") else key
    return re.sub(r"\[\d+\]$", "", key)


def error_for(label: str):
    """An ``error`` factory for :mod:`bench.options` that raises :class:`ObjectiveConfigError` for ``label``."""

    def make(message: str, *, key: str | None = None, value: Any = NOTSET, allowed: Any = None) -> ObjectiveConfigError:
        return ObjectiveConfigError(label, _option_of(key), message, value=None if value is NOTSET else value,
                                    allowed=allowed)

    return make


@contextlib.contextmanager
def _labelled(label: str):
    token = _LABEL.set(label)
    try:
        yield
    finally:
        _LABEL.reset(token)


def parse(label: str, cls: type, raw: Mapping[str, Any]) -> Any:
    """``cls(**raw)`` checked with :func:`bench.options.parse` (messages name ``label``)."""
    with _labelled(label):
        return bench_options.parse(cls, dict(raw), prefix="objective.", owner=f"objective.name={label}",
                                   error=error_for(label))


@dataclass(frozen=True)
class CommonOptions:
    """Options every objective accepts (subclasses add theirs and extend :meth:`check`)."""

    impl: Literal["fast", "reference"] = field(default="fast", metadata={"help": (
        "fast: the fused engine (objectives/engine.py, hand-written backward, no B x B temporaries); reference: "
        "the objective's formula in plain torch with autograd (dense B x B matrices; the tests' oracle)")})
    local_loss: bool = field(default=False, metadata={"help": (
        "under torch.distributed, each rank computes its own rows against the gathered columns (open_clip's "
        "--local-loss); the values returned are still the global ones")})
    gather_with_grad: bool = field(default=True, metadata={"help": (
        "gather features through an autograd all-gather (exact gradients); false: open_clip's plain gather")})
    chunk_size: int = field(default=0, metadata={"min": 0, "help": (
        "0 = off; c > 0 = compute in blocks of c rows without storing any B x B matrix (the backward "
        "recomputes the blocks); impl=fast only")})

    def __post_init__(self) -> None:
        label = self.label()
        err = error_for(label)
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            if not f.init:
                continue
            value = bench_options.coerce(f"objective.{f.name}", getattr(self, f.name), hints[f.name], f.metadata,
                                         error=err)
            object.__setattr__(self, f.name, value)
        self.check()

    @classmethod
    def label(cls) -> str:
        """The objective's name for messages (as called, while :func:`parse` runs)."""
        return _LABEL.get() or getattr(cls, "objective", None) or cls.__name__

    def fail(self, option: str, message: str, *, allowed: Any = None) -> ObjectiveConfigError:
        """The error for ``option`` (to ``raise``)."""
        return ObjectiveConfigError(self.label(), option, message, value=getattr(self, option, None), allowed=allowed)

    def check(self) -> None:
        """Rules that involve several fields (subclasses extend it, calling ``super().check()``)."""
        if self.chunk_size and self.impl == "reference":
            raise self.fail("chunk_size", f"chunk_size={self.chunk_size} needs impl=fast (the reference builds every B x B "
                            "matrix)", allowed="0 with impl=reference")

    # -- helpers for subclasses ---------------------------------------------------------------------------
    def check_levels(self, option: str, levels: tuple[str, ...] | None, *, exact: int | None = None) -> None:
        """No level twice; exactly ``exact`` levels when given."""
        if levels is None:
            return
        if len(set(levels)) != len(levels):
            raise self.fail(option, f"repeats a level: {list(levels)}", allowed="distinct level names")
        if exact is not None and len(levels) != exact:
            raise self.fail(option, f"needs exactly {exact} levels, got {list(levels)}",
                            allowed=f"{exact} distinct level names")

    def check_distinct(self, option: str, values: Iterable[Any], allowed: Any) -> None:
        values = list(values)
        if len(set(values)) != len(values):
            raise self.fail(option, f"repeats a value: {values}", allowed=allowed)


#: metadata of a ``levels`` option (None = every level of the batch)
LEVELS_HELP = {"min_len": 1, "help": "the levels taking part, in order (null: every level of the batch)"}
#: metadata of a ``level`` option (None = the batch's first level)
LEVEL_HELP = {"help": "the level to use (null: the batch's first level)"}
TARGET_HELP = {"help": "co-occurrence: exact (equal ids / identical label sets) or jaccard (multi-hot label sets)"}
