"""Image towers: ``[B, 3, R, R]`` normalised pixels -> ``[B, embed_dim]``.

- ``vit_tiny_custom`` (default): a timm ``VisionTransformer`` at CPU size whose classifier head is the
  projection to ``embed_dim``.
- ``timm``: any timm architecture (``image.model=resnet50``; or ``image.name=resnet18`` directly), random init
  or a local weights file (``image.pretrained=/path``), pooled features + a projection when their size differs
  from ``embed_dim``.
- ``open_clip``: the visual tower of any open_clip model config (``image.model=ViT-L-14``), random init or local
  weights: a full open_clip / OpenAI CLIP state dict (its ``visual.*`` keys are taken), a bare visual state
  dict, a released MGLL checkpoint (``clip.visual.*``) or OpenAI's TorchScript ``.pt`` file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Optional

import torch
from torch import nn

from .common import (
    IMAGE_TOWERS,
    ModelConfigError,
    _check_keys,
    _register,
    as_bool,
    best_prefix,
    close_matches,
    load_matching,
    load_weights_enabled,
    local_path,
    read_state_dict,
    take_prefix,
)
from .freeze import module_list_blocks, timm_layout

log = logging.getLogger("bench.models")


def _load_pretrained(module: nn.Module, cfg: dict, *, key: str = "image.pretrained", prepare=None, ignore=None) -> None:
    """Load ``cfg['pretrained']`` (a local file or folder) into ``module`` unless rebuilding from a checkpoint."""
    path = local_path(key, cfg.get("pretrained"))
    if path is None:
        return
    if not load_weights_enabled():
        return
    sd = read_state_dict(key, path)
    if prepare is not None:
        sd = prepare(sd)
    load_matching(module, sd, source=f"{key}={path}", strict=as_bool(key.rsplit(".", 1)[0] + ".strict", cfg.get("strict", True)),
                  ignore_unexpected=ignore)


# -- options of the image towers (checked by _check_keys; documented by python -m bench.run --help image) ----
_PRETRAINED = {"help": "a local weights file or folder (nothing is downloaded)"}
_STRICT = {"help": "every missing or unexpected key of the weights is an error"}


@dataclass
class TinyViTOptions:
    patch_size: int = field(default=8, metadata={"help": "patch size (must divide data.resolution)", "min": 1})
    width: int = field(default=128, metadata={"help": "embedding width", "min": 1})
    depth: int = field(default=4, metadata={"help": "transformer blocks", "min": 1})
    heads: int = field(default=4, metadata={"help": "attention heads", "min": 1})
    drop_path: float = field(default=0.0, metadata={"help": "stochastic depth rate", "min": 0, "max": 1, "max_open": True})
    pretrained: Any = field(default=None, metadata=_PRETRAINED)
    strict: bool = field(default=True, metadata=_STRICT)


@dataclass
class TimmOptions:
    model: Optional[str] = field(default=None, metadata={"help": "timm architecture name (required), e.g. resnet18"})
    pretrained: Any = field(default=None, metadata=_PRETRAINED)
    strict: bool = field(default=True, metadata=_STRICT)
    drop_path: float = field(default=0.0, metadata={"help": "stochastic depth rate", "min": 0, "max": 1, "max_open": True})
    kwargs: dict = field(default_factory=dict, metadata={"help": "extra timm.create_model arguments"})


@dataclass
class OpenCLIPVisualOptions:
    model: Optional[str] = field(default=None, metadata={"help": "open_clip model name (required), e.g. ViT-B-32"})
    pretrained: Any = field(default=None, metadata=_PRETRAINED)
    strict: bool = field(default=True, metadata=_STRICT)
    quick_gelu: Optional[bool] = field(default=None, metadata={"help": "QuickGELU (default: the model config's)"})
    model_cfg: dict = field(default_factory=dict, metadata={"help": "overrides of the vision config (+ embed_dim)"})


# -- tiny ViT (default) -------------------------------------------------------------------------------------
@_register(IMAGE_TOWERS, "vit_tiny_custom", options=TinyViTOptions)
def tiny_vit(cfg: dict, embed_dim: int, resolution: int) -> nn.Module:
    """timm ``VisionTransformer`` at CPU size (about 0.9 M parameters at the defaults): ``image.patch_size``
    (8), ``image.width`` (128), ``image.depth`` (4), ``image.heads`` (4), ``image.drop_path`` (0); its head is
    the projection to ``embed_dim``. ``image.pretrained``: a local state dict of the same architecture."""
    from timm.models.vision_transformer import VisionTransformer

    _check_keys("image", cfg, TinyViTOptions)
    patch = int(cfg.get("patch_size", 8))
    if resolution % patch:
        raise ModelConfigError(f"image.patch_size={patch} must divide data.resolution={resolution}")
    model = VisionTransformer(
        img_size=resolution,
        patch_size=patch,
        embed_dim=int(cfg.get("width", 128)),
        depth=int(cfg.get("depth", 4)),
        num_heads=int(cfg.get("heads", 4)),
        num_classes=embed_dim,
        drop_path_rate=float(cfg.get("drop_path", 0.0)),
    )
    _load_pretrained(model, cfg)
    return model


# -- timm ---------------------------------------------------------------------------------------------------
class TimmTower(nn.Module):
    """A timm model without its classifier (pooled features) + a bias-free projection to ``embed_dim`` when
    the feature size differs (``proj`` is ``None`` otherwise)."""

    def __init__(self, net: nn.Module, embed_dim: int):
        super().__init__()
        self.net = net
        self.output_dim = int(net.num_features)
        self.proj = nn.Linear(self.output_dim, embed_dim, bias=False) if self.output_dim != embed_dim else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return self.proj(z) if self.proj is not None else z

    def freeze_layout(self) -> tuple[list[list[str]], list[str]]:
        blocks, head = timm_layout(self.net, "net.")
        return blocks, head + (["proj.weight"] if self.proj is not None else [])

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.net.set_grad_checkpointing(enable)


def _timm_filter(model: nn.Module, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply the architecture's own ``checkpoint_filter_fn`` (original-format conversion, position-embedding
    resampling) when timm defines one, and drop the classifier (the tower has none)."""
    import importlib

    mod = importlib.import_module(type(model).__module__)
    fn = getattr(mod, "checkpoint_filter_fn", None)
    if fn is not None:
        try:
            sd = fn(sd, model)
        except Exception as e:  # a filter written for another checkpoint flavour: use the raw keys
            log.debug("timm checkpoint_filter_fn of %s failed (%s); using the raw keys", type(model).__name__, e)
    return sd


