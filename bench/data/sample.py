"""The one in-memory sample type, and the dataset container every data format produces.

Every adapter in ``bench/data/`` (the embedded ``fundus_synth`` and ``digits`` sets, the MGLL JSON lists,
CSV label tables, JSONL manifests) turns its input into a list of :class:`Sample` and wraps it in a
:class:`MultiGranularDataset`. The rest of the harness (training, objectives, tasks) only sees this type.

A sample carries
- ``image``: an ``H x W x 3`` uint8 RGB array, or a path that is read lazily (PIL for ordinary image files,
  ``np.load(path)["image"]`` for ``.npz``), or an :class:`ImageRef` (a member of a tar shard);
- ``texts``: one text per level (``None`` when that level's text is missing for this sample);
- ``labels``: the label names per level (a tuple, possibly empty), i.e. the label *set* behind the text;
- ``targets``: downstream-task targets by task name (an ``int`` class index for multi-class tasks, a tuple
  of 0/1 for multi-label tasks, over the classes the dataset declares in ``task_specs``);
- optional ``patient_id`` and ``split`` (``"train"``, ``"val"`` or ``"test"``);
- optional ``origin``: where the sample was read from (file, line/row/record, the image's source field),
  so that validation problems can name the place to fix. Embedded datasets leave it ``None``.

The container derives, once, the tensors the objectives need per level:
- ``text_ids(level)``: an int64 id per sample, equal ids if and only if the texts are identical strings
  (the released MGLL code's notion of co-occurrence); ``-1`` where the text is missing;
- ``multi_hot(level)``: 0/1 over that level's label vocabulary ``vocab[level]``;
- ``present(level)``: which samples have a text at that level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, Sequence

import numpy as np

SPLITS = ("train", "val", "test")


class Origin(NamedTuple):
    """Where a sample came from: ``file`` plus, where it applies, the 1-based ``line`` of a text file
    (JSONL, list files, and CSV files where the header is line 1), the 1-based data ``row`` of a table,
    the 0-based ``record`` index in a JSON array, and the name of the source field holding the image."""

    file: str
    line: int | None = None
    row: int | None = None
    record: int | None = None
    image_field: str | None = None


@dataclass(slots=True)
class Sample:
    id: str
    image: "np.ndarray | str | Path | ImageRef"
    texts: dict[str, str | None]
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    targets: dict[str, int | tuple[int, ...]] = field(default_factory=dict)
    patient_id: str | None = None
    split: str | None = None
    origin: Origin | None = None


@dataclass(frozen=True)
class TaskSpec:
    """A downstream task a dataset provides: its kind and its class names (the order of the targets)."""

    kind: Literal["multiclass", "multilabel"]
    classes: tuple[str, ...]


class ImageRef:
    """An image that is not a file of its own, e.g. a member of a tar shard (:mod:`bench.data.shards`).

    ``read()`` returns the decoded array (raising an error that names where the image lives when its bytes
    are corrupt); ``check()`` returns ``None`` when the image decodes, else what is wrong (used by
    validation); ``fingerprint()`` identifies the image's content for caches. Instances must be small and picklable: DataLoader workers receive them."""

    __slots__ = ()

    def read(self) -> np.ndarray:
        raise NotImplementedError

    def check(self) -> str | None:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A string that changes when the image may have changed (feature caches are keyed by it)."""
        raise NotImplementedError


def load_image(image: "np.ndarray | str | Path | ImageRef") -> np.ndarray:
    """Return an ``H x W x 3`` uint8 RGB array from an array, an :class:`ImageRef` or a file path (``.npz``
    key ``image``, or any image PIL reads)."""
    if isinstance(image, np.ndarray):
        arr = image
    elif isinstance(image, ImageRef):
        arr = image.read()
    else:
        path = Path(image)
        if path.suffix.lower() == ".npz":
            with np.load(path) as z:
                arr = z["image"]
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


class MultiGranularDataset:
    """A list of samples plus the per-level vocabularies and the downstream tasks the data provides.

    ``levels`` is the ordered list of text granularities (coarse to fine), ``vocab`` maps each level to its
    label vocabulary (the column order of ``multi_hot``), ``task_specs`` maps a downstream task name to its
    :class:`TaskSpec`. ``name`` is a short description used in logs and metrics; ``stats`` holds counts the
    data layer reports in a cell's metrics (as ``data/<key>``), e.g. how many bad samples were skipped.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        levels: Sequence[str],
        vocab: dict[str, Sequence[str]] | None = None,
        task_specs: dict[str, TaskSpec] | None = None,
        name: str = "dataset",
        stats: dict[str, float] | None = None,
    ):
        self.samples = list(samples)
        self.levels = tuple(levels)
        self.name = name
        if vocab is None:
            vocab = {g: sorted({lab for s in self.samples for lab in s.labels.get(g, ())}) for g in self.levels}
        self.vocab = {g: tuple(vocab.get(g, ())) for g in self.levels}
        self.task_specs = dict(task_specs or {})
        # counts the data layer wants reported in a cell's metrics (e.g. skipped bad samples)
        self.stats: dict[str, float] = dict(stats or {})
        self._cache: dict[tuple, np.ndarray] = {}

    # -- basic access ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def __repr__(self) -> str:
        return f"MultiGranularDataset({self.name!r}, n={len(self)}, levels={list(self.levels)})"

    def image(self, i: int) -> np.ndarray:
        return load_image(self.samples[i].image)

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> "MultiGranularDataset":
        return MultiGranularDataset(
            [self.samples[int(i)] for i in indices],
            self.levels,
            self.vocab,
            self.task_specs,
            name=name or self.name,
            stats=self.stats,
        )

    def split(self, split: str) -> "MultiGranularDataset":
        """The samples whose ``split`` field equals ``split``."""
        idx = [i for i, s in enumerate(self.samples) if s.split == split]
        return self.subset(idx, name=f"{self.name}[{split}]")

    def with_levels(self, levels: Sequence[str]) -> "MultiGranularDataset":
        """The same samples seen through a subset (or reordering) of the levels."""
        unknown = [g for g in levels if g not in self.levels]
        if unknown:
            raise ValueError(f"{self.name}: unknown level(s) {unknown}; the data has levels {list(self.levels)}")
        return MultiGranularDataset(self.samples, levels, self.vocab, self.task_specs, name=self.name, stats=self.stats)

    # -- derived per-level arrays ----------------------------------------------------------------------
    def texts(self, level: str) -> list[str | None]:
        self._check_level(level)
        return [s.texts.get(level) for s in self.samples]

    def present(self, level: str) -> np.ndarray:
        return np.array([t is not None for t in self.texts(level)], dtype=bool)

    def text_ids(self, level: str) -> np.ndarray:
        """int64 [N]: equal ids iff identical text strings; -1 where the text is missing."""
        key = ("ids", level)
        if key not in self._cache:
            texts = self.texts(level)
            table: dict[str, int] = {}
            ids = np.full(len(texts), -1, dtype=np.int64)
            for i, t in enumerate(texts):
                if t is not None:
                    ids[i] = table.setdefault(t, len(table))
            self._cache[key] = ids
        return self._cache[key]

    def multi_hot(self, level: str) -> np.ndarray:
        """uint8 [N, C_level] over ``vocab[level]``."""
        key = ("mh", level)
        if key not in self._cache:
            self._check_level(level)
            col = {lab: j for j, lab in enumerate(self.vocab[level])}
            mh = np.zeros((len(self.samples), len(col)), dtype=np.uint8)
            for i, s in enumerate(self.samples):
                for lab in s.labels.get(level, ()):
                    if lab not in col:
                        raise KeyError(
                            f"{self.name}: sample {s.id!r} has label {lab!r} at level {level!r}, "
                            f"which is not in that level's vocabulary {list(self.vocab[level])}"
                        )
                    mh[i, col[lab]] = 1
            self._cache[key] = mh
        return self._cache[key]

    def task_targets(self, task: str) -> np.ndarray:
        """int64 [N] for a multi-class task, uint8 [N, C] for a multi-label task."""
        if task not in self.task_specs:
            raise KeyError(f"{self.name}: no downstream task {task!r}; it provides {sorted(self.task_specs)}")
        spec = self.task_specs[task]
        vals = [s.targets.get(task) for s in self.samples]
        missing = [s.id for s, v in zip(self.samples, vals) if v is None]
        if missing:
            raise ValueError(f"{self.name}: {len(missing)} sample(s) lack a target for task {task!r}, e.g. {missing[:3]}")
        if spec.kind == "multiclass":
            return np.asarray(vals, dtype=np.int64)
        return np.asarray(vals, dtype=np.uint8).reshape(len(vals), len(spec.classes))

    def _check_level(self, level: str) -> None:
        if level not in self.levels:
            raise KeyError(f"{self.name}: unknown level {level!r}; the data has levels {list(self.levels)}")
