"""Feature extraction and the feature cache: what hits, what misses, and that a hit computes nothing."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import torch

from tasks import FeatureCache, build, extract_image_features
from tasks.fingerprint import dataset_fingerprint, model_fingerprint


def mean_colours(ds):
    return np.stack([ds.image(i).reshape(-1, 3).mean(0) for i in range(len(ds))]).astype(np.float32)


def test_extract_matches_encode_image_in_batches(colour_model, colour_splits):
    ds = colour_splits("multiclass")["train"]
    model = colour_model()
    feats = extract_image_features(model, ds, batch_size=32)
    assert feats.dtype == np.float32 and feats.shape == (len(ds), 3)
    np.testing.assert_allclose(feats, mean_colours(ds), rtol=1e-5)
    assert model.image_calls == int(np.ceil(len(ds) / 32))


def test_extraction_restores_modes_and_leaves_no_gradients(colour_model, colour_splits):
    ds = colour_splits("multiclass")["test"]
    model = colour_model()
    model.train()
    model.visual.eval()  # mixed modes are restored per submodule
    model.visual.proj.weight.requires_grad_(False)
    extract_image_features(model, ds, 16)
    assert model.training and not model.visual.training and model.visual.proj.training is False
    assert model.visual.proj.weight.requires_grad is False and model.visual.proj.bias.requires_grad is True
    assert all(p.grad is None for p in model.parameters())


def test_cache_miss_then_hit_computes_nothing(tmp_path, colour_model, colour_splits):
    ds = colour_splits("multiclass")["train"]
    model = colour_model()
    cache = FeatureCache(tmp_path)
    a = extract_image_features(model, ds, 32, cache)
    assert cache.stats() == {"hits": 0, "misses": 1, "writes": 1}
    calls = model.images_encoded
    b = extract_image_features(model, ds, 32, cache)
    assert model.images_encoded == calls  # nothing recomputed
    assert cache.stats() == {"hits": 1, "misses": 1, "writes": 1}
    np.testing.assert_array_equal(a, b)
    # a fresh cache object on the same folder (a new process) hits too
    other = FeatureCache(tmp_path)
    extract_image_features(colour_model(), ds, 32, other)
    assert other.hits == 1
    # atomic writes leave no temporary files; the key components sit next to the array
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.endswith(".tmp")]
    assert any(n.endswith(".npy") for n in names) and any(n.endswith(".json") for n in names)


def _count_miss(cache, model, ds, **kw):
    before = cache.misses
    extract_image_features(model, ds, 32, cache, **kw)
    return cache.misses - before


def test_cache_misses_on_every_change_that_matters(tmp_path, colour_model, colour_splits):
    splits = colour_splits("multiclass")
    ds = splits["train"]
    cache = FeatureCache(tmp_path)
    model = colour_model()
    assert _count_miss(cache, model, ds) == 1
    assert _count_miss(cache, model, ds) == 0
    # a parameter changes
    with torch.no_grad():
        model.visual.proj.bias[0] += 1e-3
    assert _count_miss(cache, model, ds) == 1
    assert _count_miss(cache, model, ds) == 0
    # the split name changes (same samples)
    assert _count_miss(cache, model, ds, split="val") == 1
    # one pixel of one image changes
    samples = list(ds.samples)
    image = samples[3].image.copy()
    image[0, 0, 0] ^= 1
    samples[3] = dataclasses.replace(samples[3], image=image)
    ds = type(ds)(samples, ds.levels, ds.vocab, ds.task_specs, name=ds.name)
    assert _count_miss(cache, model, ds) == 1
    # other samples
    assert _count_miss(cache, model, splits["test"]) == 1
    # the model config changes (normalisation flag), weights unchanged
    model.normalize_embeddings = True
    assert _count_miss(cache, model, ds) == 1
    # preprocessing statistics change
    model.register_buffer("pixel_mean", torch.tensor([0.5, 0.5, 0.5]), persistent=False)
    assert _count_miss(cache, model, ds) == 1
    assert _count_miss(cache, model, ds) == 0


def test_file_images_key_on_path_size_and_mtime(tmp_path, colour_model, sample_cls, make_image):
    Sample, TaskSpec, MultiGranularDataset = sample_cls
    files = []
    for i in range(4):
        f = tmp_path / f"img{i}.npz"
        np.savez(f, image=make_image([40 * i, 100, 200]))
        files.append(f)
    ds = MultiGranularDataset([Sample(id=str(i), image=f, texts={"a": "x"}) for i, f in enumerate(files)], ["a"])
    fp = dataset_fingerprint(ds)
    assert dataset_fingerprint(ds) == fp
    st = os.stat(files[2])
    os.utime(files[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert dataset_fingerprint(ds) != fp
    cache = FeatureCache(tmp_path / "cache")
    model = colour_model()
    assert _count_miss(cache, model, ds) == 1 and _count_miss(cache, model, ds) == 0


def test_unreadable_cache_file_is_recomputed(tmp_path, colour_model, colour_splits):
    ds = colour_splits("multiclass")["val"]
    cache = FeatureCache(tmp_path)
    model = colour_model()
    ref = extract_image_features(model, ds, 32, cache)
    for p in tmp_path.glob("*.npy"):
        p.write_bytes(b"garbage")
    again = extract_image_features(model, ds, 32, cache)
    np.testing.assert_array_equal(ref, again)
    assert cache.misses == 2 and cache.writes == 2


def test_model_fingerprint_is_content_based(colour_model):
    a, b = colour_model(), colour_model()
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b.visual.proj.weight[1, 2] = 0.5
    assert model_fingerprint(a) != model_fingerprint(b)


def test_linear_probe_second_run_reads_features_from_cache(tmp_path, colour_model, colour_splits):
    splits = colour_splits("multiclass")
    cache = FeatureCache(tmp_path)
    model = colour_model()
    task = build("linear_probe", target="colour", c_grid=[0.1, 1.0])
    t0 = time.perf_counter()
    first = task.run(model, splits, cache=cache)
    assert first["features_cached"] == 0 and model.images_encoded == sum(len(d) for d in splits.values())
    encoded = model.images_encoded
    second = task.run(model, splits, cache=cache)
    assert second["features_cached"] == 1 and model.images_encoded == encoded
    assert cache.hits == 3 and cache.misses == 3
    assert {k: v for k, v in first.items() if k != "features_cached"} == {
        k: v for k, v in second.items() if k != "features_cached"
    }
    # a label fraction reuses the full-split features too
    third = build("linear_probe", target="colour", label_fraction=0.5, c_grid=[1.0]).run(model, splits, cache=cache)
    assert third["features_cached"] == 1 and model.images_encoded == encoded
    assert time.perf_counter() - t0 < 30
