"""The two-tower model: an image tower, a text tower, a learned logit scale (and optional bias).

Towers are chosen by name from two small registries, ``IMAGE_TOWERS`` and ``TEXT_TOWERS``; each builder
takes the tower's config (a dict) and the shared embedding dimension and returns an ``nn.Module`` mapping
images ``[B, 3, H, W]`` (float, normalised) or token ids ``[B, L]`` to ``[B, embed_dim]``.

Defaults are CPU-sized and need no weights: a tiny timm ViT (embed 128, depth 4, 4 heads, patch 8) and a
tiny text transformer (open_clip's ``TextTransformer``, width 128, 2 layers) over open_clip's bundled BPE
tokenizer with a context of 32 tokens.

The logit scale is stored as a log-temperature ``t`` (init ``ln(1/0.07)``); the multiplier handed to the
objectives is ``s = exp(t)`` clamped to at most ``logit_scale_max`` (100). Embeddings are L2-normalised
unless ``normalize_embeddings=false`` (the released MGLL code's behaviour).
"""

from __future__ import annotations

import difflib
import logging
import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

IMAGE_TOWERS: dict[str, Callable[..., nn.Module]] = {}
TEXT_TOWERS: dict[str, Callable[..., nn.Module]] = {}

# Image normalisation used by every tower here (CLIP's statistics; recorded in each run's config).
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


class ModelConfigError(ValueError):
    """A model option is wrong: names the option and what is allowed."""


def _register(table: dict, name: str):
    def deco(fn):
        table[name] = fn
        return fn

    return deco


