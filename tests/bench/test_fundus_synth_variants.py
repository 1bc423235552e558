"""fundus_synth downstream variants: label spaces, splits, sizes with statistical power, a measurable domain
shift from the pretraining corpus, and no shared image, id or patient with it."""

from __future__ import annotations

import functools
import hashlib
import math

import numpy as np
import pytest

from bench.data import build_dataset
from bench.data import fundus_synth as F
from bench.data.fundus_synth.dataset import draw_options
from bench.data.fundus_synth.variants import DOWNSTREAM, detectable_auc_difference
from bench.errors import DataConfigError

R = 32
EXPECTED_TASKS = {
    "pretrain": {"disease_multilabel": ("multilabel", 6), "dr_grade": ("multiclass", 5), "glaucoma": ("multiclass", 2)},
    "dr": {"dr_grade": ("multiclass", 5), "dme": ("multiclass", 2)},
    "glaucoma": {"glaucoma": ("multiclass", 2)},
    "amd": {"amd": ("multiclass", 2)},
    "multidisease": {"disease_multilabel": ("multilabel", 6)},
}


@pytest.fixture(scope="module")
def sets():
    return {v: F.build(variant=v, size=40, test_size=20, resolution=R, cache_dir=False, progress=False)
            for v in F.VARIANTS}


def test_the_variants_are_the_documented_ones():
    assert tuple(F.VARIANTS) == ("pretrain", *DOWNSTREAM) == ("pretrain", "dr", "glaucoma", "amd", "multidisease")
    assert set(EXPECTED_TASKS) == set(F.VARIANTS)
    for name in DOWNSTREAM:
        assert name in F.__doc__  # the shift of every variant is documented in the rules docstring


@pytest.mark.parametrize("variant", list(EXPECTED_TASKS))
def test_label_space_and_splits(sets, variant):
    ds = sets[variant]
    assert {t: (s.kind, len(s.classes)) for t, s in ds.task_specs.items()} == EXPECTED_TASKS[variant]
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [32, 8, 20]
    assert ds.levels == F.LEVELS
    for task, spec in ds.task_specs.items():
        y = ds.task_targets(task)
        if spec.kind == "multiclass":
            assert y.min() >= 0 and y.max() < len(spec.classes)
        else:
            assert y.shape == (len(ds), len(spec.classes)) and set(np.unique(y)) <= {0, 1}
    for s in ds.samples:
        assert set(s.targets) == set(EXPECTED_TASKS[variant])
        prefix = "fundus_synth-" if variant == "pretrain" else f"fundus_synth-{variant}-"
        assert s.id.startswith(prefix) and s.patient_id == s.id
        assert ("-test" in s.id) == (s.split == "test")
    for g in ds.levels:  # texts and labels keep the pretraining vocabulary
        assert ds.multi_hot(g).sum(1).min() >= 1


def test_targets_agree_with_the_texts(sets):
    for s in sets["dr"].samples:
        dis = s.labels["disease"]
        grade = next((g for g, name in F.DR_GRADE_DISEASE.items() if name in dis), 0)
        assert s.targets["dr_grade"] == grade and s.targets["dme"] == int(F.DME in dis)
    for name, task, disease in (("glaucoma", "glaucoma", F.GLAUCOMA), ("amd", "amd", F.AMD)):
        for s in sets[name].samples:
            assert s.targets[task] == int(disease in s.labels["disease"])
    for s in sets["multidisease"].samples:
        dis = s.labels["disease"]
        assert s.targets["disease_multilabel"][0] == int(any(d in dis for d in F.DR_GRADE_DISEASE.values()))
        assert s.targets["disease_multilabel"][1:] == tuple(int(c in dis) for c in F.MULTILABEL_CLASSES[1:])


def test_no_shared_image_id_or_patient_with_the_pretraining_corpus(sets):
    seen_ids: set[str] = set()
    seen_patients: set[str] = set()
    seen_images: set[bytes] = set()
    for v, ds in sets.items():
        ids = {s.id for s in ds.samples}
        patients = {s.patient_id for s in ds.samples}
        images = {hashlib.sha256(s.image.tobytes()).digest() for s in ds.samples}
        assert len(ids) == len(images) == len(ds)
        assert not ids & seen_ids and not patients & seen_patients and not images & seen_images, v
        seen_ids |= ids
        seen_patients |= patients
        seen_images |= images
    # disjoint by construction: every variant draws from its own seed streams (7 is the benchmark's)
    streams = [s for v in F.VARIANTS.values() for s in v.streams]
    assert len(set(streams)) == len(streams) and 7 not in streams


