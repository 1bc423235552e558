"""Validation before training: one pass over a dataset, reporting every problem (not just the first).

Checks: levels named in the config but absent from the data; duplicate sample ids (every occurrence after
the first); split values other than train/val/test; labels outside a level's vocabulary (unknown names); empty label sets at levels where labels are
required; downstream targets that are missing or out of range; and every image: a file path must exist
and open (``np.load`` and key ``image`` for ``.npz``, ``PIL.Image.verify`` otherwise; each distinct file is
opened once), an in-memory array must be ``H x W`` or ``H x W x {1,3,4}``.

Parse-time problems (missing fields, bad values) are found by the format adapters while reading; see
``problems.py``.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from .problems import DataValidationError, Problem
from .sample import SPLITS, ImageRef, MultiGranularDataset, Sample

log = logging.getLogger(__name__)

__all__ = ["DataValidationError", "Problem", "check_image", "find_problems", "validate"]

PROGRESS_MIN_IMAGES = 2000  # show a progress bar above this many image files


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


def _image_problems(samples: Sequence[Sample], name: str) -> list[tuple[int, Problem]]:
    """Problems of image arrays and files; a sample without an origin is named by the file (paths) or the
    dataset ``name`` (arrays)."""
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
    items: list = paths + [samples[i].image for i in sources]
    if items:
        from tqdm.auto import tqdm

        workers = max(1, min(8, 2 * (os.cpu_count() or 1)))
        with ThreadPoolExecutor(workers) as pool:
            results = list(
                tqdm(
                    pool.map(_check_item, items, chunksize=64),
                    total=len(items),
                    desc="checking images",
                    unit="img",
                    disable=len(items) <= PROGRESS_MIN_IMAGES,
                )
            )
        for i, msg in zip(sources, results[len(paths):]):
            if msg is not None:
                s = samples[i]
                field = s.origin.image_field if s.origin and s.origin.image_field else "image"
                out.append((i, Problem.at(s.origin, field, msg, s.id) if s.origin else Problem(name, field, msg, sample=s.id)))
        for path, msg in zip(paths, results):
            if msg is None:
                continue
            for i in by_path[path]:
                s = samples[i]
                field = s.origin.image_field if s.origin and s.origin.image_field else "image"
                prob = Problem.at(s.origin, field, msg, s.id)
                if s.origin is None:
                    prob = Problem(path, field, msg, sample=s.id)
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
    check_images: bool = True,
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

    if check_images:
        out.extend(_image_problems(dataset.samples, dataset.name))
    return out


def validate(
    dataset: MultiGranularDataset,
    required_levels: Sequence[str] | None = None,
    require_labels: Sequence[str] = (),
    check_images: bool = True,
) -> list[Problem]:
    """Every problem found in ``dataset`` (see the module docstring); an empty list if it is clean."""
    return [p for _, p in find_problems(dataset, required_levels, require_labels, check_images)]
