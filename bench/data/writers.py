"""Writing a corpus to disk, atomically: WebDataset shards (:class:`ShardOut`) or image files with a ``jsonl``
manifest (:class:`FolderOut`). Used by ``python -m bench.data.export`` and by ``fundus_synth draw --to wds``.

Both write into a sibling folder ``<out>.partial-<pid>`` and rename it to ``<out>`` only when the corpus is
complete (``close(complete=True)``): an interrupted or failed export leaves no folder that looks finished
(the partial folder is removed). An existing non-empty ``<out>`` is an error unless ``overwrite``; then it
is replaced only once the new corpus is complete.

Sample keys: the sample id when it is a safe file name and member key (letters, digits, ``_``, ``-``; no
dot, since webdataset splits the extension at the first dot), else ``s<index, 9 digits>``; the id itself is
always in the record. A record holds the ``jsonl`` manifest fields (:func:`record_of`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..errors import DataConfigError
from .sample import Sample
from .dataset import MultiGranularDataset

SHARD_NAME = "shard-%06d.tar"
META_FILE = "meta.json"
MANIFEST = "manifest.jsonl"
IMAGES_DIR = "images"
BLOCK = 1000  # images per sub-folder of images/
_SAFE = re.compile(r"[A-Za-z0-9_-]{1,200}")


def sample_key(sample_id: str, index: int, used: set | None = None) -> str:
    """The member key / file stem of a sample (see the module docstring); ``used`` (the keys given so far,
    updated) makes keys unique: a key taken already becomes ``s<index>`` (then ``s<index>-<n>``)."""
    sid = str(sample_id)
    key = sid if _SAFE.fullmatch(sid) and not sid.startswith("__") else f"s{index:09d}"
    if used is not None:
        base, n = key if key != sid or key not in used else f"s{index:09d}", 1
        key = base
        while key in used:
            key, n = f"{base}-{n}", n + 1
        used.add(key)
    return key


def record_of(s: Sample, levels, task_names) -> dict:
    """The manifest fields of a sample (without ``image``): texts and labels of ``levels``, targets of
    ``task_names``, and ``patient_id`` / ``split`` when set."""
    rec: dict = {"id": s.id, "texts": {g: s.texts.get(g) for g in levels}}
    labels = {g: list(s.labels[g]) for g in levels if g in s.labels}
    if labels:
        rec["labels"] = labels
    targets = {}
    for t in task_names:
        v = s.targets.get(t)
        if v is not None:
            targets[t] = int(v) if not isinstance(v, (tuple, list)) else [int(x) for x in v]
    if targets:
        rec["targets"] = targets
    if s.patient_id is not None:
        rec["patient_id"] = s.patient_id
    if s.split is not None:
        rec["split"] = s.split
    return rec


def meta_of(dataset: MultiGranularDataset) -> dict:
    return {"levels": list(dataset.levels), "vocab": {g: list(v) for g, v in dataset.vocab.items()},
            "tasks": {t: {"kind": s.kind, "classes": list(s.classes)} for t, s in dataset.task_specs.items()}}


class _AtomicFolder:
    def __init__(self, out: str | os.PathLike, overwrite: bool = False, flag: str = "--out"):
        self.out = Path(out).expanduser().absolute()
        self.overwrite = overwrite
        self.flag = flag
        self.tmp = self.out.with_name(f"{self.out.name}.partial-{os.getpid()}")
        self.count = 0

    def _open(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise DataConfigError(f"{self.flag} {str(self.out)!r} is a file; give a folder", key=self.flag, value=str(self.out))
        if self.out.is_dir() and any(self.out.iterdir()) and not self.overwrite:
            raise DataConfigError(f"{self.flag} {str(self.out)!r} exists and is not empty; pass --overwrite to replace "
                                  "it, or choose another folder", key=self.flag, value=str(self.out))
        self.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()

    def _finish(self, complete: bool) -> None:
        if not complete:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = self.out.with_name(f"{self.out.name}.old-{os.getpid()}")
        if self.out.exists():
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        shutil.rmtree(old, ignore_errors=True)


class ShardOut(_AtomicFolder):
    """Shards ``shard-NNNNNN.tar`` of ``shard_size`` samples (``webdataset.ShardWriter``; members
    ``<key>.<ext>`` and ``<key>.json``, fixed mtime so equal input gives equal bytes) and ``meta.json``."""

    def __init__(self, out, shard_size: int = 1000, overwrite: bool = False, flag: str = "--out"):
        super().__init__(out, overwrite, flag)
        self.shard_size = int(shard_size)
        self._writer = None

    def open(self, meta: dict) -> None:
        import webdataset

        self._open()
        self.meta = dict(meta)
        self._writer = webdataset.ShardWriter(str(self.tmp / SHARD_NAME), maxcount=self.shard_size, maxsize=1e15,
                                              verbose=0, encoder=False, mtime=0)

    def write(self, key: str, ext: str, image: bytes, record: dict, caption: str | None = None) -> None:
        """One sample; ``caption`` (optional) becomes a ``<key>.txt`` member, the caption open_clip reads."""
        sample = {"__key__": key, ext: image, "json": json.dumps(record).encode("utf-8")}
        if caption is not None:
            sample["txt"] = caption.encode("utf-8")
        self._writer.write(sample)
        self.count += 1

    def close(self, complete: bool) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if complete:
            shards = sorted(self.tmp.glob("*.tar"))
            if self.count == 0:  # ShardWriter opens its first shard eagerly
                for p in shards:
                    p.unlink()
                shards = []
            info = {**self.meta, "samples": self.count, "shards": len(shards)}
            (self.tmp / META_FILE).write_text(json.dumps(info, indent=1) + "\n")
        self._finish(complete)

    def pattern(self) -> str:
        """``data.path`` for the finished shards (a brace pattern)."""
        n = len(list(self.out.glob("*.tar")))
        if n <= 1:
            return str(self.out / (SHARD_NAME % 0))
        return str(self.out / SHARD_NAME.replace("%06d", f"{{000000..{n - 1:06d}}}"))


class FolderOut(_AtomicFolder):
    """``images/NNNN/<key>.<ext>`` (at most 1000 per folder), ``manifest.jsonl`` and its ``.meta.json``:
    what ``data.format=jsonl data.path=<out>/manifest.jsonl`` reads."""

    def open(self, meta: dict) -> None:
        self._open()
        (self.tmp / (MANIFEST + ".meta.json")).write_text(json.dumps(meta, indent=1) + "\n")
        self._fh = open(self.tmp / MANIFEST, "w", encoding="utf-8")
        self._made: set[Path] = set()

    def write(self, key: str, ext: str, image: bytes, record: dict, caption: str | None = None) -> None:
        rel = f"{IMAGES_DIR}/{self.count // BLOCK:04d}/{key}.{ext}"
        folder = self.tmp / rel.rsplit("/", 1)[0]
        if folder not in self._made:
            folder.mkdir(parents=True, exist_ok=True)
            self._made.add(folder)
        (self.tmp / rel).write_bytes(image)
        self._fh.write(json.dumps({"id": record["id"], "image": rel, **{k: v for k, v in record.items() if k != "id"}}) + "\n")
        self.count += 1

    def close(self, complete: bool) -> None:
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()
            self._fh = None
        self._finish(complete)

    def pattern(self) -> str:
        return str(self.out / MANIFEST)
