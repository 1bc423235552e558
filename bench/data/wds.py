"""``wds``: WebDataset tar shards in open_clip's layout (``data.path=<pattern, folder or .tar>``).

One sample = one key in a shard, with two members::

    img001.png    the image: png, jpg/jpeg, webp, npz (key "image"), npy, or anything PIL reads
    img001.json   {"id": "img001",                                          (optional; default the key)
                   "texts": {"category": "Abnormal", "disease": "Abnormal, glaucoma"},
                   "labels": {"category": ["Abnormal"], "disease": ["glaucoma"]},
                   "targets": {"glaucoma": 1}, "patient_id": "p17", "split": "train"}

The JSON holds the fields of a ``jsonl`` manifest line (:mod:`bench.data.jsonl`) except ``image``; the same
rules apply (``texts`` required in practice, the rest optional; samples without ``split`` get drawn splits).
Metadata (``levels``, ``vocab``, ``tasks``: the ``jsonl`` sidecar's schema, plus the informative
``samples`` and ``shards`` written by the exporter) is ``meta.json`` in the shards' folder, optional as for
``jsonl``. ``python -m bench.data.export --to wds`` writes this layout.

``data.path`` is a brace pattern (``shards/train-{000000..000099}.tar``), a folder (every ``*.tar`` in it, in
name order) or one ``.tar`` file. Samples come in shard order, then member order. The dataset is map-style
(:mod:`bench.data.shards` reads an image by its offset), so the loader's seeded per-epoch permutation, the
split over ranks and DataLoader workers, and the checkpointed position work as for any other format.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .jsonl import check_meta, levels_and_vocab, no_gc, parse_record
from .options import take
from .problems import Problem, ProblemLog
from .registry import DataConfigError, register_format
from .sample import Origin
from .dataset import MultiGranularDataset
from .table import SampleTable, TableBuilder
from .index_cache import cache_option, check_index_cache, iter_index
from .shards import ShardMember, index_shard

log = logging.getLogger(__name__)

FMT = "wds"
META_FILE = "meta.json"
INFO_KEYS = ("samples", "shards", "source")  # written by the exporter; informative


@dataclass
class Options:
    path: str = field(metadata={"help": "the shards: a brace pattern (dir/train-{000000..000099}.tar), a folder of "
                                        "*.tar files, or one .tar file"})
    index_cache: Any = field(default=None, metadata={
        "check": check_index_cache,
        "help": "where shard indexes are cached (null: $CONTRASTIVE_BENCH_CACHE/wds-index or "
                "~/.cache/contrastive-bench/wds-index; false: no cache)"})
    index_workers: int = field(default=0, metadata={
        "min": 0, "help": "processes that index shards not yet cached (0: one per CPU, at most 8)"})


def expand_shards(path: str) -> list[str]:
    """The absolute shard paths of ``data.path`` (brace pattern, folder or file), each checked to exist."""
    import braceexpand

    raw = str(path).strip()
    p = Path(raw).expanduser()
    if "{" not in raw and p.is_dir():
        shards = sorted(str(x.resolve()) for x in p.iterdir() if x.suffix == ".tar" and x.is_file())
        if not shards:
            raise DataConfigError(f"data.path={raw!r} ({FMT}): the folder holds no .tar shard", key="data.path", value=raw)
        return shards
    names = list(braceexpand.braceexpand(raw))
    missing = [n for n in names if not Path(n).expanduser().is_file()]
    if missing:
        what = "no such shard" if len(names) == 1 else f"{len(missing)} of {len(names)} shards do not exist, e.g."
        raise DataConfigError(f"data.path={raw!r} ({FMT}): {what} {missing[0]}", key="data.path", value=raw)
    return [str(Path(n).expanduser().resolve()) for n in names]


def _meta(shards: list[str]) -> tuple[dict, str]:
    """The checked metadata of ``meta.json`` next to the first shard, and a hash of it (part of the index
    cache's key: the records are checked against it)."""
    folder = Path(shards[0]).parent
    f = folder / META_FILE
    if not f.is_file():
        meta: Any = {}
    else:
        try:
            meta = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataConfigError(f"{f}: not valid JSON: {e}") from e
        if isinstance(meta, dict):
            meta = {k: v for k, v in meta.items() if k not in INFO_KEYS}
    key = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return check_meta(meta, str(f)), key


def parse_shard(meta: dict, shard: str) -> dict:
    """Index one shard (:func:`~bench.data.shards.index_shard`) and check its records against ``meta`` (the
    ``jsonl`` rules), in an indexing worker; the result is what the cache holds: ``samples`` (``[id, image
    member, offset, size, texts, labels, targets, patient_id, split]``), ``problems`` (``[key, field,
    message]``) and ``targets`` (whether any record has targets)."""
    with no_gc():
        return _parse_shard(meta, shard)


def _parse_shard(meta: dict, shard: str) -> dict:
    index = index_shard(shard)
    problems = list(index["problems"])
    tasks = meta["tasks"] or None
    out = []
    any_targets = False
    for key, name, offset, size, rec in index["samples"]:
        if not isinstance(rec, dict):
            problems.append([key, f"{key}.json", f"must be a JSON object, got {type(rec).__name__}"])
            continue
        if "image" in rec:
            problems.append([key, f"{key}.json", f"'image' is not a field of a shard's JSON (the image is the member {name})"])
            continue
        any_targets = any_targets or bool(rec.get("targets"))
        local = ProblemLog()
        s = parse_record({"id": key, **rec, "image": name}, Origin(shard), meta["levels"], tasks, Path(shard).parent, local)
        for p in local.problems:  # name the member: "shard.tar [img001.json texts.disease]: ..."
            problems.append([p.sample or key, f"{key}.json {p.field}" if p.field else f"{key}.json", p.message])
        if s is not None:
            targets = {t: list(v) if isinstance(v, tuple) else v for t, v in s.targets.items()}
            out.append([s.id, name, offset, size, s.texts, {g: list(v) for g, v in s.labels.items()}, targets,
                        s.patient_id, s.split])
    return {"samples": out, "problems": problems, "targets": any_targets}


def _append(b: TableBuilder, shard: str, entry: dict, problems: ProblemLog) -> None:
    """Append the samples of one shard's cached entry to the columns (equal texts and label sets are
    stored once, see :mod:`bench.data.table`)."""
    for key, member, message in entry["problems"]:
        problems.add(Problem(shard, member, message, sample=key))
    for sid, name, offset, size, texts, labels, targets, pid, split in entry["samples"]:
        b.append(sid, ShardMember(shard, name, offset, size), texts, labels, targets, pid, split,
                 Origin(shard, image_field=name))


def _load(shards: list[str], opt: dict, meta: dict, meta_key: str) -> tuple[SampleTable, ProblemLog, bool]:
    index = iter_index(shards, cache_option(opt["index_cache"]), functools.partial(parse_shard, meta), key=meta_key,
                       workers=opt["index_workers"])
    problems = ProblemLog()
    b = TableBuilder()
    any_targets = False
    for shard, entry in zip(shards, index):  # one shard's raw entry at a time
        _append(b, shard, entry, problems)
        any_targets = any_targets or entry["targets"]
    return b.build(), problems, any_targets


@register_format(FMT, options=Options)
def build(**options: Any) -> MultiGranularDataset:
    opt = take(FMT, options, Options)
    if opt["path"] is None:
        raise DataConfigError(f"data.path is required for data.format={FMT}", key="data.path")
    shards = expand_shards(opt["path"])
    meta, meta_key = _meta(shards)
    with no_gc():  # millions of small objects: the cyclic GC would rescan them again and again (2-3x slower)
        samples, problems, any_targets = _load(shards, opt, meta, meta_key)
    if any_targets and not meta["tasks"]:
        raise DataConfigError(f"{Path(shards[0]).parent / META_FILE}: samples have 'targets' but no tasks are declared; "
                              "add \"tasks\": {name: {\"kind\": multiclass|multilabel, \"classes\": [...]}}")
    levels, vocab = levels_and_vocab(samples, meta)
    name = f"{FMT}:{Path(shards[0]).parent.name}/{Path(shards[0]).name}" + (f" (+{len(shards) - 1})" if len(shards) > 1 else "")
    dataset = MultiGranularDataset(samples, levels, vocab, meta["tasks"], name=name)
    problems.raise_if_any(partial=dataset)
    log.info("%s: %d samples in %d shard(s), levels %s, tasks %s", name, len(samples), len(shards), list(levels),
             sorted(meta["tasks"]))
    return dataset

