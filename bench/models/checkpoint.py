"""Encoder checkpoints that carry their own config, and loading the released MGLL checkpoints.

``save_encoder(model, path)`` writes one ``torch.save`` file readable with ``torch.load(weights_only=True)``::

    {"format": "contrastive-bench/encoder", "version": 1,
     "config": {...},          # TwoTower constructor arguments, plain JSON (towers' names and options)
     "state_dict": {...},      # model.state_dict(), CPU tensors
     "assets": {"text": {filename: bytes}},   # Hugging Face towers: config.json + tokenizer files
     "meta": {...}}            # anything JSON-able the caller adds (run id, step, metrics)

``load_encoder(path)`` rebuilds the :class:`TwoTower` from that file alone: no folder, package or weights
file named in the config is needed (``pretrained`` paths are not read again).

``load_mgll_checkpoint(model, path)`` maps a checkpoint of the released MGLL code (``{"model": state_dict,
"args": Namespace, ...}``, open_clip keys under ``clip.``, the BERT tower under ``text_model.``, the learned
log-temperature ``logit_scale``) onto the matching towers and reports which keys matched / are missing.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .common import (
    LoadReport,
    ModelConfigError,
    _names,
    load_file,
    local_path,
    rebuilding,
    unwrap_state_dict,
)
from .image import OpenCLIPVisual
from .hf_text import HFText
from .text import OpenCLIPText, to_custom_text
from .two_tower import TwoTower

log = logging.getLogger("bench.models")

FORMAT = "contrastive-bench/encoder"
VERSION = 1


def save_encoder(model: TwoTower, path: str | os.PathLike, **meta: Any) -> Path:
    """Write ``model`` (config + weights + tower assets) to ``path`` atomically; returns the path."""
    if not isinstance(model, TwoTower):
        raise TypeError(f"save_encoder expects a TwoTower, got {type(model).__name__}")
    config = json.loads(json.dumps(model.config))
    try:
        meta = json.loads(json.dumps(meta))
    except TypeError as e:
        raise ValueError(f"save_encoder: meta must be JSON-serialisable: {e}") from e
    state = {
        "format": FORMAT,
        "version": VERSION,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "assets": model.export_assets(),
        "meta": meta,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    log.info("saved encoder (%s / %s) to %s", config["image_cfg"].get("name"), config["text_cfg"].get("name"), path)
    return path


def read_encoder_file(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """The raw content of an encoder checkpoint (``torch.load(weights_only=True)``), format checked."""
    p = local_path("encoder checkpoint", str(path), kind="file")
    try:
        state = torch.load(str(p), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # an object outside torch's allow-list: never unpickled
        lines = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        raise ModelConfigError(f"{p}: refused: it holds objects an encoder checkpoint never holds, so it was not "
                               f"written by save_encoder and may run code when loaded ({(lines or [''])[0][:300]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ModelConfigError(f"{p}: cannot be read as an encoder checkpoint (truncated or damaged): "
                               f"{type(e).__name__}: {str(e)[:300]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        top = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ModelConfigError(f"{p}: not a contrastive-bench encoder checkpoint (top-level: {top}); "
                               f"for MGLL checkpoints use load_mgll_checkpoint(model, path)")
    if int(state.get("version", 0)) > VERSION:
        raise ModelConfigError(f"{p}: encoder checkpoint version {state['version']} is newer than this code ({VERSION})")
    return state


def load_encoder(path: str | os.PathLike, map_location: Any = "cpu") -> TwoTower:
    """Rebuild the :class:`TwoTower` saved by :func:`save_encoder` (weights loaded strictly, eval mode)."""
    state = read_encoder_file(path, map_location)
    with rebuilding(state.get("assets")):
        model = TwoTower(**state["config"])
    model.load_state_dict(state["state_dict"], strict=True)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval()


def _mgll_logit_scale(sd: dict[str, torch.Tensor]) -> torch.Tensor | None:
    v = sd.get("logit_scale")
    return v.reshape(()) if v is not None else None


def load_mgll_checkpoint(model: TwoTower, path: str | os.PathLike, *, strict: bool = False) -> dict[str, Any]:
    """Load a released-MGLL-code checkpoint into the matching towers of ``model``.

    - ``clip.visual.*`` -> an ``open_clip`` image tower (position embedding resized to ``data.resolution``);
    - ``clip.text.*`` (or old-format ``clip.token_embedding`` ...) -> an ``open_clip`` text tower (position
      table cut to ``text.context_length``);
    - ``text_model.model.*`` and ``text_model.projection_head_text.projection.weight`` -> an ``hf`` text tower
      (Bio_ClinicalBERT with FLAIR pooling in the released code);
    - ``logit_scale`` (the learned log-temperature) -> ``log_logit_scale``.

    Returns ``{"matched", "missing", "unexpected", "mismatched"}`` (lists of keys: ``missing`` are the model's
    keys left as they were, ``unexpected`` the checkpoint's keys nothing used, e.g. MGLL's unused
    cross-attention blocks). Nothing matching is an error; ``strict=True`` also fails on any missing key.
    """
    p = local_path("MGLL checkpoint", str(path), kind="file")
    raw = load_file("MGLL checkpoint", p)
    sd = unwrap_state_dict("MGLL checkpoint", raw["model"] if isinstance(raw, dict) and "model" in raw else raw, p)
    sd = to_custom_text(sd)
    mapped: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(their_prefix: str, our_prefix: str, fit=None):
        part = {k[len(their_prefix):]: v for k, v in sd.items() if k.startswith(their_prefix)}
        if not part:
            return
        used.update(their_prefix + k for k in part)
        if fit is not None:
            part = fit(part)
        mapped.update({our_prefix + k: v for k, v in part.items()})

    if isinstance(model.visual, OpenCLIPVisual):
        take("clip.visual.", "visual.net.", lambda part: model.visual.extract({"visual." + k: v for k, v in part.items()}))
    if isinstance(model.text, OpenCLIPText):
        take("clip.text.", "text.net.", lambda part: model.text.extract({"text." + k: v for k, v in part.items()}))
    if isinstance(model.text, HFText):
        take("text_model.model.", "text.model.")
        w = sd.get("text_model.projection_head_text.projection.weight")
        if w is not None:
            mapped["text.proj.weight"] = w
            used.add("text_model.projection_head_text.projection.weight")
    scale = _mgll_logit_scale(sd)
    if scale is not None:
        mapped["log_logit_scale"] = scale
        used.add("logit_scale")

    own = model.state_dict()
    report = LoadReport(f"MGLL checkpoint {p}")
    good = {}
    for k, v in mapped.items():
        if k not in own:
            report.unexpected.append(k)
        elif tuple(v.shape) != tuple(own[k].shape):
            report.mismatched.append(f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}")
        else:
            good[k] = v
    report.unexpected += sorted(k for k in sd if k not in used)
    report.matched = sorted(good)
    report.missing = sorted(k for k in own if k not in good and not k.endswith("num_batches_tracked"))
    if not good:
        raise ModelConfigError(
            f"{p}: no key matches this model (checkpoint keys: {_names(list(sd))}); the released MGLL model needs "
            f"image.name=open_clip image.model=ViT-L-14 and text.name=open_clip text.model=ViT-L-14 (clip_text) or "
            f"text.name=hf text.path=<Bio_ClinicalBERT folder> text.pooling=flair (bert), model.embed_dim=768"
        )
    if strict and (report.missing or report.mismatched):
        raise ModelConfigError(f"{report.summary()}; strict=True")
    model.load_state_dict(good, strict=False)
    (log.warning if report.mismatched else log.info)("loaded %s", report.summary())
    return report.as_dict()