def _unknown(kind: str, name: str, table: dict) -> ModelConfigError:
    close = difflib.get_close_matches(name, list(table), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ModelConfigError(f"{kind}.name={name!r} is unknown{hint}; allowed: {sorted(table)}")


def _check_keys(kind: str, cfg: dict, allowed: Sequence[str]) -> None:
    extra = sorted(set(cfg) - set(allowed) - {"name"})
    if extra:
        raise ModelConfigError(f"{kind}: unknown option(s) {extra} for {kind}.name={cfg.get('name')!r}; allowed: {sorted(allowed)}")


# -- image towers -------------------------------------------------------------------------------------------
@_register(IMAGE_TOWERS, "vit_tiny_custom")
def tiny_vit(cfg: dict, embed_dim: int, resolution: int) -> nn.Module:
    """timm ``VisionTransformer`` at CPU size (about 0.9 M parameters at the defaults)."""
    from timm.models.vision_transformer import VisionTransformer

    _check_keys("image", cfg, ["patch_size", "width", "depth", "heads", "drop_path"])
    patch = int(cfg.get("patch_size", 8))
    if resolution % patch:
        raise ModelConfigError(f"image.patch_size={patch} must divide data.resolution={resolution}")
    return VisionTransformer(
        img_size=resolution,
        patch_size=patch,
        embed_dim=int(cfg.get("width", 128)),
        depth=int(cfg.get("depth", 4)),
        num_heads=int(cfg.get("heads", 4)),
        num_classes=embed_dim,
        drop_path_rate=float(cfg.get("drop_path", 0.0)),
    )


@_register(IMAGE_TOWERS, "timm")
def timm_tower(cfg: dict, embed_dim: int, resolution: int) -> nn.Module:
    """Any timm architecture by ``image.model`` (random init), with its classifier replaced by a projection."""
    import timm

    _check_keys("image", cfg, ["model"])
    arch = cfg.get("model")
    if not arch:
        raise ModelConfigError("image.model is required with image.name=timm (e.g. image.model=resnet18)")
    kwargs = {"pretrained": False, "num_classes": embed_dim}
    if "vit" in arch or "deit" in arch:
        kwargs["img_size"] = resolution
    try:
        return timm.create_model(arch, **kwargs)
    except RuntimeError as e:  # timm raises RuntimeError for unknown models
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        raise ModelConfigError(f"image.model={arch!r}: {e}; close matches: {close}") from e


# -- text towers --------------------------------------------------------------------------------------------
class _TinyText(nn.Module):
    def __init__(self, cfg: dict, embed_dim: int):
        super().__init__()
        from open_clip.transformer import TextTransformer

        self.context_length = int(cfg.get("context_length", 32))
        self.net = TextTransformer(
            context_length=self.context_length,
            vocab_size=49408,
            width=int(cfg.get("width", 128)),
            heads=int(cfg.get("heads", 4)),
            layers=int(cfg.get("layers", 2)),
            output_dim=embed_dim,
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)


@_register(TEXT_TOWERS, "tiny_transformer")
def tiny_text(cfg: dict, embed_dim: int) -> nn.Module:
    """open_clip's causal ``TextTransformer`` at CPU size over the bundled CLIP BPE vocabulary."""
    _check_keys("text", cfg, ["context_length", "width", "heads", "layers"])
    return _TinyText(cfg, embed_dim)


class Tokenizer:
    """open_clip's bundled CLIP BPE tokenizer (works offline) with a fixed context length."""

    def __init__(self, context_length: int = 32):
        from open_clip.tokenizer import SimpleTokenizer

        self.context_length = context_length
        self._tok = SimpleTokenizer(context_length=context_length)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return self._tok(list(texts), context_length=self.context_length)


# -- the two-tower model ------------------------------------------------------------------------------------
class TwoTower(nn.Module):
    """Image tower + text tower + logit scale (+ optional logit bias).

    ``forward(images, tokens)`` returns ``(image_features [B, D], {level: text_features [B, D]}, s, b)`` with
    ``s`` the clamped positive multiplier and ``b`` the bias (or ``None``).
    """

    def __init__(
        self,
        image_cfg: dict,
        text_cfg: dict,
        embed_dim: int = 128,
        resolution: int = 64,
        normalize_embeddings: bool = True,
        logit_scale_init: float = 1 / 0.07,
        logit_scale_max: float = 100.0,
        logit_bias_init: float | None = None,
    ):
        super().__init__()
        image_cfg, text_cfg = dict(image_cfg), dict(text_cfg)
        iname, tname = image_cfg.get("name", "vit_tiny_custom"), text_cfg.get("name", "tiny_transformer")
        if iname not in IMAGE_TOWERS:
            raise _unknown("image", iname, IMAGE_TOWERS)
        if tname not in TEXT_TOWERS:
            raise _unknown("text", tname, TEXT_TOWERS)
        if logit_scale_init <= 0 or logit_scale_init > logit_scale_max:
            raise ModelConfigError(
                f"model.logit_scale_init={logit_scale_init} must be in (0, model.logit_scale_max={logit_scale_max}]"
            )
        self.resolution = int(resolution)
        self.embed_dim = int(embed_dim)
        self.normalize_embeddings = bool(normalize_embeddings)
        self.logit_scale_max = float(logit_scale_max)
        self.visual = IMAGE_TOWERS[iname](image_cfg, self.embed_dim, self.resolution)
        self.text = TEXT_TOWERS[tname](text_cfg, self.embed_dim)
        self.context_length = int(getattr(self.text, "context_length", text_cfg.get("context_length", 32)))
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale_init)))
        self.logit_bias = nn.Parameter(torch.tensor(float(logit_bias_init))) if logit_bias_init is not None else None
        self.register_buffer("pixel_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)
        self._tokenizer: Tokenizer | None = None

    # -- inputs -------------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.context_length)
        return self._tokenizer(texts)

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, H, W, 3]`` (array or tensor) -> normalised float ``[B, 3, R, R]`` on the model's device."""
        x = torch.as_tensor(images)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected uint8 images [B, H, W, 3], got shape {tuple(x.shape)}")
        x = x.to(self.pixel_mean.device).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True, align_corners=False)
        return (x - self.pixel_mean) / self.pixel_std

    # -- encoders -----------------------------------------------------------------------------------------
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        z = self.visual(pixels)
        return F.normalize(z, dim=-1) if self.normalize_embeddings else z

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        z = self.text(tokens)
        return F.normalize(z, dim=-1) if self.normalize_embeddings else z

    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.exp().clamp(max=self.logit_scale_max)

    def forward(self, pixels: torch.Tensor, tokens: dict[str, torch.Tensor]):
        image = self.encode_image(pixels)
        texts = {g: self.encode_text(t) for g, t in tokens.items()}
        return image, texts, self.logit_scale(), self.logit_bias


def build_model(cfg, objective=None) -> TwoTower:
    """Build the model from a resolved run config (``cfg.image``, ``cfg.text``, ``cfg.model``,
    ``cfg.data.resolution``). An objective that needs a logit bias (SigLIP) or its own scale init gets them."""
    from omegaconf import OmegaConf

    def as_dict(node):
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)

    m = as_dict(cfg.model)
    scale_init = m.get("logit_scale_init")
    bias_init = m.get("logit_bias_init")
    if objective is not None:
        if scale_init is None and getattr(objective, "init_logit_scale", None) is not None:
            scale_init = objective.init_logit_scale
        if bias_init is None and getattr(objective, "needs_logit_bias", False):
            bias_init = getattr(objective, "init_logit_bias", None)
            if bias_init is None:
                bias_init = -10.0
    return TwoTower(
        as_dict(cfg.image),
        as_dict(cfg.text),
        embed_dim=int(m.get("embed_dim", 128)),
        resolution=int(cfg.data.resolution),
        normalize_embeddings=bool(m.get("normalize_embeddings", True)),
        logit_scale_init=float(scale_init if scale_init is not None else 1 / 0.07),
        logit_scale_max=float(m.get("logit_scale_max", 100.0)),
        logit_bias_init=bias_init,
    )
