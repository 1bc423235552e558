"""The columnar store behind :class:`~bench.data.dataset.MultiGranularDataset`: per-sample metadata in numpy
arrays, not one Python object per sample.

A list of :class:`~bench.data.sample.Sample` costs about 2 KB per sample (a dataclass, four dicts, an
``Origin``, the strings); at 250k samples that is half a gigabyte per rank, grows with the corpus, and every
pass over it touches every object. :class:`SampleTable` holds the same information in a few hundred bytes
per sample:

- ``ids`` and image paths: :class:`StringTable` (one byte buffer + offsets);
- texts, label sets, targets, patient ids, splits, the origin's file and image field: :class:`Interned` columns, an int32
  code per sample into a tuple of the distinct values (so equal texts share one string and one code);
- images that are neither paths nor arrays (e.g. members of tar shards) are packed by their own
  :meth:`ImageRef.pack <bench.data.sample.ImageRef.pack>` (``ShardTable`` for shards); arrays stay a list.

Samples are built on demand (:meth:`SampleTable.sample`), equal to the ones that went in. Codes:
:data:`NONE` (-1) is a ``None`` value, :data:`ABSENT` (-2) a key the sample's dict does not have (a level
without a text or labels, a task without a target), so a round trip is exact.
:class:`TableBuilder` appends samples (or their fields, without making a ``Sample``) one at a time.
"""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .sample import ImageRef, Origin, Sample

PACK_STRINGS = 256  # a column with more distinct strings than this keeps them in a StringTable
NONE = -1  # the value is None
ABSENT = -2  # the key is absent from the sample's dict


class StringTable:
    """Strings packed into one uint8 buffer + int64 offsets (two numpy arrays, no Python objects per item)."""

    def __init__(self, strings: Sequence[str] = (), *, buffer: np.ndarray | None = None, offsets: np.ndarray | None = None):
        if buffer is not None and offsets is not None:
            self.buffer, self.offsets = buffer, offsets
            return
        encoded = [str(s).encode("utf-8") for s in strings]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.buffer[self.offsets[i]:self.offsets[i + 1]].tobytes().decode("utf-8")

    def __iter__(self):
        raw = self.buffer.tobytes()
        off = self.offsets.tolist()
        for a, b in zip(off[:-1], off[1:]):
            yield raw[a:b].decode("utf-8")

    def tolist(self) -> list[str]:
        return list(self)

    def take(self, idx: np.ndarray) -> "StringTable":
        """The strings at ``idx`` (vectorised gather, no Python object per string)."""
        idx = np.asarray(idx, dtype=np.int64)
        starts = self.offsets[idx]
        lens = self.offsets[idx + 1] - starts
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        pos = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1] - starts, lens)
        return StringTable(buffer=self.buffer[pos], offsets=offsets)


class Interned:
    """One code per sample (int32) into ``values``, the distinct values (a tuple, or a :class:`StringTable`
    when there are more than :data:`PACK_STRINGS` strings); :data:`NONE` / :data:`ABSENT`."""

    __slots__ = ("codes", "values")

    def __init__(self, codes: np.ndarray, values: tuple):
        self.codes, self.values = codes, values

    def __len__(self) -> int:
        return len(self.codes)

    def get(self, i: int) -> Any:
        c = int(self.codes[i])
        return self.values[c] if c >= 0 else None

    def tolist(self) -> list:
        vals = list(self.values)
        return [vals[c] if c >= 0 else None for c in self.codes.tolist()]

    def take(self, idx: np.ndarray) -> "Interned":
        return Interned(self.codes[idx], self.values)

    def used(self) -> list:
        """The values some sample has, in the order of ``values``."""
        return [self.values[c] for c in np.unique(self.codes).tolist() if c >= 0]

    def code_of(self, value: Any) -> int | None:
        """The code of ``value`` (equal and of the same type), or None when no sample has it."""
        return next((j for j, v in enumerate(self.values) if v == value and type(v) is type(value)), None)

    def where(self, value: Any) -> np.ndarray:
        """bool [N]: the samples whose value is ``value`` (``None``: none or absent)."""
        if value is None:
            return self.codes < 0
        code = self.code_of(value)
        return self.codes == code if code is not None else np.zeros(len(self.codes), bool)

    def replaced(self, mask: np.ndarray, value: Any) -> "Interned":
        """A copy with ``value`` (``None`` is :data:`NONE`) at the samples of ``mask``."""
        codes = self.codes.copy()
        if value is None:
            codes[mask] = NONE
            return Interned(codes, self.values)
        values = self.values
        code = self.code_of(value)
        if code is None:
            code, values = len(values), tuple(values) + (value,)
        codes[mask] = code
        return Interned(codes, values)

    @classmethod
    def of(cls, items: Iterable[Any]) -> "Interned":
        """``None`` items are :data:`NONE`."""
        b = _Column(NONE)
        for v in items:
            b.append(v)
        return b.build()


