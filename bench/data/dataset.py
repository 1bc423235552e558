"""The dataset container every data format produces: :class:`MultiGranularDataset`.

It holds its samples as columns (:class:`~bench.data.table.SampleTable`: numpy arrays and interned values,
a few hundred bytes per sample, not a list of Python objects) and derives, once, the arrays the objectives
need per level:

- ``text_ids(level)``: an int64 id per sample, equal ids if and only if the texts are identical strings
  (the released MGLL code's notion of co-occurrence), numbered in order of first appearance; ``-1`` where
  the text is missing;
- ``multi_hot(level)``: 0/1 over that level's label vocabulary ``vocab[level]``;
- ``present(level)``: which samples have a text at that level.

``dataset[i]`` and ``dataset.samples`` (a read-only sequence) build :class:`~bench.data.sample.Sample`
objects on demand, equal to the ones the format produced; code that runs over a whole corpus reads the
columns instead (``sample_ids()``, ``split_names()``, ``patient_ids()``, ``texts(level)``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from typing import Iterable, Sequence

import numpy as np

from .sample import Sample, TaskSpec, load_image
from .table import ABSENT, NONE, SampleTable


class SampleView(SequenceABC):
    """The samples of a :class:`SampleTable` as a read-only sequence of :class:`Sample` (built on access)."""

    __slots__ = ("_table",)

    def __init__(self, table: SampleTable):
        self._table = table

    def __len__(self) -> int:
        return len(self._table)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._table.sample(j) for j in range(*i.indices(len(self._table)))]
        return self._table.sample(i)

    def __iter__(self):
        for i in range(len(self._table)):
            yield self._table.sample(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SampleView, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SampleView(n={len(self)})"


class MultiGranularDataset:
    """Samples plus the per-level vocabularies and the downstream tasks the data provides.

    ``samples``: a sequence of :class:`Sample` or a :class:`SampleTable`. ``levels`` is the ordered list of
    text granularities (coarse to fine), ``vocab`` maps each level to its label vocabulary (the column order
    of ``multi_hot``; default: the labels seen, sorted), ``task_specs`` maps a downstream task name to its
    :class:`TaskSpec`. ``name`` is a short description used in logs and metrics; ``stats`` holds counts the
    data layer reports in a cell's metrics (as ``data/<key>``), e.g. how many bad samples were skipped.
    """

    def __init__(
        self,
        samples: Iterable[Sample] | SampleTable,
        levels: Sequence[str],
        vocab: dict[str, Sequence[str]] | None = None,
        task_specs: dict[str, TaskSpec] | None = None,
        name: str = "dataset",
        stats: dict[str, float] | None = None,
    ):
        self.table = samples if isinstance(samples, SampleTable) else SampleTable.from_samples(samples)
        self.levels = tuple(levels)
        self.name = name
        if vocab is None:
            vocab = {g: self.labels_seen(g) for g in self.levels}
        self.vocab = {g: tuple(vocab.get(g, ())) for g in self.levels}
        self.task_specs = dict(task_specs or {})
        # counts the data layer wants reported in a cell's metrics (e.g. skipped bad samples)
        self.stats: dict[str, float] = dict(stats or {})
        self._cache: dict[tuple, np.ndarray] = {}

    def _new(self, table: SampleTable, name: str | None = None, levels: Sequence[str] | None = None) -> "MultiGranularDataset":
        return MultiGranularDataset(table, self.levels if levels is None else levels, self.vocab, self.task_specs,
                                    name=name or self.name, stats=self.stats)

    # -- basic access ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> Sample:
        return self.table.sample(i)

    def __repr__(self) -> str:
        return f"MultiGranularDataset({self.name!r}, n={len(self)}, levels={list(self.levels)})"

    @property
    def samples(self) -> SampleView:
        return SampleView(self.table)

    def image(self, i: int) -> np.ndarray:
        return load_image(self.table.images[i])

    def sample_id(self, i: int) -> str:
        return self.table.ids[i]

    def sample_ids(self) -> list[str]:
        return self.table.ids.tolist()

    def split_names(self) -> list[str | None]:
        return self.table.split.tolist()

    def patient_ids(self) -> list[str | None]:
        return self.table.patient.tolist()

    def labels_seen(self, level: str) -> list[str]:
        """The labels some sample has at ``level``, sorted."""
        col = self.table.labels.get(level)
        return sorted({lab for labs in col.used() for lab in labs}) if col is not None else []

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> "MultiGranularDataset":
        return self._new(self.table.take(indices), name)

    def split(self, split: str) -> "MultiGranularDataset":
        """The samples whose ``split`` field equals ``split``."""
        return self.subset(np.flatnonzero(self.table.split.where(split)), name=f"{self.name}[{split}]")

    def with_levels(self, levels: Sequence[str]) -> "MultiGranularDataset":
        """The same samples seen through a subset (or reordering) of the levels."""
        unknown = [g for g in levels if g not in self.levels]
        if unknown:
            raise ValueError(f"{self.name}: unknown level(s) {unknown}; the data has levels {list(self.levels)}")
        return self._new(self.table, levels=levels)

    def with_table(self, table: SampleTable, stats: dict[str, float] | None = None) -> "MultiGranularDataset":
        """The same levels, vocabularies and tasks over other columns (e.g. with drawn splits)."""
        out = self._new(table)
        if stats is not None:
            out.stats = dict(stats)
        return out

    # -- derived per-level arrays ----------------------------------------------------------------------
    def texts(self, level: str) -> list[str | None]:
        self._check_level(level)
        col = self.table.texts.get(level)
        return col.tolist() if col is not None else [None] * len(self)

    def present(self, level: str) -> np.ndarray:
        self._check_level(level)
        col = self.table.texts.get(level)
        return col.codes >= 0 if col is not None else np.zeros(len(self), dtype=bool)

    def text_ids(self, level: str) -> np.ndarray:
        """int64 [N]: equal ids iff identical text strings, numbered in order of first appearance; -1 where
        the text is missing."""
        key = ("ids", level)
        if key not in self._cache:
            self._check_level(level)
            ids = np.full(len(self), -1, dtype=np.int64)
            col = self.table.texts.get(level)
            if col is not None:
                have = col.codes >= 0
                codes = col.codes[have]
                uniq, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
                rank = np.empty(len(uniq), dtype=np.int64)
                rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
                ids[have] = rank[inverse.reshape(-1)]
            self._cache[key] = ids
        return self._cache[key]

    def multi_hot(self, level: str) -> np.ndarray:
        """uint8 [N, C_level] over ``vocab[level]``."""
        key = ("mh", level)
        if key not in self._cache:
            self._check_level(level)
            col = {lab: j for j, lab in enumerate(self.vocab[level])}
            labels = self.table.labels.get(level)
            if labels is None:
                mh = np.zeros((len(self), len(col)), dtype=np.uint8)
            else:  # one row per distinct label set, then gathered by code (absent / None: no labels)
                rows = np.zeros((len(labels.values) + 1, len(col)), dtype=np.uint8)
                for j, labs in enumerate(labels.values):
                    for lab in labs or ():
                        if lab not in col:
                            users = np.flatnonzero(labels.codes == j)
                            if not len(users):  # a label set no sample of this subset has
                                continue
                            i = int(users[0])
                            raise KeyError(
                                f"{self.name}: sample {self.sample_id(i)!r} has label {lab!r} at level {level!r}, "
                                f"which is not in that level's vocabulary {list(self.vocab[level])}"
                            )
                        rows[j, col[lab]] = 1
                mh = rows[np.where(labels.codes >= 0, labels.codes, len(labels.values))]
            self._cache[key] = mh
        return self._cache[key]

    def task_targets(self, task: str) -> np.ndarray:
        """int64 [N] for a multi-class task, uint8 [N, C] for a multi-label task."""
        if task not in self.task_specs:
            raise KeyError(f"{self.name}: no downstream task {task!r}; it provides {sorted(self.task_specs)}")
        spec = self.task_specs[task]
        col = self.table.targets.get(task)
        lacking = np.flatnonzero(col.codes < 0) if col is not None else np.arange(len(self))
        if len(lacking):
            raise ValueError(f"{self.name}: {len(lacking)} sample(s) lack a target for task {task!r}, "
                             f"e.g. {[self.sample_id(int(i)) for i in lacking[:3]]}")
        if spec.kind == "multiclass":
            if col is None:
                return np.zeros(0, np.int64)
            return np.asarray(col.values, dtype=np.int64).reshape(-1)[col.codes]
        if col is None:
            return np.zeros((0, len(spec.classes)), np.uint8)
        return np.asarray(col.values, dtype=np.uint8).reshape(len(col.values), len(spec.classes))[col.codes]

    def _check_level(self, level: str) -> None:
        if level not in self.levels:
            raise KeyError(f"{self.name}: unknown level {level!r}; the data has levels {list(self.levels)}")


__all__ = ["ABSENT", "NONE", "MultiGranularDataset", "SampleTable", "SampleView"]
