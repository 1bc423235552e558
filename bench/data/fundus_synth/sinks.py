"""Where a drawn corpus goes: the :class:`Sink` interface and the file writer (:class:`FileSink`).

A sink has three methods, called by :func:`.corpus.write_corpus` in the main process:

- ``open(info)``: once, before the first sample; ``info`` is a :class:`~.corpus.CorpusInfo` (resolved
  options, corpus size, levels, vocabularies, task specs, image format);
- ``write(sample)``: once per sample, in corpus order (pool then test; the same order as
  ``fundus_synth.build``); ``sample`` is a :class:`~.corpus.DrawnSample`: ``index``, ``record`` (``id``,
  ``split``, ``texts``, ``labels``, ``targets``, ``truth``) and ``image``, the bytes of a complete image file
  in ``image_format`` (``png``, ``jpg`` or ``npz``), encoded by the worker that drew it;
- ``close(complete)``: once; ``complete`` is False when drawing failed or was interrupted (the sink should
  then leave nothing that looks finished).

:class:`WdsSink` writes WebDataset shards (``data.format=wds``) through :class:`bench.data.writers.ShardOut`:
``{"__key__": id, <image format>: image, "json": record}`` per sample; the drawing loop, its workers and its
determinism are reused as they are.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Protocol

from ...errors import DataConfigError
from .cache import GENERATOR_VERSION
from .corpus import CorpusInfo, DrawnSample
from .options import NOT_CONTENT

MANIFEST = "manifest.jsonl"
OPTIONS_FILE = "fundus_synth.json"
IMAGES_DIR = "images"
BLOCK = 1000  # images per sub-folder of images/


class Sink(Protocol):
    """Receives a drawn corpus (see the module docstring)."""

    def open(self, info: CorpusInfo) -> None: ...

    def write(self, sample: DrawnSample) -> None: ...

    def close(self, complete: bool) -> None: ...


def image_path(sample: DrawnSample) -> str:
    """Where :class:`FileSink` puts an image, relative to the output folder:
    ``images/<index // 1000, 4 digits>/<id>.<format>`` (at most 1000 files per folder)."""
    return f"{IMAGES_DIR}/{sample.index // BLOCK:04d}/{sample.id}.{sample.image_format}"


class FileSink:
    """Image files plus a manifest that ``data.format=jsonl`` reads (``data.path=<out>/manifest.jsonl``):

    - ``images/NNNN/<id>.<png|jpg|npz>``;
    - ``manifest.jsonl``: one line per sample (``id``, ``image``, ``texts``, ``labels``, ``targets``,
      ``patient_id``, ``split``), in corpus order; written as ``manifest.jsonl.tmp`` and renamed when the
      corpus is complete (a folder without ``manifest.jsonl`` is unfinished);
    - ``manifest.jsonl.meta.json``: ``levels``, ``vocab``, ``tasks``;
    - ``fundus_synth.json``: the resolved options, the generator version and the image format (provenance).

    An existing ``manifest.jsonl`` is an error unless ``overwrite``; then the previous manifest, its sidecar,
    the options file and the ``images/`` folder are removed first."""

    def __init__(self, out: str | os.PathLike, overwrite: bool = False):
        self.out = Path(out).expanduser()
        self.overwrite = overwrite
        self._fh = None
        self._made: set[Path] = set()

    @property
    def manifest(self) -> Path:
        return self.out / MANIFEST

    def open(self, info: CorpusInfo) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise DataConfigError(f"--out {str(self.out)!r} is a file; give a folder", key="--out", value=str(self.out))
        if self.manifest.exists():
            if not self.overwrite:
                raise DataConfigError(f"--out {str(self.out)!r} already holds a corpus ({MANIFEST}); pass --overwrite "
                                      "to replace it, or choose another folder", key="--out", value=str(self.out))
            for name in (MANIFEST, MANIFEST + ".meta.json", OPTIONS_FILE):
                (self.out / name).unlink(missing_ok=True)
            shutil.rmtree(self.out / IMAGES_DIR, ignore_errors=True)
        (self.out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        meta = {"levels": list(info.levels), "vocab": {g: list(v) for g, v in info.vocab.items()},
                "tasks": {t: {"kind": s.kind, "classes": list(s.classes)} for t, s in info.task_specs.items()}}
        (self.out / (MANIFEST + ".meta.json")).write_text(json.dumps(meta, indent=1) + "\n")
        options = {k: v for k, v in info.options.items() if k not in NOT_CONTENT}
        provenance = {"format": "fundus_synth", "generator_version": GENERATOR_VERSION, "image_format": info.image_format,
                      "images": info.total, "options": options}
        (self.out / OPTIONS_FILE).write_text(json.dumps(provenance, indent=1, default=list) + "\n")
        self._fh = open(self.out / (MANIFEST + ".tmp"), "w", encoding="utf-8")

    def write(self, sample: DrawnSample) -> None:
        rel = image_path(sample)
        folder = self.out / rel.rsplit("/", 1)[0]
        if folder not in self._made:
            folder.mkdir(parents=True, exist_ok=True)
            self._made.add(folder)
        (self.out / rel).write_bytes(sample.image)
        line = {"id": sample.id, "image": rel, **{k: v for k, v in _record(sample).items() if k != "id"}}
        self._fh.write(json.dumps(line) + "\n")

    def close(self, complete: bool) -> None:
        if self._fh is None:
            return
        self._fh.close()
        self._fh = None
        tmp = self.out / (MANIFEST + ".tmp")
        if complete:
            os.replace(tmp, self.manifest)


def _record(sample: DrawnSample) -> dict:
    r = sample.record
    return {"id": r["id"], "texts": r["texts"], "labels": r["labels"], "targets": r["targets"], "patient_id": r["id"],
            "split": r["split"]}


class WdsSink:
    """WebDataset shards that ``data.format=wds`` reads (``data.path=<out>``): ``shard-NNNNNN.tar`` of
    ``shard_size`` samples (``<id>.<png|jpg|npz>`` + ``<id>.json``, the manifest fields of :class:`FileSink`)
    and ``meta.json`` (``levels``, ``vocab``, ``tasks``; ``source``: the provenance of ``fundus_synth.json``).
    Written into ``<out>.partial-<pid>`` and renamed when complete (:mod:`bench.data.writers`); a non-empty
    ``out`` is an error unless ``overwrite``."""

    def __init__(self, out: str | os.PathLike, shard_size: int = 1000, overwrite: bool = False):
        from ..writers import ShardOut

        self.shards = ShardOut(out, shard_size, overwrite)

    @property
    def path(self) -> str:
        return self.shards.pattern()

    def open(self, info: CorpusInfo) -> None:
        meta = {"levels": list(info.levels), "vocab": {g: list(v) for g, v in info.vocab.items()},
                "tasks": {t: {"kind": s.kind, "classes": list(s.classes)} for t, s in info.task_specs.items()}}
        options = {k: v for k, v in info.options.items() if k not in NOT_CONTENT}
        meta["source"] = json.loads(json.dumps({"format": "fundus_synth", "generator_version": GENERATOR_VERSION,
                                                "image_format": info.image_format, "images": info.total,
                                                "options": options}, default=list))
        self.shards.open(meta)

    def write(self, sample: DrawnSample) -> None:
        self.shards.write(sample.id, sample.image_format, sample.image, _record(sample))

    def close(self, complete: bool) -> None:
        self.shards.close(complete)
