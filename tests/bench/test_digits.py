"""digits: real sklearn digits, upsampled, with four text levels; stratified deterministic splits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from bench.data import digits as D
from bench.data.dataset import MultiGranularDataset


@pytest.fixture(scope="module")
def ds():
    return D.build()


def _digit(s):
    return s.targets["digit"]


def test_defaults(ds):
    assert isinstance(ds, MultiGranularDataset)
    assert len(ds) == 1797
    assert ds.levels == ("parity", "magnitude", "attributes", "digit")
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [1168, 270, 359]
    img = ds.image(0)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])
    assert ds.task_specs["digit"].kind == "multiclass" and len(ds.task_specs["digit"].classes) == 10
    assert ds.task_specs["attributes"].classes == ("prime", "closed loop", "straight strokes")


def test_images_are_the_real_digits_upsampled():
    real = load_digits()
    same = D.build(resolution=8)
    for i in (0, 5, 1000):
        want = (real.images[i] / 16.0 * 255.0 + 0.5).astype(np.uint8)
        assert np.array_equal(same.image(i)[..., 0], want)
        assert _digit(same[i]) == real.target[i]
    big = D.build(resolution=64)
    assert big.image(3).shape == (64, 64, 3)
    # upsampling keeps the ink where it was: block means at 8x8 track the original
    blocks = big.image(3)[..., 0].reshape(8, 8, 8, 8).mean(axis=(1, 3))
    assert np.corrcoef(blocks.ravel(), real.images[3].ravel())[0, 1] > 0.9


@pytest.mark.parametrize(
    "d, texts, attrs",
    [
        (0, ("an even digit", "a digit less than five", "a digit with a closed loop", "the digit zero"),
         ("closed loop",)),
        (1, ("an odd digit", "a digit less than five", "a digit drawn with straight strokes", "the digit one"),
         ("straight strokes",)),
        (2, ("an even digit", "a digit less than five", "a prime digit", "the digit two"), ("prime",)),
        (5, ("an odd digit", "a digit of five or more", "a prime digit", "the digit five"), ("prime",)),
        (7, ("an odd digit", "a digit of five or more", "a prime digit drawn with straight strokes", "the digit seven"),
         ("prime", "straight strokes")),
        (8, ("an even digit", "a digit of five or more", "a digit with a closed loop", "the digit eight"),
         ("closed loop",)),
    ],
)
def test_texts_and_labels_per_digit(ds, d, texts, attrs):
    s = next(x for x in ds.samples if _digit(x) == d)
    assert tuple(s.texts[g] for g in ds.levels) == texts
    assert s.labels["attributes"] == attrs
    assert s.labels["digit"] == (D.DIGIT_NAMES[d],)
    assert s.labels["parity"] == (("even",) if d % 2 == 0 else ("odd",))
    assert s.labels["magnitude"] == (("less than five",) if d < 5 else ("five or more",))
    assert s.targets["attributes"] == tuple(int(a in attrs) for a in D.ATTRIBUTES)


def test_every_sample_consistent(ds):
    y = ds.task_targets("digit")
    assert np.bincount(y).min() >= 174
    for g in ds.levels:
        mh = ds.multi_hot(g)  # raises if a label is outside the vocabulary
        assert mh.sum(1).min() >= 1
    assert np.array_equal(ds.task_targets("attributes"), ds.multi_hot("attributes"))
    assert np.array_equal(ds.multi_hot("digit").argmax(1), y)
    # prime: 2 3 5 7; closed loop: 0 6 8 9; straight strokes: 1 4 7
    att = ds.task_targets("attributes")
    assert np.array_equal(att[:, 0], np.isin(y, [2, 3, 5, 7]))
    assert np.array_equal(att[:, 1], np.isin(y, [0, 6, 8, 9]))
    assert np.array_equal(att[:, 2], np.isin(y, [1, 4, 7]))
    assert len(set(ds.texts("attributes"))) == 4 and len(set(ds.texts("digit"))) == 10


def test_splits_disjoint_stratified_and_deterministic(ds):
    splits = {s: {x.id for x in ds.split(s).samples} for s in ("train", "val", "test")}
    assert not (splits["train"] & splits["val"] or splits["train"] & splits["test"] or splits["val"] & splits["test"])
    assert sum(len(v) for v in splits.values()) == 1797
    y = ds.task_targets("digit")
    for s, frac in (("test", 0.2), ("val", 0.15)):
        counts = np.bincount(ds.split(s).task_targets("digit"), minlength=10)
        assert np.all(np.abs(counts - frac * np.bincount(y)) <= 1.5)  # stratified
    again = D.build()
    assert [x.split for x in again.samples] == [x.split for x in ds.samples]
    other = D.build(seed=1)
    assert [x.split for x in other.samples] != [x.split for x in ds.samples]
    alias = D.build(split_seed=1)
    assert [x.split for x in alias.samples] == [x.split for x in other.samples]
    sizes = D.build(val_fraction=0.1, test_fraction=0.3)
    assert [len(sizes.split(s)) for s in ("train", "val", "test")] == [1078, 180, 539]


def test_levels_option():
    d = D.build(levels=["digit", "parity"])
    assert d.levels == ("digit", "parity")
    assert set(d[0].texts) == {"digit", "parity"}
    assert d.vocab["digit"] == D.DIGIT_NAMES


@pytest.mark.parametrize(
    "options, name",
    [
        ({"size": 10}, "size"),
        ({"resolution": 4}, "resolution"),
        ({"resolution": "x32"}, "resolution"),
        ({"seed": -1}, "seed"),
        ({"val_fraction": 1.2}, "val_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction"),
        ({"levels": ["digit", "colour"]}, "levels"),
        ({"levels": []}, "levels"),
        ({"seed": 1, "split_seed": 2}, "split_seed"),
    ],
)
def test_bad_options_raise_naming_the_option(options, name):
    with pytest.raises(ValueError) as e:
        D.build(**options)
    msg = str(e.value)
    assert f"data.{name}" in msg and ("allowed" in msg or "must be" in msg)
