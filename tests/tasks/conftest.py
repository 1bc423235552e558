"""Stand-ins for the task tests: a tiny model whose features are a known function of the image, and small
in-memory ``MultiGranularDataset``s built here (no dependency on the embedded data generators)."""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np
import pytest
import torch
from torch import nn

from bench.data.sample import Sample, TaskSpec

from bench.data.dataset import MultiGranularDataset


class MeanColour(nn.Module):
    """The image tower: mean colour per channel of ``[B, 3, H, W]``, through a 3x3 linear map (identity at
    init, so the features are exactly the mean colour in [0, 255] units)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 3)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(3))
            self.proj.bias.zero_()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(pixels.mean(dim=(2, 3)))


class ColourModel(nn.Module):
    """A ``TwoTower`` stand-in. ``preprocess`` passes pixels through (uint8 HWC -> float CHW, no scaling),
    ``encode_image`` = mean colour (3-d; plus a constant 4th feature ``offset`` if given), ``encode_text`` looks texts up in ``text_vectors`` (unknown texts
    get a fixed pseudo-random vector from a hash of the string). Counts what it encodes."""

    def __init__(self, text_vectors: dict[str, Sequence[float]] | None = None, scale: float = 10.0, offset: float | None = None):
        super().__init__()
        self.visual = MeanColour()
        self.offset = offset  # if set, encode_image appends this constant as a 4th feature
        self.embed_dim = 3 if offset is None else 4
        self.resolution = None
        self.normalize_embeddings = False
        self.text_vectors = {k: list(map(float, v)) for k, v in (text_vectors or {}).items()}
        self.scale = scale
        self.image_calls = 0
        self.images_encoded = 0
        self.texts_encoded: list[str] = []
        self._vocab: list[str] = []

    def preprocess(self, images) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(images))
        return x.permute(0, 3, 1, 2).float()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        self.image_calls += 1
        self.images_encoded += len(pixels)
        z = self.visual(pixels)
        if self.offset is not None:
            z = torch.cat([z, torch.full_like(z[:, :1], self.offset)], dim=1)
        return z

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        ids = []
        for t in texts:
            if t not in self._vocab:
                self._vocab.append(t)
            ids.append(self._vocab.index(t))
        return torch.tensor(ids)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        rows = []
        for i in tokens.tolist():
            text = self._vocab[i]
            self.texts_encoded.append(text)
            if text in self.text_vectors:
                rows.append(self.text_vectors[text])
            else:
                rng = np.random.default_rng(zlib.crc32(text.encode()))
                rows.append(rng.normal(size=self.embed_dim).tolist())
        return torch.tensor(rows, dtype=torch.float32)

    def logit_scale(self) -> torch.Tensor:
        return torch.tensor(self.scale)


def colour_image(rgb: Sequence[float], size: int = 4, noise: float = 0.0, rng=None) -> np.ndarray:
    """A constant-colour ``size x size`` image (plus optional uniform noise), uint8."""
    img = np.broadcast_to(np.asarray(rgb, dtype=np.float64), (size, size, 3)).copy()
    if noise and rng is not None:
        img = img + rng.uniform(-noise, noise, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


COLOURS = ("red", "green", "blue")


def colour_dataset(
    kind: str = "multiclass",
    n: dict[str, int] | None = None,
    *,
    seed: int = 0,
    shuffle_labels: bool = False,
    p_label: float = 0.4,
    noise: float = 15.0,
) -> dict[str, MultiGranularDataset]:
    """Splits of a dataset whose targets the mean colour separates linearly.

    ``kind="multiclass"``: target ``colour`` (3 classes): channel ``c`` is bright (200 vs 40); target
    ``glaucoma`` (binary) = ``c == 0``. ``kind="multilabel"``: target ``channels`` (3 labels): channel ``l``
    is bright iff label ``l`` (each with probability ``p_label``); ``glaucoma`` = label 0.
    Per-image colour jitter and pixel noise of +-``noise``. Texts: level ``colour`` = the dominant colour
    name (multi-class) or the present names joined (multi-label, ``"none"`` if empty); level ``detail`` =
    that text plus ``" <i % 3>"``. ``shuffle_labels`` permutes the targets across samples (nothing is
    learnable then).
    """
    n = n or {"train": 90, "val": 60, "test": 90}
    rng = np.random.default_rng(seed)
    out = []
    for split, count in n.items():
        for i in range(count):
            if kind == "multiclass":
                c = int(rng.integers(0, 3))
                bright = np.arange(3) == c
                targets = {"colour": c, "glaucoma": int(c == 0)}
                text = COLOURS[c]
            else:
                bright = rng.random(3) < p_label
                targets = {"channels": tuple(int(b) for b in bright), "glaucoma": int(bright[0])}
                text = ", ".join(COLOURS[j] for j in range(3) if bright[j]) or "none"
            rgb = np.where(bright, 200.0, 40.0) + rng.uniform(-noise, noise, 3)
            out.append(
                Sample(
                    id=f"{split}-{i}",
                    image=colour_image(rgb, noise=noise, rng=rng),
                    texts={"colour": text, "detail": f"{text} {i % 3}"},
                    targets=targets,
                    split=split,
                )
            )
    if shuffle_labels:
        perm = rng.permutation(len(out))
        shuffled = [out[j].targets for j in perm]
        for sample, t in zip(out, shuffled):
            sample.targets = t
    specs = {"glaucoma": TaskSpec("multiclass", ("no", "yes"))}
    if kind == "multiclass":
        specs["colour"] = TaskSpec("multiclass", COLOURS)
    else:
        specs["channels"] = TaskSpec("multilabel", COLOURS)
    ds = MultiGranularDataset(out, ["colour", "detail"], task_specs=specs, name=f"colours-{kind}")
    return {s: ds.split(s) for s in n}


@pytest.fixture
def colour_model():
    return ColourModel


@pytest.fixture
def colour_splits():
    return colour_dataset


@pytest.fixture
def make_image():
    return colour_image


@pytest.fixture
def sample_cls():
    return Sample, TaskSpec, MultiGranularDataset


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tests run tiny tensors: one intra-op thread avoids OpenMP contention on busy CI cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
