"""``model.init``: the weights a cell starts from (and, with ``eval_only=true``, evaluates).

``model.init`` names a local path; what it holds decides how it is read:

- a cell folder (``<results>/<grid>/<cell>``, which holds ``checkpoints/encoder.pt``) or an ``encoder.pt``
  written by :func:`~bench.models.save_encoder`: the whole two-tower model is rebuilt from the file
  (:func:`~bench.models.load_encoder`); its own config decides the towers, ``image.*`` / ``text.*`` /
  ``model.*`` of the cell are not used for the architecture;
- a released MGLL checkpoint (``{"model": {"clip.visual...", "text_model...", ...}, "args": ...}``): the model
  is built from the cell's config and the checkpoint mapped onto it
  (:func:`~bench.models.load_mgll_checkpoint`, so the towers must be the matching open_clip / hf ones);
- any other weights file (open_clip or timm image weights; ``.safetensors``, ``.pt``, ``.bin``): the image
  tower is built from the cell's config with these weights, exactly as ``image.pretrained=PATH`` (the same
  key matching, ``image.strict``).

Without ``model.init`` the model is the random init of the cell's config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from .common import ModelConfigError, load_file, local_path

log = logging.getLogger("bench.models")

__all__ = ["init_kind", "initial_model", "resolve_init"]


def resolve_init(value: Any) -> Path | None:
    """The file ``model.init`` names (a cell folder -> its ``checkpoints/encoder.pt``), or None."""
    p = local_path("model.init", value)
    if p is None:
        return None
    if p.is_dir():
        for cand in (p / "checkpoints" / "encoder.pt", p / "encoder.pt"):
            if cand.is_file():
                return cand
        raise ModelConfigError(f"model.init={str(value)!r} is a folder without checkpoints/encoder.pt: not a finished "
                               "cell (a cell saves its encoder when its pretraining ends); name a cell folder that is "
                               "done, an encoder.pt, an MGLL checkpoint or a weights file", key="model.init", value=value)
    return p


def init_kind(path: Path) -> tuple[str, Any]:
    """(``encoder`` | ``mgll`` | ``weights``, the loaded content) of a ``model.init`` file."""
    from .checkpoint import FORMAT

    raw = load_file("model.init", path)
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        return "encoder", raw
    inner = raw.get("model") if isinstance(raw, dict) else None
    if isinstance(inner, dict) and any(str(k).startswith(("clip.", "text_model.")) for k in inner):
        return "mgll", raw
    return "weights", raw


def initial_model(cfg: Any, objective: Any = None):
    """The cell's model: the random init of its config, or ``model.init``'s weights (see the module doc)."""
    from .checkpoint import load_encoder, load_mgll_checkpoint
    from .two_tower import build_model

    value = OmegaConf.select(cfg, "model.init") if OmegaConf.is_config(cfg) else (cfg.get("model") or {}).get("init")
    path = resolve_init(value)
    if path is None:
        return build_model(cfg, objective)
    kind, _ = init_kind(path)
    if kind == "encoder":
        log.info("model.init: the encoder of %s", path)
        return load_encoder(path).train()
    if kind == "mgll":
        model = build_model(cfg, objective)
        load_mgll_checkpoint(model, path)
        return model
    log.info("model.init: image weights from %s (as image.pretrained)", path)
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)) if OmegaConf.is_config(cfg) else OmegaConf.create(cfg)
    cfg.image.pretrained = str(path)
    return build_model(cfg, objective)