def test_same_seed_different_variant_never_reuses_a_generator():
    """Image i of the pretraining pool and of a downstream pool differ for every seed pair tried."""
    for seed_a, seed_b in ((0, 0), (3, 0), (0, 10), (10, 1)):
        a = F.build(size=3, test_size=0, resolution=16, seed=seed_a, cache_dir=False)
        b = F.build(variant="glaucoma", size=3, test_size=0, resolution=16, seed=seed_b, cache_dir=False)
        assert all(x.texts != y.texts or not np.array_equal(x.image, y.image) for x in a.samples for y in b.samples)


def _stats(imgs: np.ndarray) -> dict[str, float]:
    x = imgs.astype(np.float64)
    vis = x.max(-1) > 20
    m = np.array([x[..., c][vis].mean() for c in range(3)])
    g = x[..., 1]
    inner = vis[:, 1:-1, 1:-1] & vis[:, :-2, 1:-1] & vis[:, 2:, 1:-1] & vis[:, 1:-1, :-2] & vis[:, 1:-1, 2:]
    lap = g[:, 1:-1, 1:-1] - 0.25 * (g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:])
    return {"field": vis.mean(), "red": m[0], "g/r": m[1] / m[0], "b/r": m[2] / m[0], "hf": np.abs(lap[inner]).mean()}


def _draw(variant: str, n: int = 120, **extra):
    o = F.check_options({"variant": variant, "resolution": 48, "cache_dir": False, **extra})
    return F.render(n, seed=1, stream=F.VARIANTS[variant].streams[1], **draw_options(o))


@pytest.fixture(scope="module")
def shift():
    return {v: _stats(_draw(v)[0]) for v in F.VARIANTS}


def test_dr_camera_shift(shift):
    """Wider field cut by the image edges, warmer (less blue), brighter, noisier."""
    p, d = shift["pretrain"], shift["dr"]
    assert d["field"] > p["field"] + 0.1
    assert d["b/r"] < 0.85 * p["b/r"] and d["red"] > p["red"] + 15
    assert d["hf"] > 1.15 * p["hf"]


def test_glaucoma_camera_shift(shift):
    """Smaller field, darker and redder; blurrier (compared without noise, which would mask it)."""
    p, g = shift["pretrain"], shift["glaucoma"]
    assert g["field"] < p["field"] - 0.1
    assert g["red"] < p["red"] - 15 and g["g/r"] < 0.85 * p["g/r"]
    sharp_p = _stats(_draw("pretrain", noise=0)[0])["hf"]
    sharp_g = _stats(_draw("glaucoma", noise=0)[0])["hf"]
    assert sharp_g < 0.85 * sharp_p


def test_amd_camera_shift(shift):
    """Cooler colour (more green and blue), smaller field, lower native resolution (less fine detail)."""
    p, a = shift["pretrain"], shift["amd"]
    assert a["g/r"] > 1.2 * p["g/r"] and a["b/r"] > 1.3 * p["b/r"]
    assert a["field"] < p["field"] - 0.05
    assert a["hf"] < 0.75 * p["hf"]


def test_multidisease_mixes_three_cameras():
    imgs, truths = _draw("multidisease", n=150)
    cams = np.array([t["camera"] for t in truths])
    assert set(cams) == {"topcon", "kowa", "topcon_lowres"}
    p = _stats(_draw("pretrain")[0])
    by_cam = {c: _stats(imgs[cams == c]) for c in set(cams)}
    assert by_cam["kowa"]["field"] > p["field"] + 0.1 and by_cam["kowa"]["b/r"] < 0.85 * p["b/r"]
    assert by_cam["topcon_lowres"]["hf"] < 0.8 * p["hf"]
    assert by_cam["topcon"]["b/r"] > 1.1 * p["b/r"]