def _timm_classifier_keys(model: nn.Module):
    cls = model.pretrained_cfg.get("classifier") if getattr(model, "pretrained_cfg", None) else None
    names = [cls] if isinstance(cls, str) else list(cls or [])
    prefixes = tuple(n + "." for n in names)
    return lambda k: bool(prefixes) and k.startswith(prefixes)


@_register(IMAGE_TOWERS, "timm", options=TimmOptions)
def timm_tower(cfg: dict, embed_dim: int, resolution: int) -> nn.Module:
    """Any timm architecture by ``image.model`` (random init unless ``image.pretrained`` names a local weights
    file or folder), classifier removed, projected to ``embed_dim`` when its feature size differs. Options:
    ``image.drop_path`` (0), ``image.kwargs`` (extra ``timm.create_model`` arguments), ``image.strict`` (true:
    any missing/unexpected key is an error; the original classifier's keys are always ignored)."""
    import timm

    _check_keys("image", cfg, TimmOptions)
    arch = cfg.get("model")
    if not arch:
        raise ModelConfigError("image.model is required with image.name=timm (e.g. image.model=resnet18)")
    arch = str(arch)
    if arch.lower().startswith(("hf-hub:", "hf_hub:", "timm/")):
        raise ModelConfigError(f"image.model={arch!r} is a hub name; only timm architecture names are accepted, "
                               f"with weights from a local image.pretrained=/path")
    if not timm.is_model(arch):
        close = close_matches(arch, timm.list_models())
        raise ModelConfigError(f"image.model={arch!r} is not a timm model{_fmt(close)}")
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0, **dict(cfg.get("kwargs") or {})}
    if cfg.get("drop_path"):
        kwargs["drop_path_rate"] = float(cfg["drop_path"])
    try:
        net = timm.create_model(arch, img_size=resolution, **kwargs)
    except TypeError:  # architectures without a fixed input size (CNNs) take no img_size
        net = timm.create_model(arch, **kwargs)
    _load_pretrained(net, cfg, prepare=lambda sd: _timm_filter(net, sd), ignore=_timm_classifier_keys(net))
    return TimmTower(net, embed_dim)


