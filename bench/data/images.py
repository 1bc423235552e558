"""Per-sample image decoding for the data loader: a file (``.npz`` key ``image``, JPEG, PNG, anything PIL
reads) or an in-memory array -> an ``H x W x 3`` uint8 RGB array.

A JPEG much larger than the size the model wants (at least twice it on the short side) is decoded at a
reduced DCT scale with PIL's ``Image.draft`` (1/2, 1/4 or 1/8 of its size, never below the wanted size):
that skips most of the decoder's work, and the image is resized to the tower's input anyway. Every other
file is decoded at full size.

:class:`ImageSource` is what a loader worker holds: the image paths and sample ids packed into numpy
buffers (:class:`StringTable`), not a list of Python objects, so forked workers do not copy the pages of
a 250k-sample list by touching reference counts; members of tar shards likewise
(:class:`~bench.data.shards.ShardTable`). Datasets whose images are not all files (the embedded
sets keep arrays in memory, other formats read their own way) are read through their own ``image(i)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .sample import load_image
from .table import StringTable

__all__ = ["DRAFT_FACTOR", "ImageSource", "StringTable", "decode"]

#: a JPEG is decoded at reduced scale when its short side is at least this many times the wanted size
DRAFT_FACTOR = 2


def decode(image: np.ndarray | str | Path, size: int | None = None) -> np.ndarray:
    """``H x W x 3`` uint8 RGB from an array or a file; ``size`` (the model's input size) lets a large
    JPEG decode at reduced scale (see the module docstring). Raises whatever the decoder raises."""
    if isinstance(image, np.ndarray):
        return load_image(image)
    path = Path(image)
    if path.suffix.lower() == ".npz":
        return load_image(path)
    from PIL import Image

    with Image.open(path) as im:
        if size and im.format == "JPEG" and min(im.size) >= DRAFT_FACTOR * size:
            im.draft("RGB", (size, size))  # keeps both sides >= size
        arr = np.asarray(im.convert("RGB"))
    return arr


class ImageSource:
    """Reads sample ``i`` of a dataset: from its file path when every image is a file, else through the
    dataset's own ``image(i)``. ``where(i)`` names the file (or the dataset) and ``sample_id(i)`` the id."""

    def __init__(self, data: Any):
        table = getattr(data, "table", None)  # a MultiGranularDataset's columns; other datasets: image(i) only
        self.name = str(getattr(data, "name", "dataset"))
        self.n = len(data)
        self.ids = table.ids if table is not None else None
        images = table.images if table is not None else None
        self.paths = images.paths if images is not None else None
        self.shards = images.packed if images is not None and hasattr(images.packed, "where") else None  # data.format=wds
        files_or_members = self.paths is not None or self.shards is not None
        self.data = None if files_or_members else data  # only held when it must be: workers then need nothing else

    def __len__(self) -> int:
        return self.n

    def read(self, i: int, size: int | None = None) -> np.ndarray:
        if self.paths is not None:
            return decode(self.paths[i], size)
        if self.shards is not None:
            return self.shards.read(i, size)
        return load_image(self.data.image(i))

    def where(self, i: int) -> str:
        if self.shards is not None:
            return self.shards.where(i)
        return self.paths[i] if self.paths is not None else self.name

    def sample_id(self, i: int) -> str:
        return self.ids[i] if self.ids is not None else str(i)
