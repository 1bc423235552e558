"""The public builder: ``build(**options)`` -> :class:`~bench.data.sample.MultiGranularDataset` (through the
cache), and the per-sample plan both the in-memory build and the disk writer (:mod:`.corpus`) follow, so
they hold the same samples: which seed stream and index each sample is drawn from, its id, its split, and
its metadata record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..sample import Sample

from ..dataset import MultiGranularDataset
from . import cache
from .draw import render
from ..registry import register_format
from .options import DIFFICULTY, FundusSynthOptions, check_options
from .text import NAME, VOCAB
from .variants import VARIANTS, Variant

logger = logging.getLogger(__name__)


# -- the plan ---------------------------------------------------------------------------------------------
def val_mask(o: dict) -> np.ndarray:
    """bool [size]: which pool images go to ``val`` (a seeded permutation of the pool)."""
    n = o["size"]
    n_val = int(round(o["val_fraction"] * n))
    perm = np.random.default_rng([o["seed"], VARIANTS[o["variant"]].streams[2]]).permutation(n)
    is_val = np.zeros(n, bool)
    is_val[perm[:n_val]] = True
    return is_val


def draw_options(o: dict) -> dict[str, Any]:
    """The keyword arguments of :func:`.draw.render` / :func:`.draw.draw_sample` for resolved options ``o``
    (all but ``seed``, ``stream`` and the index)."""
    v = VARIANTS[o["variant"]]
    return dict(resolution=o["resolution"], prevalence=o["prevalence"], supersample=o["supersample"],
                cameras=v.cameras, tasks=v.tasks, **{k: o[k] for k in DIFFICULTY})


def sample_id(v: Variant, seed: int, part: str, i: int) -> str:
    """``part``: ``dev`` (the train + val pool) or ``test``."""
    return f"{v.id_prefix}s{seed}-{part}{i:06d}"


def _summary(t: dict) -> dict:
    out = {
        "eye": t["eye"], "age": t["age"], "cdr": t["cdr"], "dr_grade": t["dr_grade"],
        "diseases": t["diseases"], "findings": t["findings"],
    }
    if "camera" in t:
        out["camera"] = t["camera"]
    return out


def record(v: Variant, seed: int, part: str, i: int, split: str, truth: dict) -> dict:
    """The metadata of one sample (what the cache and the disk manifest store)."""
    sid = sample_id(v, seed, part, i)
    return {"id": sid, "split": split, "texts": truth["texts"], "labels": truth["labels"],
            "targets": truth["targets"], "truth": _summary(truth)}


def to_sample(m: dict, image: Any, levels: tuple[str, ...], v: Variant) -> Sample:
    """A :class:`Sample` from a metadata record (the patient id is the sample id: one image per patient)."""
    specs = v.task_specs
    return Sample(
        id=m["id"],
        image=image,
        texts={g: m["texts"][g] for g in levels},
        labels={g: tuple(m["labels"][g]) for g in levels},
        targets={t: tuple(int(x) for x in m["targets"][t]) if specs[t].kind == "multilabel" else int(m["targets"][t])
                 for t in v.tasks},
        patient_id=m["id"],
        split=m["split"],
    )


def dataset_name(o: dict) -> str:
    tag = "" if o["variant"] == "pretrain" else f"{o['variant']}, "
    return f"{NAME}({tag}n={o['size']}+{o['test_size']}, {o['resolution']}px, seed={o['seed']})"


def _generate(o: dict) -> tuple[np.ndarray, list[dict]]:
    v = VARIANTS[o["variant"]]
    n, nt = o["size"], o["test_size"]
    s_dev, s_test, _ = v.streams
    common = dict(seed=o["seed"], progress=o["progress"], **draw_options(o))
    img_dev, tr_dev = render(n, stream=s_dev, **common)
    img_test, tr_test = render(nt, stream=s_test, **common)
    is_val = val_mask(o)
    meta = [record(v, o["seed"], "dev", i, "val" if is_val[i] else "train", t) for i, t in enumerate(tr_dev)]
    meta += [record(v, o["seed"], "test", i, "test", t) for i, t in enumerate(tr_test)]
    return np.concatenate([img_dev, img_test]), meta


# -- the public builder ------------------------------------------------------------------------------------
def cache_path(**options) -> Path | None:
    """Where ``build(**options)`` caches its data (None when caching is off)."""
    return cache.path_for(check_options(options))


def build_with_truth(**options) -> tuple[MultiGranularDataset, list[dict]]:
    """Like :func:`build`, also returning a ground-truth summary per sample (same order): ``eye``, ``age``
    (the hidden variable), ``cdr``, ``dr_grade``, ``diseases``, ``findings`` (finding -> count), and
    ``camera`` (downstream variants)."""
    o = check_options(options)
    path = cache.path_for(o)
    images = meta = None
    if path is not None and path.exists():
        try:
            images, meta = cache.load(path)
            logger.info("fundus_synth: loaded %d images from cache %s", len(meta), path)
        except Exception as e:  # a corrupt cache file is regenerated
            logger.warning("fundus_synth: ignoring unreadable cache %s (%s)", path, e)
            images = meta = None
    if images is None:
        logger.info("fundus_synth: drawing %d + %d images at %d px (variant %s, seed %d)",
                    o["size"], o["test_size"], o["resolution"], o["variant"], o["seed"])
        images, meta = _generate(o)
        if path is not None:
            try:
                cache.save(path, images, meta)
                logger.info("fundus_synth: cached to %s", path)
            except OSError as e:
                logger.warning("fundus_synth: could not write cache %s (%s)", path, e)
    v = VARIANTS[o["variant"]]
    levels = o["levels"]
    samples = [to_sample(m, images[i], levels, v) for i, m in enumerate(meta)]
    ds = MultiGranularDataset(samples, levels, {g: VOCAB[g] for g in levels}, v.task_specs, name=dataset_name(o))
    return ds, [m["truth"] for m in meta]


@register_format("fundus_synth", options=FundusSynthOptions, own_splits=True)
def build(**options) -> MultiGranularDataset:
    """Build a ``fundus_synth`` dataset (rules: the package docstring; options:
    :class:`.options.FundusSynthOptions`). Unknown options or bad values raise
    :class:`~bench.errors.DataConfigError` naming ``data.<option>``, the value and what is allowed."""
    return build_with_truth(**options)[0]
