"""WebDataset tar shards, read by random access: the member index, its cache, and :class:`ShardMember`.

A shard is a plain (uncompressed) tar file in the layout of ``webdataset`` / open_clip: the members of one
sample share a key (``<key>.<ext>``, the extension split off at the first dot of the file name, as
``webdataset.tariterators.base_plus_ext`` does). ``data.format=wds`` (:mod:`bench.data.wds`) wants one image
member (:data:`IMAGE_EXTS`) and one ``.json`` member per key.

Random access instead of streaming: :func:`index_shard` reads a shard's tar headers once (and its small
``.json`` members), recording where every image member's bytes lie (offset and size); an image is then read
with one ``os.pread`` (:class:`ShardMember`), so the dataset stays map-style: the loader's sampler, rank
slices and exact resume need no special case. Indexes are built in parallel (processes) over the shards
not yet indexed and cached (:mod:`bench.data.index_cache`, shared with the ``jsonl`` manifest's parsed index).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import tarfile
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .sample import ImageRef

log = logging.getLogger(__name__)

#: image member extensions, in order of preference when a key has several
IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "npz", "npy", "bmp", "tif", "tiff", "ppm", "pgm", "gif")


def split_name(name: str) -> tuple[str | None, str | None]:
    """``("dir/abc", "seg.png")`` for ``"dir/abc.seg.png"``: the key and the extension, split at the first dot
    of the file name (webdataset's rule); ``(None, None)`` without a dot."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem:
        return None, None
    return (f"{head}/{stem}" if head else stem), ext


# -- reading one member ------------------------------------------------------------------------------------
_FDS: dict[str, int] = {}
_FDS_PID: int | None = None
_FDS_LOCK = threading.Lock()
MAX_OPEN = 64  # open shard files kept per process


def _after_fork() -> None:
    """In a forked child (DataLoader worker, validation pool): a fresh lock (the parent's may have been held
    by another thread at the fork) and its own descriptors (the inherited ones are left open, unused)."""
    global _FDS_LOCK, _FDS_PID
    _FDS_LOCK = threading.Lock()
    _FDS.clear()
    _FDS_PID = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def read_member(shard: str, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of ``shard``, through a small per-process cache of open files."""
    global _FDS_PID
    with _FDS_LOCK:
        if _FDS_PID != os.getpid():  # a child started without the fork hook: its own descriptors
            _FDS.clear()
            _FDS_PID = os.getpid()
        fd = _FDS.pop(shard, None)
        if fd is None:
            if len(_FDS) >= MAX_OPEN:
                os.close(_FDS.pop(next(iter(_FDS))))
            fd = os.open(shard, os.O_RDONLY)
        _FDS[shard] = fd  # most recently used last
        data = os.pread(fd, size, offset)
    if len(data) != size:
        raise OSError(f"shard is truncated: {size} bytes wanted at offset {offset}, {len(data)} read")
    return data


def decode_member(data: bytes, ext: str, size: int | None = None) -> np.ndarray:
    """The array of an image member's bytes (``npz``: key ``image``; ``npy``; else PIL, converted to RGB).
    ``size`` (the model's input size) lets a large JPEG decode at reduced scale, as files do
    (:func:`bench.data.images.decode`)."""
    ext = ext.lower().rsplit(".", 1)[-1]
    if ext == "npz":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if "image" not in z.files:
                raise ValueError(f"npz member has no array 'image' (it has {z.files})")
            return z["image"]
    if ext == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    from PIL import Image

    from .images import DRAFT_FACTOR

    with Image.open(io.BytesIO(data)) as im:
        if size and im.format == "JPEG" and min(im.size) >= DRAFT_FACTOR * size:
            im.draft("RGB", (size, size))  # keeps both sides >= size
        return np.asarray(im.convert("RGB"))


class ShardMember(ImageRef):
    """An image member of a tar shard: ``shard`` (absolute path), ``name`` (the member's name), ``offset`` and
    ``size`` of its bytes. ``read()`` raises :class:`~bench.errors.DataConfigError` naming the shard and the
    member when the bytes are unreadable or corrupt."""

    __slots__ = ("shard", "name", "offset", "size")

    def __init__(self, shard: str, name: str, offset: int, size: int):
        self.shard, self.name, self.offset, self.size = shard, name, offset, size

    def __getstate__(self):
        return (self.shard, self.name, self.offset, self.size)

    def __setstate__(self, state):
        self.shard, self.name, self.offset, self.size = state

    def __eq__(self, other):
        return isinstance(other, ShardMember) and self.__getstate__() == other.__getstate__()

    def __hash__(self):
        return hash(self.__getstate__())

    def __repr__(self) -> str:
        return f"ShardMember({self.shard!r}, {self.name!r})"

    @classmethod
    def pack(cls, refs: Sequence["ShardMember"]) -> "ShardTable":
        return ShardTable(refs)

    @property
    def ext(self) -> str:
        return split_name(self.name)[1] or ""

    def raw(self) -> bytes:
        """The member's bytes, as stored (an export copies them unchanged)."""
        return read_member(self.shard, self.offset, self.size)

    def _problem(self, size: int | None = None) -> tuple[np.ndarray | None, str | None]:
        try:
            data = self.raw()
        except OSError as e:
            return None, f"shard member {self.name} is unreadable ({e.strerror or e}): {self.shard}"
        try:
            arr = decode_member(data, self.ext, size)
        except Exception as e:  # PIL / numpy decoding errors: the member is corrupt
            return None, f"corrupt image member {self.name} ({type(e).__name__}: {e}) in shard {self.shard}"
        ok = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))
        if not ok or arr.size == 0:
            return None, f"image member {self.name} has shape {tuple(arr.shape)}; expected H x W (x 1/3/4): {self.shard}"
        return arr, None

    def read(self, size: int | None = None) -> np.ndarray:
        """The decoded array (``size``: see :func:`decode_member`)."""
        arr, msg = self._problem(size)
        if msg is not None:
            from ..errors import DataConfigError

            raise DataConfigError(msg)
        return arr

    def check(self) -> str | None:
        """As validation checks files (:func:`bench.data.validate.check_image`): arrays are loaded and their
        shape checked, images go through ``PIL.Image.verify`` (no full decode)."""
        if self.ext.lower() in ("npz", "npy"):
            return self._problem()[1]
        try:
            data = self.raw()
        except OSError as e:
            return f"shard member {self.name} is unreadable ({e.strerror or e}): {self.shard}"
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                im.verify()
        except Exception as e:  # PIL decoding errors: the member is corrupt
            return f"corrupt image member {self.name} ({type(e).__name__}: {e}) in shard {self.shard}"
        return None

    def fingerprint(self) -> str:
        size, mtime = _shard_stamp(self.shard)
        return f"shard|{self.shard}|{size}|{mtime}|{self.name}|{self.offset}|{self.size}"


@functools.lru_cache(maxsize=4096)
def _shard_stamp(shard: str) -> tuple[int, int]:
    """(size, mtime_ns) of a shard, stat-ed once per process (fingerprints of 250k members cost one stat
    per shard)."""
    try:
        st = os.stat(shard)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


class ShardTable:
    """The shard members of a dataset packed into numpy arrays: what a loader worker holds instead of the
    samples (no Python object per sample, so forked workers do not copy pages by touching reference counts;
    see :class:`bench.data.images.ImageSource`)."""

    def __init__(self, members: Sequence[ShardMember]):
        from .table import StringTable

        n = len(members)
        files: dict[str, int] = {}
        self.shard_of = np.fromiter((files.setdefault(m.shard, len(files)) for m in members), np.int32, count=n)
        self.shards = list(files)
        self.offsets = np.fromiter((m.offset for m in members), np.int64, count=n)
        self.sizes = np.fromiter((m.size for m in members), np.int64, count=n)
        self.names = StringTable([m.name for m in members])

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> ShardMember:
        return self.member(i)

    def take(self, idx: np.ndarray) -> "ShardTable":
        out = ShardTable.__new__(ShardTable)
        out.shards, out.shard_of = self.shards, self.shard_of[idx]
        out.offsets, out.sizes, out.names = self.offsets[idx], self.sizes[idx], self.names.take(idx)
        return out

    def member(self, i: int) -> ShardMember:
        return ShardMember(self.shards[self.shard_of[i]], self.names[i], int(self.offsets[i]), int(self.sizes[i]))

    def read(self, i: int, size: int | None = None) -> np.ndarray:
        from .sample import load_image

        return load_image(self.member(i).read(size))  # H x W x 3 uint8 (npz arrays may be grey or float)

    def where(self, i: int) -> str:
        return f"{self.shards[self.shard_of[i]]} [{self.names[i]}]"


# -- the index of one shard --------------------------------------------------------------------------------
def index_shard(path: str) -> dict:
    """One pass over a shard's tar headers: ``{"samples": [[key, image member, offset, size, json record or
    None], ...], "problems": [[key or None, field, message], ...]}`` in member order. A key without an image
    or without a ``.json`` member, a ``.json`` that is not valid JSON, and a truncated or unreadable shard
    are problems (a truncated shard keeps the samples before the damage)."""
    samples: dict[str, list] = {}
    problems: list[list] = []
    size = os.path.getsize(path)

    def entry(key: str) -> list:
        return samples.setdefault(key, [key, None, 0, 0, None, False])  # last: a json member was seen

    cut = False  # a member cut short was found (and reported)
    try:
        with open(path, "rb") as fh, tarfile.open(fileobj=fh, mode="r:") as tf:
            end_at = 0  # where the next header starts
            for m in tf:
                end_at = m.offset_data + -(-m.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                if not m.isreg():
                    continue
                key, ext = split_name(m.name)
                if key is None or Path(key).name.startswith("__"):
                    continue  # webdataset skips these too (no key / __meta__ members)
                if m.offset_data + m.size > size:
                    problems.append([key, m.name, f"shard is truncated inside member {m.name} (key {key!r})"])
                    samples.pop(key, None)
                    cut = True
                    break
                e = entry(key)
                low = ext.lower()
                if low == "json":
                    e[5] = True
                    try:
                        e[4] = json.loads(tf.extractfile(m).read().decode("utf-8"))
                    except (UnicodeDecodeError, json.JSONDecodeError) as err:
                        problems.append([key, m.name, f"member {m.name} is not valid JSON: {err}"])
                elif low in IMAGE_EXTS:
                    if e[1] is None or IMAGE_EXTS.index(low) < IMAGE_EXTS.index(split_name(e[1])[1].lower()):
                        e[1], e[2], e[3] = m.name, m.offset_data, m.size
            # tarfile takes a header cut short for the end of the archive: check the end marker is there
            fh.seek(end_at)
            end = fh.read(tarfile.BLOCKSIZE)  # POSIX writes two zero blocks; one is enough to know the end
            if not cut and (len(end) < tarfile.BLOCKSIZE or end.strip(b"\0")):
                raise tarfile.ReadError(f"no end-of-archive marker at byte {end_at} of {size}")
    except (tarfile.TarError, OSError, EOFError) as err:
        # the members of a key are consecutive: the keys before the last one read are complete
        last = next(reversed(samples), None) if samples else None
        what = f"unreadable or truncated tar shard ({type(err).__name__}: {err})"
        if last is None:
            problems.append([None, None, f"{what} at its start"])
        else:
            samples.pop(last)
            problems.append([last, None, f"{what} at or after key {last!r}; the samples before it are kept"])
    out = []
    for key, (k, name, off, n, rec, had_json) in samples.items():
        if name is None:
            problems.append([key, f"{key}.*", f"key {key!r} has no image member (one of {', '.join(IMAGE_EXTS)})"])
        elif not had_json:
            problems.append([key, f"{key}.json", f"key {key!r} has no .json member (texts, labels, split, ...)"])
        elif rec is not None:
            out.append([k, name, off, n, rec])
    return {"samples": out, "problems": problems}