def test_lesion_contrast_and_field_radius_follow_the_camera():
    _, tp = _draw("pretrain", n=80)
    _, td = _draw("dr", n=80)
    amp = {name: np.mean([les["amp"] for t in tr for les in t["lesions"] if les["kind"] == "microaneurysms"])
           for name, tr in (("pretrain", tp), ("dr", td))}
    assert amp["dr"] == pytest.approx(0.85 * amp["pretrain"], rel=0.08)  # 0.85 x contrast; means of U(0.7, 1.0)
    for variant, (lo, hi) in (("dr", (1.02, 1.10)), ("glaucoma", (0.76, 0.84)), ("amd", (0.82, 0.88))):
        rf = [t["field"][2] for t in _draw(variant, n=30)[1]]
        assert lo <= min(rf) and max(rf) <= hi
        for t in _draw(variant, n=30)[1]:  # every lesion lies inside its (smaller or larger) field
            cx, cy, r = t["field"]
            assert all(math.hypot(les["x"] - cx, les["y"] - cy) < r for les in t["lesions"])


@functools.lru_cache(maxsize=None)
def _prevalences(variant: str, n: int) -> dict[str, np.ndarray]:
    """Positive rate per class of each of the variant's tasks (labels do not depend on the resolution)."""
    o = F.check_options({"variant": variant, "resolution": 16, "cache_dir": False})
    _, truths = F.render(n, seed=7, stream=F.VARIANTS[variant].streams[0], **draw_options(o))
    out = {}
    for task, spec in F.VARIANTS[variant].task_specs.items():
        y = np.array([t["targets"][task] for t in truths])
        out[task] = y.mean(0) if spec.kind == "multilabel" else np.bincount(y, minlength=len(spec.classes)) / n
    return out


@pytest.mark.parametrize("variant", DOWNSTREAM)
def test_default_test_split_detects_a_two_point_auc_difference(variant):
    """The documented power claim: with the default test size and the variant's prevalences, a 2-point
    (macro) AUC difference between two encoders is detectable (AUC 0.85, rho 0.6, alpha 0.05, power 0.8)."""
    o = F.check_options({"variant": variant})
    assert (o["size"], o["val_fraction"], o["test_size"]) == (2500, 0.2, 5000)
    for task, p in _prevalences(variant, 400).items():
        if len(p) == 2 and F.VARIANTS[variant].task_specs[task].kind == "multiclass":
            p = p[1:]  # binary: one AUC
        counts = [(round(pk * o["test_size"]), round((1 - pk) * o["test_size"])) for pk in p]
        assert min(c[0] for c in counts) >= 100  # every class has positives enough for an AUC
        assert detectable_auc_difference(counts) <= 0.02, (task, p)


def test_prevalences_are_the_variants():
    pre = _prevalences("pretrain", 400)
    assert _prevalences("dr", 400)["dr_grade"][0] < pre["dr_grade"][0] - 0.1  # DR-enriched: fewer grade-0 eyes
    assert _prevalences("glaucoma", 400)["glaucoma"][1] > pre["glaucoma"][1] + 0.07
    assert _prevalences("multidisease", 400)["disease_multilabel"][4] > pre["disease_multilabel"][4] + 0.05  # myopia


def test_variant_options_and_cache_key(tmp_path):
    assert F.cache_path(cache_dir=tmp_path) == F.cache_path(cache_dir=tmp_path, variant="pretrain")
    keys = {F.cache_path(cache_dir=tmp_path, variant=v) for v in F.VARIANTS}
    assert len(keys) == len(F.VARIANTS)
    o = F.check_options({"variant": "glaucoma", "prevalence": {"glaucoma": 0.5}, "test_size": 10})
    assert o["prevalence"] == {**F.VARIANTS["glaucoma"].prevalence, "glaucoma": 0.5} and o["test_size"] == 10
    with pytest.raises(DataConfigError, match=r"data\.variant='glaucom'.*did you mean glaucoma"):
        F.check_options({"variant": "glaucom"})
    ds = build_dataset({"format": "fundus_synth", "variant": "amd", "size": 4, "test_size": 2, "resolution": 16,
                        "cache_dir": False})
    assert set(ds.task_specs) == {"amd"} and ds[0].id.startswith("fundus_synth-amd-")
