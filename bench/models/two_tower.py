"""The two-tower model: image tower + text tower + learned logit scale (+ optional bias), and ``build_model``."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .common import (
    IMAGE_TOWERS,
    TEXT_TOWERS,
    ModelConfigError,
    _unknown,
    as_bool,
)
from .freeze import apply_freeze, parse_freeze
from .text import Tokenizer

log = logging.getLogger("bench.models")

# Image normalisation used by default (CLIP's statistics; recorded in each run's config).
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)

#: options every image / text tower takes (handled here, not by the tower builders)
IMAGE_COMMON = ("freeze", "grad_checkpointing", "mean", "std")
TEXT_COMMON = ("freeze", "grad_checkpointing")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def _plain(cfg: Any) -> dict:
    """A tower config as a plain JSON-able dict (OmegaConf nodes resolved)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return json.loads(json.dumps(dict(cfg or {}), default=str))


def _resolve_image(name: str, cfg: dict):
    if name in IMAGE_TOWERS:
        return IMAGE_TOWERS[name], cfg
    import open_clip
    import timm

    if timm.is_model(name):
        if cfg.get("model") not in (None, name):
            raise ModelConfigError(f"image.name={name!r} is a timm model name; image.model={cfg['model']!r} would be "
                                   f"ignored (use image.name=timm image.model=... or drop image.model)")
        return IMAGE_TOWERS["timm"], {**cfg, "model": name}
    if name in open_clip.list_models():
        raise ModelConfigError(f"image.name={name!r} is an open_clip model: use image.name=open_clip image.model={name}")
    raise _unknown("image", name, IMAGE_TOWERS, extra=timm.list_models() + open_clip.list_models())


def _resolve_text(name: str, cfg: dict):
    if name in TEXT_TOWERS:
        return TEXT_TOWERS[name], cfg
    import open_clip

    if name in open_clip.list_models():
        raise ModelConfigError(f"text.name={name!r} is an open_clip model: use text.name=open_clip text.model={name}")
    raise _unknown("text", name, TEXT_TOWERS, extra=open_clip.list_models())


def _stats(key: str, value: Any, default: tuple) -> tuple:
    if value is None:
        return default
    if isinstance(value, str):
        named = {"clip": IMAGE_MEAN if key.endswith("mean") else IMAGE_STD,
                 "imagenet": (0.485, 0.456, 0.406) if key.endswith("mean") else (0.229, 0.224, 0.225),
                 "half": (0.5, 0.5, 0.5)}
        if value in named:
            return named[value]
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or (key.endswith("std") and min(out) <= 0):
        raise ModelConfigError(f"{key}={value!r} must be 3 numbers (std > 0) or one of clip, imagenet, half")
    return out