def _fmt(close) -> str:
    return f" (close matches: {', '.join(close)})" if close else ""


# -- open_clip visual ---------------------------------------------------------------------------------------
def open_clip_config(kind: str, name: Any) -> dict:
    """The open_clip model config of ``name`` (a deep copy), or a clear error (hub names are refused)."""
    import open_clip

    if not name:
        raise ModelConfigError(f"{kind}.model is required with {kind}.name=open_clip (e.g. {kind}.model=ViT-B-32); "
                               f"names: open_clip.list_models()")
    name = str(name)
    if name.lower().startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        raise ModelConfigError(f"{kind}.model={name!r}: only built-in open_clip model names are accepted (offline), "
                               f"with weights from a local {kind}.pretrained=/path")
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        close = close_matches(name, open_clip.list_models())
        raise ModelConfigError(f"{kind}.model={name!r} is not an open_clip model{_fmt(close)}")
    return cfg


# the smallest tower open_clip builds: the other tower of a model whose one tower we want
_TINY_TOWER = {"vision_cfg": {"image_size": 8, "patch_size": 8, "width": 8, "head_width": 8, "layers": 1},
               "text_cfg": {"context_length": 2, "vocab_size": 2, "width": 8, "heads": 1, "layers": 1}}


def open_clip_tower(kind: str, out_dim: int, tower_cfg: dict, quick_gelu: bool) -> nn.Module:
    """One tower of an open_clip model, built with open_clip's public ``create_model`` (random init, no
    download): ``kind`` ``"visual"`` (``tower_cfg`` = a ``vision_cfg``) or ``"text"`` (a ``text_cfg``). The
    other tower is built at a negligible size and dropped."""
    import open_clip

    other = "text_cfg" if kind == "visual" else "vision_cfg"
    cfgs = {"vision_cfg" if kind == "visual" else "text_cfg": tower_cfg, other: _TINY_TOWER[other]}
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # open_clip warns "no pretrained weights loaded": none are wanted
    try:
        model = open_clip.create_model("ViT-B-32", pretrained=None, force_custom_text=True, embed_dim=out_dim,
                                       quick_gelu=quick_gelu, **cfgs)
    finally:
        root.setLevel(level)
    return model.visual if kind == "visual" else model.text


_VISUAL_PREFIXES = ("visual.", "clip.visual.", "module.visual.", "model.visual.", "module.clip.visual.", "")


