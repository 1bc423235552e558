"""``digits``: scikit-learn's bundled real handwritten digits with multi-granular text (no download).

Data: ``sklearn.datasets.load_digits`` -- 1,797 real 8x8 greyscale digits (values 0-16; UCI "Optical
Recognition of Handwritten Digits", test part), 174-183 per class. Each image is upsampled bilinearly to
``resolution x resolution`` (default 32), scaled to 0-255 (ink bright on a dark background) and repeated
to 3 channels (uint8 RGB).

Levels (coarse to fine), their texts and labels (labels are the label *set* behind the text):

============= ==================================================== =========================================
level         text                                                 labels (vocabulary)
============= ==================================================== =========================================
``parity``    "an even digit" / "an odd digit"                     ``even`` / ``odd``
``magnitude`` "a digit less than five" / "a digit of five or more" ``less than five`` / ``five or more``
``attributes``"a prime digit", "a digit with a closed loop",       subset of ``prime`` (2, 3, 5, 7),
              "a digit drawn with straight strokes",               ``closed loop`` (0, 6, 8, 9),
              "a prime digit drawn with straight strokes" (7)      ``straight strokes`` (1, 4, 7)
``digit``     "the digit seven"                                    ``zero`` ... ``nine``
============= ==================================================== =========================================

Every digit has at least one attribute and only 7 has two, so ``attributes`` has four distinct texts over
three labels (texts and label sets differ, as in the MGLL data).

Downstream tasks: ``digit`` (multiclass, 10 classes ``zero`` ... ``nine``) and ``attributes`` (multilabel
over ``prime``, ``closed loop``, ``straight strokes``).

Splits: stratified by digit, deterministic in ``seed``: ``test_fraction`` of each class goes to ``test``,
then ``val_fraction`` (of the whole set) to ``val``, the rest to ``train``. Defaults: ``resolution=32,
seed=0, val_fraction=0.15, test_fraction=0.2`` (1,168 / 270 / 359 images); ``split_seed`` is accepted as
an alias of ``seed`` (the harness's shared split option). ``levels`` selects and orders a subset of the
levels (default: all four).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from bench.data.options import level_subset, take
from bench.errors import DataConfigError
from bench.data.registry import register_format
from bench.data.sample import Sample, TaskSpec
from bench.data.dataset import MultiGranularDataset

logger = logging.getLogger(__name__)

NAME = "digits"
LEVELS = ("parity", "magnitude", "attributes", "digit")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ATTRIBUTES = ("prime", "closed loop", "straight strokes")
ATTRIBUTE_DIGITS = {"prime": (2, 3, 5, 7), "closed loop": (0, 6, 8, 9), "straight strokes": (1, 4, 7)}
VOCAB = {
    "parity": ("even", "odd"),
    "magnitude": ("less than five", "five or more"),
    "attributes": ATTRIBUTES,
    "digit": DIGIT_NAMES,
}
TASK_SPECS = {
    "digit": TaskSpec("multiclass", DIGIT_NAMES),
    "attributes": TaskSpec("multilabel", ATTRIBUTES),
}


def attributes_of(d: int) -> tuple[str, ...]:
    """The attribute labels of digit ``d`` (in ``ATTRIBUTES`` order)."""
    return tuple(a for a in ATTRIBUTES if d in ATTRIBUTE_DIGITS[a])


def texts_of(d: int) -> dict[str, str]:
    """The text of every level for digit ``d``."""
    attrs = attributes_of(d)
    if attrs == ("prime", "straight strokes"):
        att = "a prime digit drawn with straight strokes"
    elif attrs == ("prime",):
        att = "a prime digit"
    elif attrs == ("closed loop",):
        att = "a digit with a closed loop"
    elif attrs == ("straight strokes",):
        att = "a digit drawn with straight strokes"
    else:  # pragma: no cover - every digit is covered above
        raise AssertionError(attrs)
    return {
        "parity": "an even digit" if d % 2 == 0 else "an odd digit",
        "magnitude": "a digit less than five" if d < 5 else "a digit of five or more",
        "attributes": att,
        "digit": f"the digit {DIGIT_NAMES[d]}",
    }


def labels_of(d: int) -> dict[str, tuple[str, ...]]:
    """The label set of every level for digit ``d``."""
    return {
        "parity": ("even",) if d % 2 == 0 else ("odd",),
        "magnitude": ("less than five",) if d < 5 else ("five or more",),
        "attributes": attributes_of(d),
        "digit": (DIGIT_NAMES[d],),
    }


@dataclass
class Options:
    resolution: int = field(default=32, metadata={"help": "image size (bilinear upsampling of the 8x8 digits)", "min": 8, "max": 512})
    seed: int = field(default=0, metadata={"help": "seed of the stratified splits", "min": 0})
    split_seed: Optional[int] = field(default=None, metadata={"help": "the harness's split option: an alias of seed", "min": 0})
    val_fraction: float = field(default=0.15, metadata={"help": "val fraction", "min": 0, "max": 1, "max_open": True})
    test_fraction: float = field(default=0.2, metadata={"help": "test fraction", "min": 0, "max": 1, "max_open": True})
    levels: Optional[list[str]] = field(default=None, metadata={"help": f"levels used (default all: {list(LEVELS)})"})


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validate ``build``'s options; return the full option dict (defaults filled in)."""
    o = take("digits", options, Options)
    if o["split_seed"] is not None:  # the harness's shared split option: an alias of ``seed``
        if options.get("seed") is not None and options["seed"] != o["split_seed"]:
            raise DataConfigError(f"data.split_seed={o['split_seed']!r} (data.format=digits) must be the same as "
                                  f"data.seed={options['seed']!r} (an alias of it), or left out", key="data.split_seed")
        o["seed"] = o["split_seed"]
    o.pop("split_seed")
    if o["val_fraction"] + o["test_fraction"] >= 1.0:
        raise DataConfigError(f"data.val_fraction={o['val_fraction']} + data.test_fraction={o['test_fraction']} "
                              "(data.format=digits) must be < 1", key="data.val_fraction")
    o["levels"] = level_subset("digits", o["levels"], LEVELS)
    return o


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation matrix (pixel centres aligned, edges clamped)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.minimum(np.floor(pos).astype(int), n_in - 2)
    f = pos - i0
    M = np.zeros((n_out, n_in))
    M[np.arange(n_out), i0] = 1 - f
    M[np.arange(n_out), i0 + 1] = f
    return M