def _pack(values: tuple) -> "tuple | StringTable":
    """Many distinct strings (texts, patient ids, member names) in one buffer, no str object each; else as is."""
    if len(values) > PACK_STRINGS and all(type(v) is str for v in values):
        return StringTable(values)
    return values


class _Column:
    """Grows one :class:`Interned` column; ``fill`` is the code of samples appended before it existed."""

    __slots__ = ("codes", "table")

    def __init__(self, fill: int, n: int = 0):
        self.codes = array("i", [fill]) * n
        self.table: dict = {}

    def append(self, value: Any) -> None:
        if value is None:
            self.codes.append(NONE)
            return
        if isinstance(value, list):  # a multi-label target or a label list given as a list: stored as a tuple
            value = tuple(value)
        # keyed by type too: 1 and True (or 1 and 1.0) stay distinct values
        self.codes.append(self.table.setdefault((type(value), value), len(self.table)))

    def build(self) -> Interned:
        values = tuple(v for _, v in self.table)
        self.table = {}
        return Interned(np.frombuffer(self.codes, dtype=np.int32).copy() if len(self.codes) else np.zeros(0, np.int32),
                        _pack(values))


class ImageColumn:
    """The images: file paths (a :class:`StringTable`, returned as ``str`` or, if every input was one, as
    ``Path``), packed :class:`~bench.data.sample.ImageRef` s (their class's ``pack``), or a list (arrays, mixed)."""

    def __init__(self, images: Sequence[Any]):
        self.paths: StringTable | None = None
        self.packed: Any = None
        self.items: list | None = None
        self.path_type: type = str
        if all(isinstance(x, (str, Path)) for x in images):  # (no images: an empty path column)
            self.paths = StringTable([str(x) for x in images])
            self.path_type = Path if images and all(isinstance(x, Path) for x in images) else str
        elif images and isinstance(images[0], ImageRef) and all(type(x) is type(images[0]) for x in images):
            self.packed = type(images[0]).pack(images)
        if self.paths is None and self.packed is None:
            self.items = list(images)

    def __len__(self) -> int:
        if self.paths is not None:
            return len(self.paths)
        return len(self.packed) if self.packed is not None else len(self.items)

    def __getitem__(self, i: int) -> Any:
        if self.paths is not None:
            p = self.paths[i]
            return Path(p) if self.path_type is Path else p
        return self.packed[i] if self.packed is not None else self.items[i]

    def take(self, idx: np.ndarray) -> "ImageColumn":
        out = ImageColumn.__new__(ImageColumn)
        out.path_type = self.path_type
        out.paths = self.paths.take(idx) if self.paths is not None else None
        out.packed = self.packed.take(idx) if self.packed is not None else None
        out.items = [self.items[int(i)] for i in idx] if self.items is not None else None
        return out


