"""The task registry: a plain dict filled by the :func:`register` decorator, and :func:`build`.

``build(name, **options)`` looks the task up, and the task class validates its options at construction
(unknown option, wrong type or value -> :class:`TaskConfigError` naming the task, the option and what is
allowed, with close matches for misspellings).
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterable, TypeVar

from bench.errors import ConfigError

T = TypeVar("T")

TASKS: dict[str, type] = {}


class TaskConfigError(ConfigError):
    """A task name or option is wrong. Names the task, the option and the allowed values.

    Attributes: ``task``, ``option`` (``None`` for an unknown task name), ``value`` and ``allowed``.
    """

    def __init__(
        self,
        task: str,
        option: str | None,
        message: str,
        *,
        value: Any = None,
        allowed: Iterable[Any] | None = None,
    ):
        self.task = task
        self.option = option
        where = f"task {task!r}" if option is None else f"task {task!r}, option {option!r}"
        text = f"{where}: {message}"
        allowed = list(allowed) if allowed is not None else None
        if allowed is not None:
            strs = [str(a) for a in allowed]
            if isinstance(value, str):
                close = difflib.get_close_matches(value, strs, n=3)
                if close:
                    text += f" (did you mean {', '.join(repr(c) for c in close)}?)"
            text += f"; allowed: {strs}"
        super().__init__(text, key=option, value=value)
        self.allowed = allowed

    @classmethod
    def from_message(cls, task: str, message: str, *, option: str | None = None, value: Any = None,
                     allowed: Any = None) -> "TaskConfigError":
        """An error whose ``message`` already names the option and value (from :mod:`bench.options`)."""
        self = cls.__new__(cls)
        self.task, self.option = task, option
        ConfigError.__init__(self, f"task {task!r}: {message}", key=option, value=value, allowed=allowed)
        return self


def register(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: add a task class to :data:`TASKS` under ``name`` (and set ``cls.name``)."""

    def deco(cls: type[T]) -> type[T]:
        if name in TASKS and TASKS[name] is not cls:
            raise ValueError(f"task {name!r} is already registered by {TASKS[name].__qualname__}")
        cls.name = name  # type: ignore[attr-defined]
        TASKS[name] = cls
        return cls

    return deco


def build(name: str, **options: Any):
    """Build the task registered as ``name`` with ``options`` (validated now, not at run time)."""
    if name not in TASKS:
        from . import load_builtin_tasks  # the registry is filled on first use (``import tasks`` is lazy)

        load_builtin_tasks()
    if name not in TASKS:
        raise TaskConfigError(name, None, "unknown task", value=name, allowed=sorted(TASKS))
    return TASKS[name](**options)
