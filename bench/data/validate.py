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
from .sample import SPLITS, ImageRef, MultiGranularDataset, Sample

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


def _image_problems(samples: Sequence[Sample], name: str, mode: str | bool | None = "all") -> list[tuple[int, Problem]]:
    """Problems of image arrays and files (the files of ``check_plan(mode)``); a sample without an origin
    is named by the file (paths) or the dataset ``name`` (arrays)."""
    by_path: dict[str, list[int]] = {}
    sources: list[int] = []  # samples whose image is an ImageRef (a shard member): checked by its check()
    out: list[tuple[int, Problem]] = []
    for i, s in enumerate(samples):
        if isinstance(s.image, np.ndarray):
            msg = _check_array(s.image, f"sample {s.id!r}")
            if msg:
                out.append((i, Problem.at(s.origin, "image", msg, s.id) if s.origin else Problem(name, "image", msg, sample=s.id)))
        elif isinstance(s.image, (str, Path)):
            by_path.setdefault(str(s.image), []).append(i)
        elif isinstance(s.image, ImageRef):
            sources.append(i)
        else:
            msg = f"image is neither an array nor a path: {type(s.image).__name__}"
            out.append((i, Problem.at(s.origin, "image", msg, s.id) if s.origin else Problem(name, "image", msg, sample=s.id)))
    paths = list(by_path)
    # files (each distinct path once), then images that live elsewhere (shard members), checked alike
    items: list = paths + [samples[i].image for i in sources]
    owners = [by_path[p] for p in paths] + [[i] for i in sources]
    plan, k = check_plan(mode, len(items))
    pick = list(range(len(items))) if plan == "all" else []
    if plan == "sample":
        pick = np.sort(np.random.default_rng(SAMPLE_SEED).choice(len(items), size=k, replace=False)).tolist()
    if items:
        what = "image files" if not sources else "images (files or shard members)"
        log.info("data: %s: opened %d of %d %s before training (data.check_images=%s%s)", name, len(pick),
                 len(items), what, mode, "" if plan == "all" else f": {plan}; the others are checked while loading")
    results = _check_files([items[j] for j in pick]) if pick else []
    for j, msg in zip(pick, results):
        if msg is None:
            continue
        for i in owners[j]:
            s = samples[i]
            field = s.origin.image_field if s.origin and s.origin.image_field else "image"
            prob = Problem.at(s.origin, field, msg, s.id)
            if s.origin is None:
                prob = Problem(items[j] if j < len(paths) else name, field, msg, sample=s.id)
            out.append((i, prob))
    return out


def _source(dataset: MultiGranularDataset) -> str:
    for s in dataset.samples[:1]:
        if s.origin is not None:
            return s.origin.file
    return dataset.name


def find_problems(
    dataset: MultiGranularDataset,
    required_levels: Sequence[str] | None = None,
    require_labels: Sequence[str] = (),
    check_images: str | bool = "auto",
) -> list[tuple[int | None, Problem]]:
    """Every problem, with the index of the bad sample (``None`` for a problem of the whole dataset)."""
    out: list[tuple[int | None, Problem]] = []
    source = _source(dataset)

    def problem(s: Sample, field: str, message: str) -> Problem:
        # located at the sample's origin; samples without one (embedded sets) name the dataset
        if s.origin is None:
            return Problem(dataset.name, field, message, sample=s.id)
        return Problem.at(s.origin, field, message, s.id)

    absent = [g for g in (required_levels or ()) if g not in dataset.levels]
    for g in absent:
        out.append(
            (None, Problem(source, "data.levels", f"level {g!r} named in the config is absent from the data; "
                           f"it has levels {list(dataset.levels)}"))
        )
    levels = [g for g in (required_levels or dataset.levels) if g in dataset.levels]

    first: dict[str, int] = {}
    for i, s in enumerate(dataset.samples):
        if s.id in first:
            j = first[s.id]
            o = dataset.samples[j].origin
            first_at = f" (first at {Problem.at(o, None, '', None).where()})" if o is not None else ""
            out.append((i, problem(s, "id", f"duplicate id {s.id!r}{first_at}")))
        else:
            first[s.id] = i

    for i, s in enumerate(dataset.samples):
        if s.split is not None and s.split not in SPLITS:
            out.append((i, problem(s, "split", f"split {s.split!r} is not one of {list(SPLITS)}")))

    for g in levels:
        vocab = set(dataset.vocab.get(g, ()))
        for i, s in enumerate(dataset.samples):
            labels = s.labels.get(g, ())
            unknown = [lab for lab in labels if lab not in vocab]
            if unknown:
                out.append((i, problem(s, f"labels.{g}", f"unknown label(s) {unknown} at level {g!r}; "
                                       f"the vocabulary is {list(dataset.vocab[g])}")))
            if g in require_labels and not labels:
                out.append((i, problem(s, f"labels.{g}", f"empty label set at level {g!r}, where labels are required")))

    for task, spec in dataset.task_specs.items():
        n = len(spec.classes)
        have = [s.targets.get(task) is not None for s in dataset.samples]
        for i, s in enumerate(dataset.samples):
            t = s.targets.get(task)
            if t is None:
                if any(have):
                    out.append((i, problem(s, f"targets.{task}", f"no target for task {task!r}")))
                continue
            if spec.kind == "multiclass":
                ok = isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= int(t) < n
                want = f"a class index in [0, {n})"
            else:
                ok = isinstance(t, (tuple, list)) and len(t) == n and all(v in (0, 1) for v in t)
                want = f"{n} values 0/1"
            if not ok:
                out.append((i, problem(s, f"targets.{task}", f"target {t!r} for task {task!r} is not {want}")))

    if check_images not in (False, "none"):
        out.extend(_image_problems(dataset.samples, dataset.name, check_images))
    return out


def validate(
    dataset: MultiGranularDataset,
    required_levels: Sequence[str] | None = None,
    require_labels: Sequence[str] = (),
    check_images: str | bool = "auto",
) -> list[Problem]:
    """Every problem found in ``dataset`` (see the module docstring); an empty list if it is clean."""
    return [p for _, p in find_problems(dataset, required_levels, require_labels, check_images)]
