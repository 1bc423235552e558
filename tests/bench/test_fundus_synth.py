"""fundus_synth: determinism, rule-consistent labels, text formats, splits, caching, option validation."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from bench.data import fundus_synth as F
from bench.data.fundus_synth import dataset as fundus_dataset
from bench.data.fundus_synth.cli import main as fundus_cli
from bench.data.fundus_synth.text import NORMAL_SENTENCES
from bench.data.dataset import MultiGranularDataset
from bench.errors import DataConfigError

R = 32  # small images keep the tests fast; the rules do not depend on the resolution

# a regular expression per finding that matches every template of that finding and no other sentence
FINDING_RE = {
    "microaneurysms": r"microaneurysm",
    "dot-blot haemorrhages": r"(dot-blot|intraretinal|blot) haemorrhage",
    "flame haemorrhages": r"flame|splinter",
    "hard exudates": r"hard exudate|lipid deposit",
    "cotton-wool spots": r"cotton-wool|fluffy white",
    "neovascularisation": r"neovascularisation|new vessels",
    "preretinal haemorrhage": r"preretinal|fluid level",
    "hard drusen": r"hard drus",
    "soft drusen": r"soft drusen",
    "pigment changes": r"pigment",
    "geographic atrophy": r"geographic atrophy|atrophic area",
    "enlarged cup": r"cup-to-disc|CDR",
    "tessellation": r"tessellat|tigroid",
    "peripapillary atrophy": r"peripapillary atroph",
    "arteriolar narrowing": r"arteriolar narrowing|attenuated arterioles|thin arteries",
}


@pytest.fixture(scope="module")
def drawn():
    """300 images with their full ground truth (lesion instances)."""
    return F.render(300, seed=11, resolution=R)


def _dist(les, xy):
    return math.hypot(les["x"] - xy[0], les["y"] - xy[1])


# ---------------------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------------------
def test_same_seed_same_images_and_texts():
    a_img, a_tr = F.render(6, seed=3, resolution=R)
    b_img, b_tr = F.render(6, seed=3, resolution=R)
    assert np.array_equal(a_img, b_img)
    assert [t["texts"] for t in a_tr] == [t["texts"] for t in b_tr]
    assert [t["lesions"] for t in a_tr] == [t["lesions"] for t in b_tr]


def test_different_seed_or_stream_differs():
    a_img, a_tr = F.render(6, seed=3, resolution=R)
    b_img, b_tr = F.render(6, seed=4, resolution=R)
    c_img, _ = F.render(6, seed=3, stream=1, resolution=R)
    for other in (b_img, c_img):
        assert all(not np.array_equal(a_img[i], other[i]) for i in range(6))
    assert [t["texts"]["description"] for t in a_tr] != [t["texts"]["description"] for t in b_tr]


def test_render_start_offset_matches():
    """Image i of a stream depends only on (seed, stream, i)."""
    full, _ = F.render(5, seed=2, resolution=R)
    part, _ = F.render(2, seed=2, start=3, resolution=R)
    assert np.array_equal(full[3:], part)


def test_image_format_and_anatomy(drawn):
    imgs, truths = drawn
    assert imgs.shape == (300, R, R, 3) and imgs.dtype == np.uint8
    # corners are outside the circular field: black
    corners = imgs[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.max() < 40
    for img, t in zip(imgs[:50], truths[:50]):
        # the disc is on the right for a right eye, on the left for a left eye
        assert (t["disc"][0] > 0) == (t["eye"] == "OD")
        # and it is brighter than the field on average
        j = int((t["disc"][0] + 1) / 2 * R)
        i = int((t["disc"][1] + 1) / 2 * R)
        field = img.sum(2)[img.sum(2) > 30]
        assert img[i, j].sum() > field.mean()


# ---------------------------------------------------------------------------------------------------------
# labels follow the drawn lesions
# ---------------------------------------------------------------------------------------------------------
def _expected_grade(t):
    kinds = [les["kind"] for les in t["lesions"]]
    if "neovascularisation" in kinds or "preretinal haemorrhage" in kinds:
        return 4
    if {les["quadrant"] for les in t["lesions"] if les["kind"] == "dot-blot haemorrhages"} == {0, 1, 2, 3}:
        return 3
    if "dot-blot haemorrhages" in kinds or "hard exudates" in kinds:
        return 2
    return 1 if "microaneurysms" in kinds else 0


def test_disease_labels_follow_the_rules(drawn):
    _, truths = drawn
    for t in truths:
        kinds = {les["kind"] for les in t["lesions"]}
        dis = t["diseases"]
        grade = _expected_grade(t)
        assert t["dr_grade"] == grade
        dr_names = [d for d in dis if d in F.DR_GRADE_DISEASE.values()]
        assert dr_names == ([F.DR_GRADE_DISEASE[grade]] if grade else [])  # exactly one grade when DR
        dme = any(les["kind"] == "hard exudates" and _dist(les, t["fovea"]) <= t["dd"] for les in t["lesions"])
        assert (F.DME in dis) == dme
        if F.DME in dis:
            assert grade >= 2  # DME only with (moderate or worse) DR
        assert (F.GLAUCOMA in dis) == (t["cdr"] >= 0.6) == ("enlarged cup" in kinds)
        if t["cdr"] < 0.6:
            assert t["cdr"] <= 0.55  # a margin between healthy and glaucomatous cups
        assert (F.AMD in dis) == bool(kinds & {"soft drusen", "pigment changes", "geographic atrophy"})
        assert (F.MYOPIA in dis) == ({"tessellation", "peripapillary atrophy"} <= kinds)
        hyper = bool(kinds & {"flame haemorrhages", "cotton-wool spots"})
        assert (F.HYPERTENSIVE in dis) == hyper == ("arteriolar narrowing" in kinds)
        assert dis == [d for d in F.DISEASES if d in dis]  # canonical order, no duplicates


def test_lesions_are_placed_by_rule(drawn):
    _, truths = drawn
    n_checked = 0
    for t in truths:
        fov, dd = t["fovea"], t["dd"]
        cx, cy, rf = t["field"]
        dme = F.DME in t["diseases"]
        for les in t["lesions"]:
            k = les["kind"]
            if k == "microaneurysms":
                assert _dist(les, fov) < 2.0 * dd
            elif k == "hard exudates":
                assert (_dist(les, fov) <= dd) if dme else (_dist(les, fov) >= 1.5 * dd)
            elif k in ("soft drusen", "hard drusen", "pigment changes"):
                assert _dist(les, fov) < 1.5 * dd
            elif k == "preretinal haemorrhage":
                assert les["y"] - cy > 0.35  # inferior field
            elif k == "dot-blot haemorrhages":
                assert math.hypot(les["x"] - cx, les["y"] - cy) < rf
                assert _dist(les, t["disc"]) > 1.5 * t["disc"][2]  # off the disc
            n_checked += 1
        if t["dr_grade"] == 3:
            qs = [les["quadrant"] for les in t["lesions"] if les["kind"] == "dot-blot haemorrhages"]
            assert min(np.bincount(qs, minlength=4)) >= 2
        if t["dr_grade"] == 2:
            qs = {les["quadrant"] for les in t["lesions"] if les["kind"] == "dot-blot haemorrhages"}
            assert len(qs) <= 2
    assert n_checked > 300


def test_targets_and_labels_match_diseases(drawn):
    _, truths = drawn
    for t in truths:
        dis = t["diseases"]
        ml = t["targets"]["disease_multilabel"]
        assert len(ml) == len(F.MULTILABEL_CLASSES)
        assert ml[0] == int(t["dr_grade"] > 0)
        assert ml[1:] == tuple(int(c in dis) for c in F.MULTILABEL_CLASSES[1:])
        assert t["targets"]["dr_grade"] == t["dr_grade"]
        assert t["targets"]["glaucoma"] == int(F.GLAUCOMA in dis)
        assert t["labels"]["disease"] == (tuple(dis) if dis else ("healthy",))
        kinds = [k for k in F.FINDINGS if k in {les["kind"] for les in t["lesions"]}]
        assert t["labels"]["description"] == (tuple(kinds) if kinds else (F.NO_FINDINGS,))
        assert t["findings"] == {k: sum(les["kind"] == k for les in t["lesions"]) for k in kinds}


def test_lesions_change_the_pixels_where_they_are():
    """Same seed, lesion contrast 1 vs ~0: the haemorrhage centres are darker (green) with contrast."""
    darker = seen = 0
    for i in range(80):
        rng_a = np.random.default_rng([5, 0, i])
        rng_b = np.random.default_rng([5, 0, i])
        img_a, ta = F.draw_sample(rng_a, 64, noise=0.0)
        img_b, tb = F.draw_sample(rng_b, 64, noise=0.0, lesion_contrast=0.05)
        assert [les["kind"] for les in ta["lesions"]] == [les["kind"] for les in tb["lesions"]]
        for les in ta["lesions"]:
            if les["kind"] == "dot-blot haemorrhages":
                j = int((les["x"] + 1) / 2 * 64)
                k = int((les["y"] + 1) / 2 * 64)
                darker += int(img_a[k, j, 1]) < int(img_b[k, j, 1])
                seen += 1
    # (a pale lesion drawn on top of a haemorrhage can hide it, hence not 100 %)
    assert seen >= 5 and darker >= 0.9 * seen


# ---------------------------------------------------------------------------------------------------------
# texts
# ---------------------------------------------------------------------------------------------------------
def test_text_formats(drawn):
    _, truths = drawn
    for t in truths:
        tx = t["texts"]
        normal = not t["diseases"]
        assert tx["category"] == ("Normal" if normal else "Abnormal")
        assert t["labels"]["category"] == (tx["category"],)
        if normal:
            assert tx["disease"] == "Normal, healthy"
        else:
            assert tx["disease"] == "Abnormal, " + ", ".join(t["diseases"])
        d = tx["description"]
        assert d and d[0].isupper() and d.endswith(".")
        if normal:
            assert any(d.startswith(s) for s in NORMAL_SENTENCES)
    example = [t for t in truths if t["texts"]["disease"].startswith("Abnormal, moderate")]
    assert example and all("non-proliferative diabetic retinopathy" in t["texts"]["disease"] for t in example)


def test_description_mentions_exactly_the_findings_present(drawn):
    _, truths = drawn
    for t in truths:
        d = t["texts"]["description"]
        kinds = {les["kind"] for les in t["lesions"]}
        for k, pat in FINDING_RE.items():
            assert bool(re.search(pat, d, flags=re.I)) == (k in kinds), (k, d)
        if t["dr_grade"] == 3:
            assert re.search(r"all four quadrants|every quadrant", d)
        if "enlarged cup" in kinds:
            assert f"{t['cdr']:.1f}" in d


def test_descriptions_vary_for_identical_disease_sets(drawn):
    _, truths = drawn
    groups: dict[str, set[str]] = {}
    for t in truths:
        groups.setdefault(t["texts"]["disease"], set()).add(t["texts"]["description"])
    assert len(groups["Normal, healthy"]) >= 4
    assert sum(len(v) > 1 for v in groups.values()) >= 5


# ---------------------------------------------------------------------------------------------------------
# dataset: build, splits, levels, caching, options
# ---------------------------------------------------------------------------------------------------------
def test_build_splits_and_api(tmp_path):
    ds = F.build(size=40, test_size=12, val_fraction=0.25, resolution=R, cache_dir=False)
    assert isinstance(ds, MultiGranularDataset)
    assert ds.levels == F.LEVELS
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [30, 10, 12]
    ids = [s.id for s in ds.samples]
    assert len(set(ids)) == len(ids)
    assert all("-test" in s.id for s in ds.split("test").samples)
    assert not any("-test" in s.id for s in ds.samples if s.split != "test")
    # disjoint by image seed: no image appears in two splits
    dev = {ds.image(i).tobytes() for i, s in enumerate(ds.samples) if s.split != "test"}
    assert not dev & {ds.image(i).tobytes() for i, s in enumerate(ds.samples) if s.split == "test"}
    # test split = stream 1 of the same seed; dev = stream 0
    imgs, _ = F.render(2, seed=0, stream=1, resolution=R)
    assert np.array_equal(ds.split("test").image(0), imgs[0])
    # the derived arrays work: every label is in the declared vocabulary
    for g in ds.levels:
        mh = ds.multi_hot(g)
        assert mh.shape == (52, len(ds.vocab[g])) and mh.sum(1).min() >= 1
        assert (ds.text_ids(g) >= 0).all()
    assert ds.task_targets("disease_multilabel").shape == (52, 6)
    assert set(ds.task_targets("dr_grade")) <= set(range(5))
    assert set(ds.task_targets("glaucoma")) <= {0, 1}
    assert ds.task_specs["dr_grade"].classes == ("none", "mild", "moderate", "severe", "PDR")
    assert ds.task_specs["glaucoma"].classes == ("no glaucoma", "glaucoma")
    assert ds.task_specs["disease_multilabel"].kind == "multilabel"
    s = ds[0]
    assert s.image.shape == (R, R, 3) and s.image.dtype == np.uint8
    assert set(s.texts) == set(F.LEVELS) and s.split in ("train", "val")


def test_levels_option():
    ds = F.build(size=6, test_size=2, resolution=R, cache_dir=False, levels=["description", "category"])
    assert ds.levels == ("description", "category")
    assert set(ds[0].texts) == {"description", "category"}
    assert ds.vocab["category"] == ("Normal", "Abnormal")


def test_same_options_same_dataset_and_seed_changes_it():
    a = F.build(size=8, test_size=3, resolution=R, cache_dir=False)
    b = F.build(size=8, test_size=3, resolution=R, cache_dir=False)
    c = F.build(size=8, test_size=3, resolution=R, cache_dir=False, seed=1)
    assert all(np.array_equal(x.image, y.image) and x.texts == y.texts for x, y in zip(a.samples, b.samples))
    assert not np.array_equal(a[0].image, c[0].image)


def _same(a, b):
    assert len(a) == len(b) and a.levels == b.levels and a.vocab == b.vocab and a.task_specs == b.task_specs
    for x, y in zip(a.samples, b.samples):
        assert np.array_equal(x.image, y.image)
        fields = ("id", "texts", "labels", "targets", "split", "patient_id")
        assert [getattr(x, f) for f in fields] == [getattr(y, f) for f in fields]
        assert type(x.targets["disease_multilabel"]) is type(y.targets["disease_multilabel"]) is tuple


def test_cache_hit_is_identical_and_changed_option_misses(tmp_path, monkeypatch):
    opts = dict(size=10, test_size=4, resolution=R, cache_dir=tmp_path)
    fresh, truth = F.build_with_truth(**opts)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and files[0] == F.cache_path(**opts)
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, no leftovers

    def boom(*a, **k):
        raise AssertionError("cache miss: regenerated")

    monkeypatch.setattr(fundus_dataset, "_generate", boom)
    cached, truth2 = F.build_with_truth(**opts)  # must not regenerate
    _same(fresh, cached)
    assert truth == truth2
    # levels/progress do not change the content: same file
    assert F.cache_path(**opts, levels=["disease"]) == files[0]
    # any content option changes the key -> a miss
    for change in ({"seed": 1}, {"noise": 0.5}, {"prevalence": {"myopia": 0.1}}, {"resolution": 16}, {"test_size": 5}):
        assert F.cache_path(**{**opts, **change}) != files[0]
        with pytest.raises(AssertionError, match="cache miss"):
            F.build(**{**opts, **change})


def test_cache_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path / "root"))
    p = F.cache_path(size=4, test_size=0, resolution=R)
    assert p.parent == tmp_path / "root" / "fundus_synth"
    F.build(size=4, test_size=0, resolution=R)
    assert p.exists()
    assert F.cache_path(size=4, test_size=0, resolution=R, cache_dir=False) is None
    F.build(size=4, test_size=0, resolution=R, cache_dir=False, seed=9)
    assert len(list((tmp_path / "root" / "fundus_synth").iterdir())) == 1
    monkeypatch.delenv("CONTRASTIVE_BENCH_CACHE")
    assert F.default_cache_dir() == Path.home() / ".cache" / "contrastive-bench" / "fundus_synth"


def test_corrupt_cache_is_regenerated(tmp_path):
    opts = dict(size=4, test_size=1, resolution=R, cache_dir=tmp_path)
    a = F.build(**opts)
    F.cache_path(**opts).write_bytes(b"not an npz")
    b = F.build(**opts)
    _same(a, b)


@pytest.mark.parametrize(
    "options, name",
    [
        ({"sizes": 10}, "sizes"),
        ({"resolution": 8}, "resolution"),
        ({"resolution": 64.5}, "resolution"),  # 64.0 is a whole number: accepted (bench.options' number rule)
        ({"size": -1}, "size"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"test_size": "many"}, "test_size"),
        ({"prevalence": {"cataract": 0.1}}, "prevalence"),
        ({"prevalence": {"myopia": 1.5}}, "prevalence"),
        ({"prevalence": {"dme": 0.5}}, "prevalence"),
        ({"prevalence": {"mild_npdr": 0.6, "moderate_npdr": 0.6}}, "prevalence"),
        ({"levels": ["disease", "finding"]}, "levels"),
        ({"levels": ["disease", "disease"]}, "levels"),  # "disease" alone is a one-element list (the list rule)
        ({"noise": -1}, "noise"),
        ({"lesion_size": 0}, "lesion_size"),
        ({"supersample": 5}, "supersample"),
        ({"cache_dir": 3}, "cache_dir"),
        ({"progress": "yes"}, "progress"),
    ],
)
def test_bad_options_raise_naming_the_option(options, name):
    with pytest.raises(DataConfigError) as e:
        F.build(**{"cache_dir": False, **options})
    msg = str(e.value)
    assert f"data.{name}" in msg and e.value.key.startswith(f"data.{name}")
    assert "allowed: " in msg or " must be " in msg  # what is allowed: a list, or a bound / type


def test_prevalence_option_moves_the_marginals():
    _, tr = F.render(200, seed=1, resolution=16, prevalence={"myopia": 0.5})
    frac = np.mean([F.MYOPIA in t["diseases"] for t in tr])
    assert 0.38 < frac < 0.62
    zero = {k: 0.0 for k in F.DEFAULT_PREVALENCE}
    _, tr = F.render(50, seed=1, resolution=16, prevalence=zero)
    assert all(t["texts"]["category"] == "Normal" and t["texts"]["disease"] == "Normal, healthy" for t in tr)


def test_supersample_and_difficulty_options_render():
    img1, t1 = F.render(2, seed=4, resolution=R, supersample=2)
    img2, t2 = F.render(2, seed=4, resolution=R)
    assert img1.shape == img2.shape and not np.array_equal(img1, img2)
    assert [t["diseases"] for t in t1] == [t["diseases"] for t in t2]  # labels do not depend on drawing options
    F.render(2, seed=4, resolution=R, noise=0, blur=0, illumination=0, artifacts=0, lesion_size=2.0,
             lesion_contrast=2.0)


def test_benchmark_cli(capsys):
    assert fundus_cli(["--benchmark", "-n", "10", "--resolution", "32"]) == 0
    assert re.search(r"\d+ images/s at 32 px", capsys.readouterr().out)


@pytest.mark.slow
def test_default_size_has_positives_for_every_class_in_val_and_test():
    ds = F.build(cache_dir=False, progress=False)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [2000, 500, 500]
    for s in ("val", "test"):
        y = ds.split(s).task_targets("disease_multilabel")
        assert y.sum(0).min() >= 5
        assert np.bincount(ds.split(s).task_targets("dr_grade"), minlength=5).min() >= 5
    normal = np.mean([x.texts["category"] == "Normal" for x in ds.samples])
    assert 0.3 <= normal <= 0.45
