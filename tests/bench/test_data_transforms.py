"""Augmentation presets: the documented operations and statistics, draws that depend on (seed, epoch,
index) only, and the preset's normalisation reaching the model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRESETS,
    PRETRAIN_PRESETS,
    crop_box,
    sample_generator,
    sample_seed,
)
from bench.schema import AUGMENT_PRESETS


def image(h=48, w=40):
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_statistics_of_the_presets():
    import open_clip

    oc = PRESETS["open_clip"]
    assert oc.mean == tuple(open_clip.OPENAI_DATASET_MEAN) and oc.std == tuple(open_clip.OPENAI_DATASET_STD)
    assert oc.crop_scale == (0.9, 1.0) and not (oc.hflip or any(oc.jitter))
    m = PRESETS["mgll"]  # paper.md 2.5: HFlip, ColorJitter(0.1, 0.1, 0.1), RRC (0.9, 1) bicubic, ImageNet stats
    assert (m.hflip, m.vflip, m.rotate, m.jitter, m.crop_scale) == (0.5, 0.0, 0.0, (0.1, 0.1, 0.1), (0.9, 1.0))
    assert m.mean == IMAGENET_MEAN == (0.485, 0.456, 0.406) and m.std == IMAGENET_STD == (0.229, 0.224, 0.225)
    f = PRESETS["mgll_finetune"]  # 2.6: H+V flips, rotation 30, jitter 0.6, RRC (0.9, 1), mean = std = 0.5
    assert (f.hflip, f.vflip, f.rotate, f.jitter, f.crop_scale) == (0.5, 0.5, 30.0, (0.6, 0.6, 0.6), (0.9, 1.0))
    assert f.mean == f.std == (0.5, 0.5, 0.5)
    assert PRESETS["none"].mean is None and PRESETS["flip"].mean is None  # the model's image.mean / std
    assert set(PRETRAIN_PRESETS) == set(AUGMENT_PRESETS)


def test_mgll_finetune_eval_is_a_bicubic_resize():
    # paper.md 2.6: val/test are T.Resize(224, bicubic) of PIL images, with mean = std = 0.5
    from PIL import Image

    x = image(40, 40)
    e = PRESETS["mgll_finetune_eval"]
    assert e.mean == e.std == (0.5, 0.5, 0.5) and not e.random
    got = e(x, 24).numpy().astype(int)
    pil = np.asarray(Image.fromarray(x).resize((24, 24), Image.BICUBIC)).astype(int)
    assert np.abs(got - pil).max() <= 1  # PIL's antialiased bicubic, up to uint8 rounding
    assert np.abs(PRESETS["none"](x, 24).numpy().astype(int) - pil).max() > 4  # the bilinear resize differs


def test_none_resizes_and_flip_is_identity_or_mirror():
    x = image()
    assert torch.equal(PRESETS["none"](image(32, 32), 32), torch.from_numpy(image(32, 32)))
    assert PRESETS["none"](x, 16).shape == (16, 16, 3)
    sq = image(24, 24)
    seen = set()
    for i in range(40):
        y = PRESETS["flip"](sq, 24, sample_generator(0, 0, i)).numpy()
        assert np.array_equal(y, sq) or np.array_equal(y, sq[:, ::-1])
        seen.add(np.array_equal(y, sq))
    assert seen == {True, False}


def test_crop_box_area_and_ratio():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        i, j, h, w = crop_box(100, 80, (0.9, 1.0), (3 / 4, 4 / 3), g)
        assert 0 <= i <= 100 - h and 0 <= j <= 80 - w
        # the area after rounding the sides, and the aspect ratio, within the documented ranges (+ rounding)
        assert 0.9 * 8000 * 0.97 <= h * w <= 8000 and 3 / 4 - 0.03 <= w / h <= 4 / 3 + 0.03
    assert crop_box(10, 100, (0.9, 1.0), (3 / 4, 4 / 3), g) == (0, 43, 10, 13)  # fallback: central crop at max ratio


def test_draws_are_a_function_of_seed_epoch_index():
    x = image()
    a = PRESETS["mgll_finetune"](x, 32, sample_generator(3, 1, 7))
    assert torch.equal(a, PRESETS["mgll_finetune"](x, 32, sample_generator(3, 1, 7)))
    others = [PRESETS["mgll_finetune"](x, 32, sample_generator(*k)) for k in ((3, 2, 7), (3, 1, 8), (4, 1, 7))]
    assert all(not torch.equal(a, o) for o in others)
    assert len({sample_seed(s, e, i) for s in range(5) for e in range(5) for i in range(50)}) == 1250
    assert all(0 <= sample_seed(s, 0, 0) < 2**63 for s in (-1, 0, 2**40))


def test_colour_jitter_range():
    # a grey image: saturation does nothing, brightness and contrast scale the level within [0.9, 1.1] x
    grey = np.full((32, 32, 3), 100, np.uint8)
    p = PRESETS["mgll"]
    for i in range(30):
        y = p(grey, 32, sample_generator(0, 0, i)).float()
        assert y.std() == 0 and 0.9 * 0.9 * 100 - 1 <= float(y.mean()) <= 1.1 * 1.1 * 100 + 1


@pytest.mark.parametrize("preset,mean", [("mgll", IMAGENET_MEAN), ("flip", (0.48145466, 0.4578275, 0.40821073))])
def test_preset_normalisation_becomes_the_model_default(preset, mean):
    from bench.models import build_model

    cfg = OmegaConf.create({"image": {"name": "vit_tiny_custom", "width": 16, "depth": 1, "heads": 2},
                            "text": {"name": "tiny_transformer", "width": 16, "layers": 1, "heads": 2},
                            "model": {"embed_dim": 8}, "data": {"resolution": 16}, "train": {"augment": preset}})
    model = build_model(cfg)
    assert model.pixel_mean.flatten().tolist() == pytest.approx(list(mean))
    cfg.image.mean = "half"  # an explicit image.mean wins
    assert build_model(cfg).pixel_mean.flatten().tolist() == pytest.approx([0.5] * 3)
    white = torch.full((1, 16, 16, 3), 255, dtype=torch.uint8)
    want = [(1 - m) / s for m, s in zip(mean, IMAGENET_STD if preset == "mgll" else model.pixel_std.flatten().tolist())]
    assert model.preprocess(white)[0, :, 0, 0].tolist() == pytest.approx(want, rel=1e-5)
    assert not math.isnan(want[0])