class OpenCLIPVisual(nn.Module):
    """The visual tower of an open_clip model config at ``resolution`` px (its position embedding resized when
    loading weights made for another size) + a bias-free projection when its output differs from ``embed_dim``."""

    def __init__(self, model_name: str, embed_dim: int, resolution: int, quick_gelu: bool | None = None,
                 overrides: dict | None = None):
        super().__init__()
        mcfg = open_clip_config("image", model_name)
        overrides = dict(overrides or {})
        out_dim = int(overrides.pop("embed_dim", mcfg["embed_dim"]))
        vcfg = dict(mcfg["vision_cfg"])
        vcfg.update(overrides)
        vcfg["image_size"] = int(resolution)
        if vcfg.get("timm_model_name"):
            vcfg["timm_model_pretrained"] = False
        qg = bool(mcfg.get("quick_gelu", False)) if quick_gelu is None else bool(quick_gelu)
        try:
            self.net = open_clip_tower("visual", out_dim, vcfg, qg)
        except TypeError as e:
            raise ModelConfigError(f"image.model_cfg={overrides}: {e}") from e
        self.model_name = model_name
        self.output_dim = out_dim
        self.proj = nn.Linear(out_dim, embed_dim, bias=False) if out_dim != embed_dim else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        if isinstance(z, (tuple, list)):  # towers with output_tokens / attentional pooling
            z = z[0]
        return self.proj(z) if self.proj is not None else z

    def extract(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The visual keys of a full CLIP / MGLL / bare visual state dict, position embedding fitted."""
        prefix, _ = best_prefix(sd, self.net.state_dict().keys(), _VISUAL_PREFIXES)
        out = take_prefix(sd, prefix)
        if "positional_embedding" in out and hasattr(self.net, "grid_size"):
            from open_clip.model import resize_pos_embed

            tmp = {"visual.positional_embedding": out["positional_embedding"]}
            resize_pos_embed(tmp, SimpleNamespace(visual=self.net))
            out["positional_embedding"] = tmp["visual.positional_embedding"]
        return out

    def freeze_layout(self) -> tuple[list[list[str]], list[str]]:
        net = self.net
        own = [n for n, _ in net.named_parameters()]
        if hasattr(net, "transformer"):  # VisionTransformer
            blocks = module_list_blocks(net.transformer.resblocks, "net.transformer.resblocks.")
            head = [f"net.{n}" for n in own if n.startswith(("ln_post", "proj", "attn_pool"))]
        elif hasattr(net, "layer1"):  # ModifiedResNet
            blocks = []
            for i in range(1, 5):
                blocks += module_list_blocks(getattr(net, f"layer{i}"), f"net.layer{i}.")
            head = [f"net.{n}" for n in own if n.startswith("attnpool")]
        elif hasattr(net, "trunk"):  # TimmModel
            blocks, head = timm_layout(net.trunk, "net.trunk.")
            head += [f"net.{n}" for n in own if n.startswith("head")]
        else:
            raise ModelConfigError(f"image.freeze=k: no block structure known for {type(net).__name__}")
        return blocks, head + (["proj.weight"] if self.proj is not None else [])

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.net.set_grad_checkpointing(enable)


@_register(IMAGE_TOWERS, "open_clip", options=OpenCLIPVisualOptions)
def open_clip_visual(cfg: dict, embed_dim: int, resolution: int) -> nn.Module:
    """The visual tower of an open_clip model (``image.model=ViT-L-14``), built with ``pretrained=None`` at
    ``data.resolution``; ``image.pretrained=/path`` loads local weights (full CLIP or OpenAI state dict, bare
    visual state dict, MGLL checkpoint, OpenAI TorchScript file). ``image.quick_gelu`` (default: the model
    config's; OpenAI weights were trained with QuickGELU, e.g. ``ViT-L-14-quickgelu``), ``image.model_cfg``
    (overrides of the vision config, plus ``embed_dim`` for the tower's own output size), ``image.strict``."""
    _check_keys("image", cfg, OpenCLIPVisualOptions)
    qg = cfg.get("quick_gelu")
    tower = OpenCLIPVisual(str(cfg.get("model") or ""), embed_dim, resolution,
                           None if qg is None else as_bool("image.quick_gelu", qg), dict(cfg.get("model_cfg") or {}))
    _load_pretrained(tower.net, cfg, prepare=tower.extract)
    return tower
