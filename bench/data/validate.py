"""Validation before training: one pass over a dataset, reporting every problem (not just the first).

Checks: levels named in the config but absent from the data; duplicate sample ids (every occurrence after
the first); split values other than train/val/test; labels outside a level's vocabulary (unknown names); empty label sets at levels where labels are
required; downstream targets that are missing or out of range; and every image: a file path must exist
and open (``np.load`` and key ``image`` for ``.npz``, ``PIL.Image.verify`` otherwise; each distinct file is
opened once), an in-memory array must be ``H x W`` or ``H x W x {1,3,4}``, an :class:`ImageRef` (a member
of a tar shard) must pass its own ``check()`` (it names the shard and the member).

Which image files are opened is ``data.check_images`` (:func:`check_plan`): ``all`` (in parallel: a process
pool above :data:`PROCESS_MIN_IMAGES` files), a seeded random ``sample`` of :data:`SAMPLE_IMAGES` files,
``none``, or ``auto`` (all up to :data:`AUTO_ALL_MAX` files, else a sample). The log says which. Files not
opened here are found by the loader when it reads them (an error naming the file and sample, or skipped
and counted with ``data.on_bad_sample=skip``).

Parse-time problems (missing fields, bad values) are found by the format adapters while reading; see
``problems.py``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from .problems import DataValidationError, Problem
from .sample import SPLITS, ImageRef
from .dataset import MultiGranularDataset

log = logging.getLogger(__name__)

__all__ = ["DataValidationError", "Problem", "check_image", "find_problems", "validate"]

PROGRESS_MIN_IMAGES = 2000  # show a progress bar above this many image files
PROCESS_MIN_IMAGES = 2000  # check files in a process pool above this many (threads below: no start-up cost)
AUTO_ALL_MAX = 20000  # check_images=auto opens every file up to this many, else a sample
SAMPLE_IMAGES = 1000  # files opened by check_images=sample
SAMPLE_SEED = 0


def check_plan(mode: str | bool | None, n_files: int) -> tuple[str, int]:
    """(``all`` | ``sample`` | ``none``, how many files to open) for ``data.check_images=mode``."""
    mode = {True: "all", False: "none", None: "auto"}.get(mode, mode)  # type: ignore[arg-type]
    if mode == "auto":
        mode = "all" if n_files <= AUTO_ALL_MAX else "sample"
    if mode == "sample" and n_files <= SAMPLE_IMAGES:
        mode = "all"
    return mode, {"all": n_files, "sample": SAMPLE_IMAGES, "none": 0}[mode]


def check_image(path: str | Path) -> str | None:
    """``None`` if the file opens as an image, else what is wrong (the message names the path)."""
    p = Path(path)
    if not p.exists():
        return f"image file not found: {p}"
    if not p.is_file():
        return f"image path is not a file: {p}"
    try:
        if p.suffix.lower() == ".npz":
            with np.load(p) as z:
                if "image" not in z.files:
                    return f"npz file has no array 'image' (it has {z.files}): {p}"
                arr = z["image"]
            return _check_array(arr, p)
        from PIL import Image

        with Image.open(p) as im:
            im.verify()
        return None
    except PermissionError as e:
        return f"image file is unreadable ({e.strerror}): {p}"
    except Exception as e:  # PIL/numpy/zip decoding errors: the file is corrupt
        return f"corrupt image ({type(e).__name__}: {e}): {p}"


def _check_item(item: "str | ImageRef") -> str | None:
    return item.check() if isinstance(item, ImageRef) else check_image(item)


def _check_array(arr: np.ndarray, where: object) -> str | None:
    ok = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))
    if not ok or arr.size == 0:
        return f"image array has shape {tuple(arr.shape)}; expected H x W or H x W x 1/3/4: {where}"
    return None


def _check_files(paths: list) -> list[str | None]:
    """What is wrong with each file path or :class:`ImageRef` (``None``: it opens)."""
    from tqdm.auto import tqdm

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if len(paths) > PROCESS_MIN_IMAGES and cpus > 1:
        pool = ProcessPoolExecutor(min(cpus, 16), mp_context=multiprocessing.get_context("fork"))
        chunk = max(16, len(paths) // (64 * min(cpus, 16)))
    else:
        pool, chunk = ThreadPoolExecutor(max(1, min(8, 2 * cpus))), 64
    with pool:
        return list(tqdm(pool.map(_check_item, paths, chunksize=chunk), total=len(paths), desc="checking images",
                         unit="img", disable=len(paths) <= PROGRESS_MIN_IMAGES))


def _image_problems(dataset: MultiGranularDataset, mode: str | bool | None = "all") -> list[tuple[int, Problem]]:
    """Problems of image arrays and files (the files of ``check_plan(mode)``); a sample without an origin
    is named by the file (paths) or the dataset's name (arrays)."""
    name, images = dataset.name, dataset.table.images
    out: list[tuple[int, Problem]] = []

    def problem(i: int, field: str, msg: str, where: object = None) -> Problem:
        s = dataset[i]
        return Problem.at(s.origin, field, msg, s.id) if s.origin else Problem(where or name, field, msg, sample=s.id)

    if images.paths is not None:  # every image is a file: each distinct path once
        by_path: dict[str, list[int]] = {}
        for i, p in enumerate(images.paths):
            by_path.setdefault(p, []).append(i)
        items: list = list(by_path)
        owners = list(by_path.values())
    elif images.packed is not None:  # e.g. shard members, checked by their own check(); built when picked
        items = _Packed(images)
        owners = _Identity()
    else:
        items, owners = [], []
        for i in range(len(images)):
            image = images[i]
            if isinstance(image, np.ndarray):
                msg = _check_array(image, f"sample {dataset.sample_id(i)!r}")
                if msg:
                    out.append((i, problem(i, "image", msg)))
            elif isinstance(image, (str, Path, ImageRef)):
                items.append(str(image) if isinstance(image, Path) else image)
                owners.append([i])
            else:
                msg = f"image is neither an array nor a path: {type(image).__name__}"
                out.append((i, problem(i, "image", msg)))
    plan, k = check_plan(mode, len(items))
    pick = list(range(len(items))) if plan == "all" else []
    if plan == "sample":
        pick = np.sort(np.random.default_rng(SAMPLE_SEED).choice(len(items), size=k, replace=False)).tolist()
    if items:
        refs = isinstance(items, _Packed) or any(isinstance(x, ImageRef) for x in items)
        what = "images (files or shard members)" if refs else "image files"
        log.info("data: %s: opened %d of %d %s before training (data.check_images=%s%s)", name, len(pick),
                 len(items), what, mode, "" if plan == "all" else f": {plan}; the others are checked while loading")
    results = _check_files([items[j] for j in pick]) if pick else []
    for j, msg in zip(pick, results):
        if msg is None:
            continue
        for i in owners[j]:
            s = dataset[i]
            field = s.origin.image_field if s.origin and s.origin.image_field else "image"
            prob = Problem.at(s.origin, field, msg, s.id)
            if s.origin is None:
                prob = Problem(items[j] if isinstance(items[j], str) else name, field, msg, sample=s.id)
            out.append((i, prob))
    return out