class SampleTable:
    """The samples of a dataset as columns (see the module docstring). ``text_levels`` / ``label_levels`` /
    ``tasks``: the keys of the columns; ``key_order``: the levels in order of first appearance (texts, then
    labels, of each sample)."""

    def __init__(self, ids: StringTable, images: ImageColumn, texts: dict[str, Interned], labels: dict[str, Interned],
                 targets: dict[str, Interned], patient: Interned, split: Interned, origin: Interned, field: Interned,
                 position: np.ndarray, key_order: tuple[str, ...] = ()):
        self.ids, self.images = ids, images
        self.texts, self.labels, self.targets = texts, labels, targets
        self.patient, self.split = patient, split
        self.origin, self.field = origin, field  # the origin's file (None: no origin) and image field
        self.position = position  # int64 [N, 3]: the origin's line, row, record (-1: None)
        self.key_order = key_order

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_samples(cls, samples: Iterable[Sample]) -> "SampleTable":
        b = TableBuilder()
        for s in samples:
            b.append_sample(s)
        return b.build()

    def origin_of(self, i: int) -> Origin | None:
        file = self.origin.get(i)
        if file is None:
            return None
        line, row, record = (None if v < 0 else v for v in self.position[i].tolist())
        return Origin(file, line=line, row=row, record=record, image_field=self.field.get(i))

    def sample(self, i: int) -> Sample:
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"sample index {i} out of range for {len(self)} samples")
        return Sample(self.ids[i], self.images[i], _dict(self.texts, i), _dict(self.labels, i), _dict(self.targets, i),
                      self.patient.get(i), self.split.get(i), self.origin_of(i))

    def take(self, idx: Sequence[int] | np.ndarray) -> "SampleTable":
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        pick = {k: {g: c.take(idx) for g, c in getattr(self, k).items()} for k in ("texts", "labels", "targets")}
        return SampleTable(self.ids.take(idx), self.images.take(idx), pick["texts"], pick["labels"], pick["targets"],
                           self.patient.take(idx), self.split.take(idx), self.origin.take(idx), self.field.take(idx),
                           self.position[idx],
                           self.key_order)

    def replace(self, **columns: Any) -> "SampleTable":
        """A copy sharing every column but the ones given (``texts``, ``split``, ...)."""
        names = ("ids", "images", "texts", "labels", "targets", "patient", "split", "origin", "field", "position",
                 "key_order")
        kw = {k: columns.pop(k, getattr(self, k)) for k in names}
        if columns:
            raise TypeError(f"unknown column(s) {sorted(columns)}")
        return SampleTable(**kw)


    # -- a JSON form (the jsonl index cache): lists of codes and values, no object per sample ----------------
    def to_json(self) -> dict:
        """The columns as JSON-serialisable lists (image paths only; see :meth:`from_json`)."""
        if self.images.paths is None:
            raise ValueError("only a table whose images are file paths has a JSON form")

        def col(c: Interned) -> list:
            return [c.codes.tolist(), list(c.values)]

        return {"ids": self.ids.tolist(), "images": self.images.paths.tolist(),
                "path_type": "path" if self.images.path_type is Path else "str",
                "texts": {g: col(c) for g, c in self.texts.items()}, "labels": {g: col(c) for g, c in self.labels.items()},
                "targets": {t: col(c) for t, c in self.targets.items()}, "patient": col(self.patient),
                "split": col(self.split), "origin": col(self.origin), "field": col(self.field),
                "position": self.position.reshape(-1).tolist(),
                "key_order": list(self.key_order)}

    @classmethod
    def from_json(cls, entry: dict) -> "SampleTable":
        """The table :meth:`to_json` wrote; the entry's lists are consumed (emptied) as they are converted."""

        def col(pair: list) -> Interned:
            codes, values = pair
            values = tuple(tuple(v) if isinstance(v, list) else v for v in values)  # JSON has lists, we store tuples
            out = Interned(np.asarray(codes, dtype=np.int32), _pack(values))
            pair.clear()
            return out

        n = len(entry["ids"])
        ids = StringTable(entry.pop("ids"))
        images = ImageColumn.__new__(ImageColumn)
        images.paths, images.packed, images.items = StringTable(entry.pop("images")), None, None
        images.path_type = Path if entry["path_type"] == "path" else str
        kinds = {k: {g: col(c) for g, c in entry.pop(k).items()} for k in ("texts", "labels", "targets")}
        position = np.asarray(entry.pop("position"), dtype=np.int64).reshape(n, 3)
        return SampleTable(ids, images, kinds["texts"], kinds["labels"], kinds["targets"], col(entry["patient"]),
                           col(entry["split"]), col(entry["origin"]), col(entry["field"]), position,
                           tuple(entry["key_order"]))


