"""Data problems: one :class:`Problem` per thing to fix, and :class:`DataValidationError` carrying them all.

Adapters collect parse-time problems (missing fields, bad values, unknown labels) across a whole file with
a :class:`ProblemLog` and raise them together; ``validate.validate`` adds dataset-level checks (images,
duplicate ids, levels). ``build_dataset`` merges both into one error, or skips the bad samples when
``data.on_bad_sample=skip``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .registry import DataConfigError
from .sample import Origin


@dataclass(frozen=True)
class Problem:
    """One problem with the data.

    ``file``: the file to fix (a manifest, list, table or image file); ``field``: the field, column or option
    concerned; ``line`` (1-based line of a text file; a CSV's header is line 1), ``row`` (1-based data row of
    a table) or ``record`` (0-based index in a JSON array) say where; ``sample``: the id (or, when no id could
    be read, ``file:line``) of the bad sample, or ``None`` for a problem of the whole file or dataset, which
    skipping samples cannot fix.
    """

    file: str | None
    field: str | None
    message: str
    line: int | None = None
    row: int | None = None
    record: int | None = None
    sample: str | None = None

    @property
    def skippable(self) -> bool:
        return self.sample is not None

    def where(self) -> str:
        parts = [str(self.file) if self.file else "<data>"]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.record is not None:
            parts.append(f"record {self.record}")
        return ", ".join(parts)

    def __str__(self) -> str:
        field = f" [{self.field}]" if self.field else ""
        return f"{self.where()}{field}: {self.message}"

    @classmethod
    def at(cls, origin: Origin | None, field: str | None, message: str, sample: str | None) -> "Problem":
        """A problem located at a sample's :class:`Origin`."""
        if origin is None:
            return cls(None, field, message, sample=sample)
        return cls(origin.file, field, message, line=origin.line, row=origin.row, record=origin.record, sample=sample)


class DataValidationError(DataConfigError):
    """The data has problems; ``.problems`` lists every one of them (str() prints them all).

    ``.partial`` (when an adapter raises it) is the dataset of the samples that parsed cleanly, which
    ``build_dataset`` uses with ``data.on_bad_sample=skip``; it is not pickled.
    """

    def __init__(self, problems: Iterable[Problem], partial: Any = None):
        self.problems = list(problems)
        self.partial = partial
        super().__init__(self._message())

    def _message(self) -> str:
        n = len(self.problems)
        head = f"{n} data problem{'s' if n != 1 else ''}:"
        return "\n".join([head] + [f"  - {p}" for p in self.problems])

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):
        return (type(self), (self.problems,))


class ProblemLog:
    """Collects problems while a file is parsed; ``raise_if_any`` raises them together."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def __len__(self) -> int:
        return len(self.problems)

    def bad_samples(self) -> set[str]:
        return {p.sample for p in self.problems if p.sample is not None}

    def raise_if_any(self, partial: Any = None) -> None:
        if self.problems:
            raise DataValidationError(self.problems, partial=partial)