def load_images(resolution: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as ``[N, R, R, 3]`` uint8 (bilinear upsampling) and their digit labels ``[N]``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    imgs = data.images.astype(np.float64) / 16.0  # [N, 8, 8] in [0, 1]
    M = _interp_matrix(resolution, imgs.shape[1])
    up = np.einsum("ri,nij,sj->nrs", M, imgs, M)
    u8 = (np.clip(up, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(u8[..., None], 3, axis=3), data.target.astype(int)


def split_indices(y: np.ndarray, seed: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Split name per index, stratified by class and deterministic in ``seed``."""
    rng = np.random.default_rng([seed, 12345])
    split = np.full(len(y), "train", dtype=object)
    n = len(y)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    classes = np.unique(y)
    # per class: shuffled indices; allot test then val by largest-remainder so totals are exact
    order = {c: rng.permutation(np.flatnonzero(y == c)) for c in classes}
    counts = np.array([len(order[c]) for c in classes])

    def allot(total: int, avail: np.ndarray) -> np.ndarray:
        raw = total * avail / avail.sum() if avail.sum() else np.zeros(len(avail))
        k = np.floor(raw).astype(int)
        rest = total - k.sum()
        if rest > 0:
            k[np.argsort(-(raw - k), kind="stable")[:rest]] += 1
        return np.minimum(k, avail)

    k_test = allot(n_test, counts)
    k_val = allot(n_val, counts - k_test)
    for c, kt, kv in zip(classes, k_test, k_val):
        idx = order[c]
        split[idx[:kt]] = "test"
        split[idx[kt:kt + kv]] = "val"
    return split


@register_format("digits", options=Options, own_splits=True)
def build(**options) -> MultiGranularDataset:
    """Build the ``digits`` dataset. Options (defaults): ``resolution`` (32), ``seed`` (0), ``val_fraction``
    (0.15), ``test_fraction`` (0.2), ``levels`` (None: all of ``LEVELS``). Unknown options or bad values
    raise ``ValueError`` naming the option and the allowed values."""
    o = check_options(options)
    images, y = load_images(o["resolution"])
    split = split_indices(y, o["seed"], o["val_fraction"], o["test_fraction"])
    levels = o["levels"]
    samples = []
    for i, d in enumerate(y):
        d = int(d)
        texts = texts_of(d)
        labels = labels_of(d)
        samples.append(Sample(
            id=f"{NAME}-{i:04d}",
            image=images[i],
            texts={g: texts[g] for g in levels},
            labels={g: labels[g] for g in levels},
            targets={"digit": d, "attributes": tuple(int(a in labels["attributes"]) for a in ATTRIBUTES)},
            patient_id=None,
            split=str(split[i]),
        ))
    logger.info("digits: %d images at %d px (%s)", len(samples), o["resolution"],
                ", ".join(f"{s}={int((split == s).sum())}" for s in ("train", "val", "test")))
    return MultiGranularDataset(samples, levels, {g: VOCAB[g] for g in levels}, TASK_SPECS,
                                name=f"{NAME}({o['resolution']}px, seed={o['seed']})")
