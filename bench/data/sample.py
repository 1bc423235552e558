"""The one sample type every data format produces, and how an image is read.

Every adapter in ``bench/data/`` (the embedded ``fundus_synth`` and ``digits`` sets, the MGLL JSON lists,
CSV label tables, JSONL manifests, WebDataset shards) turns its input into :class:`Sample` s (or their
fields) and wraps them in a :class:`~bench.data.dataset.MultiGranularDataset`, which stores them as columns
(:mod:`bench.data.table`). The rest of the harness (training, objectives, tasks) only sees that type.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Sequence

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

    @classmethod
    def pack(cls, refs: Sequence["ImageRef"]) -> Any:
        """The images of a dataset packed for its column store (:class:`bench.data.table.ImageColumn`): an
        object with ``len``, ``[i]`` (the ``ImageRef``) and ``take(indices)``; ``None``: kept as a list."""
        return None


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
