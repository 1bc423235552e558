"""Augmentation presets (``train.augment``, and the fine-tuning task's ``augment``), applied per sample in
the loader's workers to a uint8 ``H x W x 3`` image; the result is uint8 ``R x R x 3`` at the tower's input
size ``R``. Normalisation happens on the device (``TwoTower.preprocess``) with the model's ``image.mean`` /
``image.std``; a preset with its own statistics makes them the model's default (``build_model``), so that
evaluation normalises exactly as training did.

Presets (operations in this order, each only when the preset has it):

===============  =========================================================================================
``none``         resize to R x R (bilinear, antialiased) when the image is another size
``flip``         ``none`` + horizontal flip with probability 1/2 (the harness's default)
``open_clip``    open_clip's training transform (``open_clip.image_transform(is_train=True)``, default
                 augmentation config): RandomResizedCrop to R, scale (0.9, 1.0), ratio (3/4, 4/3), bicubic;
                 normalisation OPENAI_DATASET_MEAN / STD (the harness's default ``clip`` statistics)
``mgll``         the released MGLL pretraining transform (paper.md section 2.5): horizontal flip p = 1/2,
                 ColorJitter(brightness 0.1, contrast 0.1, saturation 0.1), RandomResizedCrop scale
                 (0.9, 1.0), ratio (3/4, 4/3), bicubic; ImageNet mean / std
``mgll_finetune``  the released MGLL downstream transform (section 2.6): horizontal and vertical flips
                 p = 1/2, RandomRotation 30 degrees (nearest, fill 0), ColorJitter(0.6, 0.6, 0.6),
                 RandomResizedCrop scale (0.9, 1.0) bicubic; mean = std = 0.5 (a fine-tuning preset)
``mgll_finetune_eval``  its val / test transform: resize to R x R bicubic (antialiased); mean = std = 0.5
===============  =========================================================================================

Colour jitter follows torchvision's ``ColorJitter``: each factor uniform in ``[max(0, 1 - j), 1 + j]``,
applied in a random order. Every random number is drawn from a ``torch.Generator`` seeded by
:func:`sample_seed` of (seed, epoch, sample index) only, so an image's augmentation does not depend on
the number of workers, on the rank or on where a run was resumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip.constants.OPENAI_DATASET_MEAN
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)  # open_clip.constants.OPENAI_DATASET_STD

_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class Preset:
    name: str
    hflip: float = 0.0
    vflip: float = 0.0
    rotate: float = 0.0  # degrees: angle uniform in [-rotate, rotate]
    jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)  # brightness, contrast, saturation
    crop_scale: tuple[float, float] | None = None  # RandomResizedCrop area fraction (None: resize only)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    mean: tuple[float, float, float] | None = None  # None: the model's image.mean
    std: tuple[float, float, float] | None = None
    resize: str = "bilinear"  # the interpolation of a plain resize (no crop): bilinear or bicubic

    @property
    def random(self) -> bool:
        return bool(self.hflip or self.vflip or self.rotate or any(self.jitter) or self.crop_scale)

    def __call__(self, image: np.ndarray, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 ``H x W x 3`` -> uint8 ``size x size x 3`` tensor (``generator`` required for a random preset)."""
        if not image.flags.writeable:  # PIL's arrays are read-only views; torch wants to own writable memory
            image = image.copy()
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        g = generator

        def uniform(lo: float, hi: float) -> float:
            return lo + (hi - lo) * float(torch.rand((), generator=g))

        if self.hflip and float(torch.rand((), generator=g)) < self.hflip:
            x = x.flip(-1)
        if self.vflip and float(torch.rand((), generator=g)) < self.vflip:
            x = x.flip(-2)
        if self.rotate:
            x = TF.rotate(x, uniform(-self.rotate, self.rotate), interpolation=InterpolationMode.NEAREST, fill=0)
        if any(self.jitter):
            factors = [uniform(max(0.0, 1 - j), 1 + j) if j else None for j in self.jitter]
            ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
            for k in torch.randperm(3, generator=g).tolist():
                if factors[k] is not None:
                    x = ops[k](x, factors[k])
        if self.crop_scale is not None:
            i, j, h, w = crop_box(x.shape[-2], x.shape[-1], self.crop_scale, self.crop_ratio, g)
            x = TF.resized_crop(x, i, j, h, w, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)
        elif tuple(x.shape[-2:]) != (size, size):
            mode = InterpolationMode.BICUBIC if self.resize == "bicubic" else InterpolationMode.BILINEAR
            x = TF.resize(x, [size, size], interpolation=mode, antialias=True)
        return x.permute(1, 2, 0).contiguous()


PRESETS = {
    "none": Preset("none"),
    "flip": Preset("flip", hflip=0.5),
    "open_clip": Preset("open_clip", crop_scale=(0.9, 1.0), mean=OPENAI_MEAN, std=OPENAI_STD),
    "mgll": Preset("mgll", hflip=0.5, jitter=(0.1, 0.1, 0.1), crop_scale=(0.9, 1.0), mean=IMAGENET_MEAN,
                   std=IMAGENET_STD),
    "mgll_finetune": Preset("mgll_finetune", hflip=0.5, vflip=0.5, rotate=30.0, jitter=(0.6, 0.6, 0.6),
                            crop_scale=(0.9, 1.0), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "mgll_finetune_eval": Preset("mgll_finetune_eval", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="bicubic"),
}

#: the presets ``train.augment`` accepts (pretraining)
PRETRAIN_PRESETS = ("none", "flip", "open_clip", "mgll")


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"unknown augmentation preset {name!r}; allowed: {sorted(PRESETS)}")
    return PRESETS[name]


def crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
             g: torch.Generator | None) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box ``(top, left, h, w)``: up to 10 tries of a random area fraction in ``scale``
    and a log-uniform aspect ratio in ``ratio``; else the central crop clamped to ``ratio``."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * float(torch.rand((), generator=g)))
        aspect = math.exp(log_lo + (log_hi - log_lo) * float(torch.rand((), generator=g)))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, (), generator=g))
            j = int(torch.randint(0, width - w + 1, (), generator=g))
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _mix(z: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit value from any 64-bit input."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's random draws: a function of (seed, epoch, index) only (63 bits)."""
    return _mix(_mix(_mix(int(seed) & _MASK) ^ (int(epoch) & _MASK)) ^ (int(index) & _MASK)) >> 1


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(sample_seed(seed, epoch, index))