def valid_json(entry: Any) -> bool:
    """Whether ``entry`` has the shape :meth:`SampleTable.to_json` writes (a damaged cache entry is rebuilt)."""
    try:
        n = len(entry["ids"])
        pairs = [entry["patient"], entry["split"], entry["origin"], entry["field"]]
        pairs += [c for k in ("texts", "labels", "targets") for c in entry[k].values()]
        return (len(entry["images"]) == n and len(entry["position"]) == 3 * n and entry["path_type"] in ("path", "str")
                and isinstance(entry["key_order"], list)
                and all(isinstance(p, list) and len(p) == 2 and len(p[0]) == n and isinstance(p[1], list)
                        and (n == 0 or (min(p[0]) >= ABSENT and max(p[0]) < len(p[1]))) for p in pairs))
    except (KeyError, TypeError, AttributeError, ValueError):
        return False


def _dict(columns: dict[str, Interned], i: int) -> dict:
    out = {}
    for key, col in columns.items():
        c = int(col.codes[i])
        if c != ABSENT:
            out[key] = col.values[c] if c >= 0 else None
    return out


class TableBuilder:
    """Appends samples one at a time (:meth:`append`: the fields, no :class:`Sample` needed) -> :meth:`build`."""

    def __init__(self):
        self.n = 0
        self.ids: list[str] = []
        self.images: list = []
        self.cols: dict[str, dict[str, _Column]] = {"texts": {}, "labels": {}, "targets": {}}
        self.patient, self.split, self.origin, self.field = _Column(NONE), _Column(NONE), _Column(NONE), _Column(NONE)
        self.position = array("q")
        self.key_order: dict[str, None] = {}

    def append_sample(self, s: Sample) -> None:
        self.append(s.id, s.image, s.texts, s.labels, s.targets, s.patient_id, s.split, s.origin)

    def append(self, sample_id: str, image: Any, texts: dict, labels: dict | None = None, targets: dict | None = None,
               patient_id: str | None = None, split: str | None = None, origin: Origin | None = None) -> None:
        self.ids.append(sample_id)
        self.images.append(image)
        for kind, values in (("texts", texts), ("labels", labels or {}), ("targets", targets or {})):
            cols = self.cols[kind]
            for key in values:
                if key not in cols:
                    cols[key] = _Column(ABSENT, self.n)
                    if kind != "targets":
                        self.key_order.setdefault(key)
            for key, col in cols.items():
                if key in values:
                    col.append(values[key])
                else:
                    col.codes.append(ABSENT)
        self.patient.append(patient_id)
        self.split.append(split)
        if origin is None:
            self.origin.append(None)
            self.field.append(None)
            self.position.extend((-1, -1, -1))
        else:
            self.origin.append(origin.file)
            self.field.append(origin.image_field)  # (shards: the member's name, distinct per sample)
            self.position.extend(-1 if v is None else v for v in (origin.line, origin.row, origin.record))
        self.n += 1

    def build(self) -> SampleTable:
        ids = StringTable(self.ids)
        self.ids = []
        images = ImageColumn(self.images)
        self.images = []
        cols = {k: {g: c.build() for g, c in v.items()} for k, v in self.cols.items()}
        position = np.frombuffer(self.position, dtype=np.int64).reshape(-1, 3).copy() if self.n else np.zeros((0, 3), np.int64)
        return SampleTable(ids, images, cols["texts"], cols["labels"], cols["targets"], self.patient.build(),
                           self.split.build(), self.origin.build(), self.field.build(), position, tuple(self.key_order))