class _Packed:
    """The images of a packed column as a sequence (each built when read: no object per sample up front)."""

    def __init__(self, images):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, j: int):
        return self.images[j]


class _Identity:
    """``owners[j] == [j]``: one sample per packed image."""

    def __getitem__(self, j: int) -> list[int]:
        return [j]


def _source(dataset: MultiGranularDataset) -> str:
    o = dataset.table.origin_of(0) if len(dataset) else None
    return o.file if o is not None else dataset.name


def find_problems(
    dataset: MultiGranularDataset,
    required_levels: Sequence[str] | None = None,
    require_labels: Sequence[str] = (),
    check_images: str | bool = "auto",
) -> list[tuple[int | None, Problem]]:
    """Every problem, with the index of the bad sample (``None`` for a problem of the whole dataset). Reads
    the dataset's columns: checks of labels, targets and splits run once per distinct value."""
    out: list[tuple[int | None, Problem]] = []
    source = _source(dataset)
    table = dataset.table

    def problem(i: int, field: str, message: str) -> Problem:
        # located at the sample's origin; samples without one (embedded sets) name the dataset
        s = dataset[i]
        if s.origin is None:
            return Problem(dataset.name, field, message, sample=s.id)
        return Problem.at(s.origin, field, message, s.id)

    def samples_with(col, code: int) -> list[int]:
        return np.flatnonzero(col.codes == code).tolist()

    absent = [g for g in (required_levels or ()) if g not in dataset.levels]
    for g in absent:
        out.append(
            (None, Problem(source, "data.levels", f"level {g!r} named in the config is absent from the data; "
                           f"it has levels {list(dataset.levels)}"))
        )
    levels = [g for g in (required_levels or dataset.levels) if g in dataset.levels]

    first: dict[str, int] = {}
    for i, sid in enumerate(table.ids):
        j = first.setdefault(sid, i)
        if j != i:
            o = table.origin_of(j)
            first_at = f" (first at {Problem.at(o, None, '', None).where()})" if o is not None else ""
            out.append((i, problem(i, "id", f"duplicate id {sid!r}{first_at}")))

    for code, value in enumerate(table.split.values):
        if value not in SPLITS:
            for i in samples_with(table.split, code):
                out.append((i, problem(i, "split", f"split {value!r} is not one of {list(SPLITS)}")))

    for g in levels:
        vocab = set(dataset.vocab.get(g, ()))
        col = table.labels.get(g)
        bad: list[tuple[int, str, str]] = []
        for code, labels in enumerate(col.values if col is not None else ()):
            unknown = [lab for lab in labels if lab not in vocab]
            if unknown:
                msg = f"unknown label(s) {unknown} at level {g!r}; the vocabulary is {list(dataset.vocab[g])}"
                bad.extend((i, f"labels.{g}", msg) for i in samples_with(col, code))
            if g in require_labels and not labels:
                msg = f"empty label set at level {g!r}, where labels are required"
                bad.extend((i, f"labels.{g}", msg) for i in samples_with(col, code))
        if g in require_labels:
            none = np.flatnonzero(col.codes < 0) if col is not None else np.arange(len(dataset))
            msg = f"empty label set at level {g!r}, where labels are required"
            bad.extend((int(i), f"labels.{g}", msg) for i in none)
        for i, field, msg in sorted(bad, key=lambda b: b[0]):  # in sample order, as one pass would find them
            out.append((i, problem(i, field, msg)))

    for task, spec in dataset.task_specs.items():
        n = len(spec.classes)
        col = table.targets.get(task)
        if col is None:
            continue
        bad = []
        if np.any(col.codes >= 0):
            bad.extend((int(i), f"no target for task {task!r}") for i in np.flatnonzero(col.codes < 0))
        for code, t in enumerate(col.values):
            if spec.kind == "multiclass":
                ok = isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= int(t) < n
                want = f"a class index in [0, {n})"
            else:
                ok = isinstance(t, (tuple, list)) and len(t) == n and all(v in (0, 1) for v in t)
                want = f"{n} values 0/1"
            if not ok:
                bad.extend((i, f"target {t!r} for task {task!r} is not {want}") for i in samples_with(col, code))
        for i, msg in sorted(bad, key=lambda b: b[0]):
            out.append((i, problem(i, f"targets.{task}", msg)))

    if check_images not in (False, "none"):
        out.extend(_image_problems(dataset, check_images))
    return out


def validate(
    dataset: MultiGranularDataset,
    required_levels: Sequence[str] | None = None,
    require_labels: Sequence[str] = (),
    check_images: str | bool = "auto",
) -> list[Problem]:
    """Every problem found in ``dataset`` (see the module docstring); an empty list if it is clean."""
    return [p for _, p in find_problems(dataset, required_levels, require_labels, check_images)]
