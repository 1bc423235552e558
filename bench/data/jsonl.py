"""``jsonl``: the harness's native manifest, one JSON object per line (``data.path=<manifest.jsonl>``).

A sample line::

    {"id": "img001", "image": "images/img001.png",
     "texts": {"category": "Abnormal", "disease": "Abnormal, glaucoma", "description": null},
     "labels": {"category": ["Abnormal"], "disease": ["glaucoma"]},
     "targets": {"glaucoma": 1, "disease_multilabel": [0, 1, 0]},
     "patient_id": "p17", "split": "train"}

- ``id`` (string or integer, required, unique), ``image`` (string, required: a path relative to the
  manifest's folder, or absolute; ``.npz`` with key ``image`` or any image PIL reads);
- ``texts``: level -> text, or ``null`` for a missing text (a level absent from ``texts`` is missing too);
- ``labels`` (optional): level -> list of label names; ``targets`` (optional): task -> class index (multi-class)
  or list of 0/1 over the task's classes (multi-label); ``patient_id`` (optional); ``split`` (optional):
  ``train``, ``val`` or ``test`` (samples without one get drawn splits, see ``data.split_seed``).
  Other keys are errors.

Metadata, optional, in a sidecar ``<manifest>.meta.json`` (e.g. ``data.jsonl.meta.json``; ``data.meta.json``
is accepted too) or as the first line ``{"meta": {...}}`` (not both)::

    {"levels": ["category", "disease", "description"],
     "vocab": {"category": ["Normal", "Abnormal"], "disease": ["glaucoma", "dr"]},
     "tasks": {"glaucoma": {"kind": "multiclass", "classes": ["no", "yes"]},
               "disease_multilabel": {"kind": "multilabel", "classes": ["amd", "glaucoma", "dr"]}}}

``levels`` default: the levels seen in ``texts``/``labels``, in order of first appearance; a level's
``vocab`` default: its labels, sorted; ``tasks`` is required when any line has ``targets``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .options import existing_path, take
from .paths import resolve
from .problems import Problem, ProblemLog
from .registry import DataConfigError, register_format
from .sample import SPLITS, Origin, Sample, TaskSpec
from .dataset import MultiGranularDataset
from .table import SampleTable, TableBuilder, valid_json
from .index_cache import cache_option, check_index_cache, iter_index

log = logging.getLogger(__name__)

FMT = "jsonl"
RECORD_KEYS = ("id", "image", "texts", "labels", "targets", "patient_id", "split")
META_KEYS = ("levels", "vocab", "tasks")
TASK_KINDS = ("multiclass", "multilabel")
CACHE_VERSION = 3  # of the cached parse (parse_manifest's output; 3: columns)
PROBLEM_FIELDS = {f.name for f in dataclasses.fields(Problem)}


@dataclass
class Options:
    path: str = field(metadata={"help": "the manifest (.jsonl); image paths are relative to its folder"})
    index_cache: Any = field(default=None, metadata={
        "check": check_index_cache,
        "help": "where the parsed manifest is cached, keyed by its path, size and mtime and the metadata (null: "
                "the folder of data.format=wds, $CONTRASTIVE_BENCH_CACHE/wds-index; false: no cache)"})



def check_meta(meta: Any, where: str) -> dict:
    if not isinstance(meta, dict):
        raise DataConfigError(f"{where}: metadata must be an object with keys {list(META_KEYS)}, got {meta!r}")
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise DataConfigError(f"{where}: unknown metadata key(s) {unknown}; allowed: {list(META_KEYS)}")
    levels = meta.get("levels")
    if levels is not None and (not isinstance(levels, list) or not all(isinstance(g, str) for g in levels)):
        raise DataConfigError(f"{where} [levels]: must be a list of level names, got {levels!r}")
    vocab = meta.get("vocab") or {}
    if not isinstance(vocab, dict) or not all(isinstance(v, list) for v in vocab.values()):
        raise DataConfigError(f"{where} [vocab]: must map each level to a list of label names, got {vocab!r}")
    if levels is not None:
        stray = [g for g in vocab if g not in levels]
        if stray:
            raise DataConfigError(f"{where} [vocab]: level(s) {stray} are not in levels {levels}")
    tasks = {}
    for name, spec in (meta.get("tasks") or {}).items():
        if not isinstance(spec, dict) or spec.get("kind") not in TASK_KINDS or not isinstance(spec.get("classes"), list):
            raise DataConfigError(
                f"{where} [tasks.{name}]: must be {{\"kind\": one of {list(TASK_KINDS)}, \"classes\": [names]}}, got {spec!r}"
            )
        tasks[name] = TaskSpec(spec["kind"], tuple(str(c) for c in spec["classes"]))
    return {"levels": levels, "vocab": {g: [str(x) for x in v] for g, v in vocab.items()}, "tasks": tasks}


def _sidecar(path: Path) -> list[Path]:
    names = [path.with_name(path.name + ".meta.json"), path.with_name(path.stem + ".meta.json")]
    return [p for p in dict.fromkeys(names) if p.is_file()]


def parse_record(obj: Any, origin: Origin, levels, tasks, base: Path, problems: ProblemLog) -> Sample | None:
    if not isinstance(obj, dict):
        problems.add(Problem.at(origin, None, f"a line must be a JSON object, got {type(obj).__name__}", f"{origin.file}:{origin.line}"))
        return None
    sid = obj.get("id")
    key = str(sid) if isinstance(sid, (str, int)) and not isinstance(sid, bool) and str(sid) else f"{origin.file}:{origin.line}"
    n0 = len(problems)

    def bad(field: str, msg: str) -> None:
        problems.add(Problem.at(origin, field, msg, key))

    unknown = sorted(set(obj) - set(RECORD_KEYS))
    if unknown:
        bad(unknown[0], f"unknown key(s) {unknown}; allowed: {list(RECORD_KEYS)}")
    if key.startswith(f"{origin.file}:"):
        bad("id", "missing field 'id' (a non-empty string or integer)" if "id" not in obj else f"'id' must be a non-empty string or integer, got {sid!r}")
    image = obj.get("image")
    if not isinstance(image, str) or not image.strip():
        bad("image", "missing field 'image' (a path)" if "image" not in obj else f"'image' must be a path string, got {image!r}")
    texts_in = obj.get("texts", {})
    texts: dict[str, str | None] = {}
    if not isinstance(texts_in, dict):
        bad("texts", f"'texts' must be an object level -> text or null, got {texts_in!r}")
    else:
        for g, t in texts_in.items():
            if levels is not None and g not in levels:
                bad(f"texts.{g}", f"level {g!r} is not declared in the metadata levels {levels}")
            elif t is not None and (not isinstance(t, str) or not t.strip()):
                bad(f"texts.{g}", f"a text must be a non-empty string or null, got {t!r}")
            else:
                texts[g] = t
    labels_in = obj.get("labels", {})
    labels: dict[str, tuple[str, ...]] = {}
    if not isinstance(labels_in, dict):
        bad("labels", f"'labels' must be an object level -> list of names, got {labels_in!r}")
    else:
        for g, labs in labels_in.items():
            if levels is not None and g not in levels:
                bad(f"labels.{g}", f"level {g!r} is not declared in the metadata levels {levels}")
            elif not isinstance(labs, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in labs):
                bad(f"labels.{g}", f"labels must be a list of names, got {labs!r}")
            else:
                labels[g] = tuple(dict.fromkeys(str(x) for x in labs))
    targets_in = obj.get("targets", {})
    targets: dict[str, int | tuple[int, ...]] = {}
    if tasks is None:  # no tasks declared: lines with targets are reported once, after the loop
        targets_in = {}
    elif not isinstance(targets_in, dict):
        bad("targets", f"'targets' must be an object task -> target, got {targets_in!r}")
    if isinstance(targets_in, dict):
        for task, t in targets_in.items():
            if task not in tasks:
                bad(f"targets.{task}", f"task {task!r} is not declared in the metadata tasks {sorted(tasks)}")
            elif tasks[task].kind == "multiclass":
                if not isinstance(t, int) or isinstance(t, bool):
                    bad(f"targets.{task}", f"a multi-class target is a class index (int), got {t!r}")
                else:
                    targets[task] = t
            elif not isinstance(t, list) or not all(v in (0, 1) and not isinstance(v, bool) for v in t):
                bad(f"targets.{task}", f"a multi-label target is a list of 0/1, got {t!r}")
            else:
                targets[task] = tuple(int(v) for v in t)
    split = obj.get("split")
    if split is not None and split not in SPLITS:
        bad("split", f"split {split!r} is not one of {list(SPLITS)} (or null)")
    pid = obj.get("patient_id")
    if pid is not None and not isinstance(pid, (str, int)):
        bad("patient_id", f"'patient_id' must be a string or integer, got {pid!r}")
    if len(problems) > n0:
        return None
    return Sample(
        key,
        resolve(base, image.strip()),
        texts,
        labels,
        targets,
        patient_id=None if pid is None else str(pid),
        split=split,
        origin=Origin(origin.file, line=origin.line, image_field="image"),
    )


def parse_manifest(meta: dict, header: int | None, given: str, shard: str = "") -> dict:
    """Parse and check every line of the manifest ``given`` against ``meta`` (``header``: the 0-based index
    of the ``{"meta": ...}`` line, skipped). The result is what the index cache holds (JSON): ``samples``
    (the columns of the good lines, :meth:`SampleTable.to_json`), ``problems`` (the fields of each
    :class:`Problem`) and ``targets`` (whether any line has targets)."""
    path = Path(given)
    problems = ProblemLog()
    b = TableBuilder()
    any_targets = False
    tasks = meta["tasks"] or None
    with open(path) as f:
        for i, line in enumerate(f, start=1):
            if i - 1 == header or not line.strip():
                continue
            origin = Origin(given, line=i)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                problems.add(Problem.at(origin, None, f"not valid JSON: {e}", f"{given}:{i}"))
                continue
            any_targets = any_targets or (isinstance(obj, dict) and bool(obj.get("targets")))
            s = parse_record(obj, origin, meta["levels"], tasks, path.parent, problems)
            if s is not None:
                b.append_sample(s)
    return {"samples": b.build().to_json(), "problems": [dataclasses.asdict(p) for p in problems.problems],
            "targets": any_targets}


def _valid(entry: dict) -> bool:
    """Whether a cache entry has the shape :func:`parse_manifest` writes (a damaged one is parsed again)."""
    problems = entry.get("problems")
    return (isinstance(entry.get("samples"), dict) and valid_json(entry["samples"]) and isinstance(problems, list)
            and isinstance(entry.get("targets"), bool)
            and all(isinstance(p, dict) and set(p) == PROBLEM_FIELDS for p in problems))


def _load(path: Path, meta: dict, header: int | None, index_cache: Any) -> dict:
    """The parsed manifest, from the index cache (:func:`bench.data.index_cache.iter_index`, keyed by the
    manifest's absolute path, size and mtime, and by a hash of the metadata and of the path as given)."""
    given = str(path)
    tasks = sorted((k, v.kind, v.classes) for k, v in meta["tasks"].items())
    key = hashlib.sha256(repr((CACHE_VERSION, given, header, meta["levels"], sorted(meta["vocab"].items()), tasks))
                         .encode()).hexdigest()[:16]
    job = functools.partial(parse_manifest, meta, header, given)
    with no_gc():  # 100k+ small objects: the cyclic GC would rescan them again and again
        (entry,) = iter_index([str(path.resolve())], cache_option(index_cache), job, key=key, workers=1, progress=False,
                              valid=_valid)
        entry["samples"] = SampleTable.from_json(entry["samples"])
    return entry


@contextlib.contextmanager
def no_gc():
    """The cyclic garbage collector paused: building 100k+ small objects, it would rescan them again and again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@register_format(FMT, options=Options)
def build(**options: Any) -> MultiGranularDataset:
    opt = take(FMT, options, Options)
    path = existing_path(FMT, "path", opt["path"], kind="file")
    lines = path.read_text().splitlines()
    meta = None
    header = None
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is not None:
        try:
            head = json.loads(lines[first])
        except json.JSONDecodeError:
            head = None
        if isinstance(head, dict) and set(head) == {"meta"}:
            meta = check_meta(head["meta"], f"{path}, line {first + 1}")
            header = first
    del lines
    sidecars = _sidecar(path)
    if len(sidecars) + (meta is not None) > 1:
        raise DataConfigError(
            f"{path}: metadata given more than once ({[str(p) for p in sidecars]}"
            f"{' and a header line' if meta is not None else ''}); keep one"
        )
    if sidecars:
        try:
            meta = check_meta(json.loads(sidecars[0].read_text()), str(sidecars[0]))
        except json.JSONDecodeError as e:
            raise DataConfigError(f"{sidecars[0]}: not valid JSON: {e}") from e
    meta = meta or {"levels": None, "vocab": {}, "tasks": {}}
    entry = _load(path, meta, header, opt["index_cache"])
    problems = ProblemLog()
    for p in entry["problems"]:
        problems.add(Problem(**p))
    samples: SampleTable = entry["samples"]
    if entry["targets"] and not meta["tasks"]:
        raise DataConfigError(
            f"{path}: lines have 'targets' but no tasks are declared; add \"tasks\": {{name: {{\"kind\": "
            f"multiclass|multilabel, \"classes\": [...]}}}} to {path.name}.meta.json or a first line {{\"meta\": ...}}"
        )
    levels, vocab = levels_and_vocab(samples, meta)
    dataset = MultiGranularDataset(samples, levels, vocab, meta["tasks"], name=f"{FMT}:{path.name}")
    problems.raise_if_any(partial=dataset)
    log.info("%s: %d samples, levels %s, tasks %s", dataset.name, len(samples), list(levels), sorted(meta["tasks"]))
    return dataset


def levels_and_vocab(samples: SampleTable, meta: dict) -> tuple[list[str], dict[str, list]]:
    """The metadata's ``levels`` (default: those seen in texts and labels, in order of first appearance) and each
    level's ``vocab`` (default: its labels, sorted); shared by ``jsonl`` and ``wds``."""
    levels = meta["levels"]
    if levels is None:
        levels = list(samples.key_order)
    vocab = {}
    for g in levels:
        col = samples.labels.get(g)
        vocab[g] = meta["vocab"].get(g) or sorted({x for labs in (col.used() if col is not None else ()) for x in labs})
    return levels, vocab