class TwoTower(nn.Module):
    """Image tower + text tower + logit scale (+ optional logit bias).

    ``forward(images, tokens)`` returns ``(image_features [B, D], {level: text_features [B, D]}, s, b)`` with
    ``s = exp(t)`` the positive multiplier (``t`` kept in ``[0, ln logit_scale_max]`` by
    :meth:`clamp_logit_scale_` after every optimiser step, as open_clip does) and ``b`` the bias (or ``None``).

    Tower configs are dicts with ``name`` and the tower's options; every image tower also takes ``freeze``
    (``false`` | ``true`` | k: train only the last k blocks and what follows them), ``grad_checkpointing`` and
    ``mean`` / ``std`` (pixel normalisation: 3 numbers or ``clip`` (default), ``imagenet``, ``half``); every
    text tower takes ``freeze`` and ``grad_checkpointing``. ``precision`` (``auto`` = bf16 on CUDA, fp32
    elsewhere) is what :meth:`autocast` applies; ``compile`` wraps both towers in ``torch.compile`` (state dict
    keys unchanged). ``config`` keeps every constructor argument as plain JSON (see ``save_encoder``).
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
        precision: str = "auto",
        compile: bool = False,
    ):
        super().__init__()
        image_cfg, text_cfg = _plain(image_cfg), _plain(text_cfg)
        self.config: dict[str, Any] = {
            "image_cfg": dict(image_cfg), "text_cfg": dict(text_cfg), "embed_dim": int(embed_dim),
            "resolution": int(resolution), "normalize_embeddings": bool(normalize_embeddings),
            "logit_scale_init": float(logit_scale_init), "logit_scale_max": float(logit_scale_max),
            "logit_bias_init": None if logit_bias_init is None else float(logit_bias_init),
            "precision": str(precision), "compile": bool(compile),
        }
        iname, tname = str(image_cfg.pop("name", "vit_tiny_custom")), str(text_cfg.pop("name", "tiny_transformer"))
        if not 1.0 <= float(logit_scale_max) < math.inf:
            raise ModelConfigError(f"model.logit_scale_max={logit_scale_max} must be a finite number >= 1 (the scale "
                                   f"is clamped to [1, max], i.e. its log to [0, ln max], as open_clip does)")
        if not 1.0 <= logit_scale_init <= logit_scale_max:
            raise ModelConfigError(
                f"model.logit_scale_init={logit_scale_init} must be in [1, model.logit_scale_max={logit_scale_max}] "
                "(the scale is clamped to that range after every optimiser step)"
            )
        if str(precision) not in PRECISIONS:
            raise ModelConfigError(f"model.precision={precision!r} is unknown; allowed: {list(PRECISIONS)}")
        if int(embed_dim) < 1:
            raise ModelConfigError(f"model.embed_dim={embed_dim} must be a positive integer")
        ibuild, image_cfg = _resolve_image(iname, image_cfg)
        tbuild, text_cfg = _resolve_text(tname, text_cfg)
        icommon = {k: image_cfg.pop(k) for k in IMAGE_COMMON if k in image_cfg}
        tcommon = {k: text_cfg.pop(k) for k in TEXT_COMMON if k in text_cfg}
        ifreeze = parse_freeze("image.freeze", icommon.get("freeze", False))
        tfreeze = parse_freeze("text.freeze", tcommon.get("freeze", False))
        mean = _stats("image.mean", icommon.get("mean"), IMAGE_MEAN)
        std = _stats("image.std", icommon.get("std"), IMAGE_STD)

        self.resolution = int(resolution)
        self.embed_dim = int(embed_dim)
        self.normalize_embeddings = bool(normalize_embeddings)
        self.logit_scale_max = float(logit_scale_max)
        self.precision = str(precision)
        self.image_name, self.text_name = iname, tname
        self.visual = ibuild({"name": iname, **image_cfg}, self.embed_dim, self.resolution)
        self.text = tbuild({"name": tname, **text_cfg}, self.embed_dim)
        self.context_length = int(getattr(self.text, "context_length", text_cfg.get("context_length", 32)))
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale_init)))
        self.logit_bias = nn.Parameter(torch.tensor(float(logit_bias_init))) if logit_bias_init is not None else None
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        # (x / 255 - mean) / std == x * scale - shift, applied channels-last in place (one pass, no temporaries)
        self.register_buffer("_pixel_scale", 1.0 / (255.0 * torch.tensor(std)), persistent=False)
        self.register_buffer("_pixel_shift", torch.tensor(mean) / torch.tensor(std), persistent=False)
        self._tokenizer: Tokenizer | None = None

        for kind, tower, common in (("image", self.visual, icommon), ("text", self.text, tcommon)):
            if as_bool(f"{kind}.grad_checkpointing", common.get("grad_checkpointing", False)):
                if not hasattr(tower, "set_grad_checkpointing"):
                    raise ModelConfigError(f"{kind}.grad_checkpointing: the {kind} tower does not support it")
                tower.set_grad_checkpointing(True)
        apply_freeze(self.visual, ifreeze, "image.freeze")
        apply_freeze(self.text, tfreeze, "text.freeze")
        self._frozen_whole = {"visual": ifreeze is True, "text": tfreeze is True}
        if bool(compile):
            self.visual.compile()
            self.text.compile()
        self.train(self.training)

    # -- modes ------------------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "TwoTower":
        """Like ``nn.Module.train``, but a wholly frozen tower stays in eval mode (no dropout, BatchNorm
        statistics fixed) and BatchNorm layers whose parameters are all frozen keep their statistics."""
        super().train(mode)
        if mode:
            for name in ("visual", "text"):
                tower = getattr(self, name)
                if getattr(self, "_frozen_whole", {}).get(name):
                    tower.eval()
                    continue
                for m in tower.modules():
                    ps = list(m.parameters(recurse=False))
                    if isinstance(m, _BatchNorm) and ps and not any(p.requires_grad for p in ps):
                        m.eval()
        return self

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return self.pixel_mean.device

    # -- precision --------------------------------------------------------------------------------------------
    def autocast_dtype(self, device: torch.device | None = None) -> torch.dtype | None:
        """The autocast dtype for ``device`` (default: the model's), ``None`` for fp32."""
        device = torch.device(device) if device is not None else self.device
        if self.precision == "auto":
            if device.type == "cuda" and torch.cuda.is_bf16_supported():
                return torch.bfloat16
            return None
        return _DTYPES[self.precision]

    def autocast(self):
        """Context manager for the forward pass: ``torch.autocast`` on the model's device with the dtype of
        ``model.precision``, or a no-op for fp32. Embeddings leave it in that dtype (objectives compute their
        logits in fp32)."""
        dtype = self.autocast_dtype()
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @property
    def needs_grad_scaler(self) -> bool:
        """True when training should use a ``torch.amp.GradScaler`` (fp16 autocast on CUDA)."""
        return self.autocast_dtype() is torch.float16 and self.device.type == "cuda"

    # -- inputs -------------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> the one tensor the text tower's forward accepts (first dim = text index): the tower's own
        tokenizer (``[B, L]`` CLIP BPE ids, ``[B, 2, L]`` ids + attention mask for Hugging Face towers)."""
        tok = getattr(self.text, "tokenize", None)
        if callable(tok):
            return tok(texts)
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.context_length)
        return self._tokenizer(texts)

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, H, W, 3]`` (array or tensor) -> normalised float ``[B, 3, R, R]`` on the model's device."""
        x = torch.as_tensor(images)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected uint8 images [B, H, W, 3], got shape {tuple(x.shape)}")
        x = x.to(self.pixel_mean.device, non_blocking=True)  # no host sync (pageable memory is staged at once)
        if x.shape[1] != self.resolution or x.shape[2] != self.resolution:
            x = F.interpolate(x.permute(0, 3, 1, 2).float(), size=(self.resolution, self.resolution), mode="bilinear",
                              antialias=True, align_corners=False).permute(0, 2, 3, 1)
        else:
            x = x.to(torch.float32, copy=True)  # a copy even for float input: normalised in place below
        x.mul_(self._pixel_scale).sub_(self._pixel_shift)
        return x.permute(0, 3, 1, 2).contiguous()

    # -- encoders -----------------------------------------------------------------------------------------
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        z = self.visual(pixels)
        return F.normalize(z, dim=-1) if self.normalize_embeddings else z

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        z = self.text(tokens)
        return F.normalize(z, dim=-1) if self.normalize_embeddings else z

    # -- logit scale -------------------------------------------------------------------------------------
    def logit_scale(self) -> torch.Tensor:
        """``s = exp(t)`` with ``t`` the learned log-scale, kept in ``[0, ln logit_scale_max]``.

        The training step clamps the parameter itself after every optimiser step (:meth:`clamp_logit_scale_`,
        as open_clip's training loop and the released MGLL code do), so the gradient with respect to ``t`` is
        never cut: a step may push ``t`` past the cap, the clamp brings it back, and a loss that wants a
        smaller scale lowers it again. Nothing is clamped here (a clamp in the forward would cut the gradient
        at the cap, which is what open_clip avoids)."""
        return self.log_logit_scale.exp()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the log-scale parameter in place to ``[0, ln logit_scale_max]`` (after each optimiser step;
        a device-side operation, no host synchronisation)."""
        self.log_logit_scale.clamp_(0.0, math.log(self.logit_scale_max))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The trainable parameters by part, in the words error messages use: ``image tower``, ``text tower``,
        ``logit scale``, ``logit bias`` (parts without trainable parameters are left out)."""
        parts = {"image tower": list(self.visual.parameters()), "text tower": list(self.text.parameters()),
                 "logit scale": [self.log_logit_scale],
                 "logit bias": [self.logit_bias] if self.logit_bias is not None else []}
        out = {k: [p for p in ps if p.requires_grad] for k, ps in parts.items()}
        return {k: ps for k, ps in out.items() if ps}

    def forward(self, pixels: torch.Tensor, tokens: dict[str, torch.Tensor]):
        image = self.encode_image(pixels)
        texts = {g: self.encode_text(t) for g, t in tokens.items()}
        return image, texts, self.logit_scale(), self.logit_bias

    # -- checkpoints --------------------------------------------------------------------------------------
    def export_assets(self) -> dict[str, dict[str, bytes]]:
        """Files a tower needs besides its weights to be rebuilt (Hugging Face config + tokenizer)."""
        out = {}
        for kind, tower in (("image", self.visual), ("text", self.text)):
            fn = getattr(tower, "export_assets", None)
            if callable(fn):
                out[kind] = fn()
        return out


def build_model(cfg, objective=None) -> TwoTower:
    """Build the model from a resolved run config (``cfg.image``, ``cfg.text``, ``cfg.model``,
    ``cfg.data.resolution``). An objective that needs a logit bias (SigLIP) or its own scale init gets them.
    A ``train.augment`` preset with its own normalisation (``mgll``: ImageNet statistics) sets ``image.mean`` /
    ``image.std`` unless they are given, so that evaluation normalises as training did."""
    from omegaconf import OmegaConf

    def as_dict(node):
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)

    m = as_dict(cfg.model)
    image = as_dict(cfg.image)
    augment = cfg.get("train", {}).get("augment") if hasattr(cfg, "get") else None
    if isinstance(augment, str):
        from ..data.transforms import PRESETS

        preset = PRESETS.get(augment)
        if preset is not None and preset.mean is not None:
            image.setdefault("mean", list(preset.mean))
            image.setdefault("std", list(preset.std))
            image = {k: (list(getattr(preset, k)) if k in ("mean", "std") and v is None else v) for k, v in image.items()}
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
        image,
        as_dict(cfg.text),
        embed_dim=int(m.get("embed_dim", 128)),
        resolution=int(cfg.data.resolution),
        normalize_embeddings=as_bool("model.normalize_embeddings", m.get("normalize_embeddings", True)),
        logit_scale_init=float(scale_init if scale_init is not None else 1 / 0.07),
        logit_scale_max=float(m.get("logit_scale_max", 100.0)),
        logit_bias_init=bias_init,
        precision=str(m.get("precision", "auto")),
        compile=as_bool("model.compile", m.get("compile", False)),
    )
