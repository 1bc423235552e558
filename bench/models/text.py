"""Text towers: token tensors -> ``[B, embed_dim]``. Each tower owns its tokenizer (``tower.tokenize(texts)``)
and returns ONE tensor whose first dimension is the text index, which its ``forward`` accepts:

- ``tiny_transformer`` (default) and ``open_clip``: CLIP BPE token ids, LongTensor ``[B, L]``.
- ``hf`` (a local Hugging Face folder) and ``minilm``: in :mod:`bench.models.hf_text`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from torch import nn

from .common import (
    TEXT_TOWERS,
    ModelConfigError,
    _check_keys,
    _register,
    as_bool,
    best_prefix,
    load_matching,
    load_weights_enabled,
    local_path,
    read_state_dict,
    take_prefix,
)
from .freeze import module_list_blocks
from .image import open_clip_config, open_clip_tower

log = logging.getLogger("bench.models")


class Tokenizer:
    """open_clip's bundled CLIP BPE tokenizer (works offline) with a fixed context length."""

    def __init__(self, context_length: int = 32):
        from open_clip.tokenizer import SimpleTokenizer

        self.context_length = context_length
        self._tok = SimpleTokenizer(context_length=context_length)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return self._tok(list(texts), context_length=self.context_length)


def _ctx(cfg: dict, default: int | None) -> int | None:
    v = cfg.get("context_length", default)
    if v is None:
        return None
    if int(v) < 2:
        raise ModelConfigError(f"text.context_length={v} must be at least 2")
    return int(v)


# -- tiny transformer (default) -----------------------------------------------------------------------------
class _TinyText(nn.Module):
    """open_clip's causal ``TextTransformer`` at CPU size over the CLIP BPE vocabulary."""

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
        self._tokenizer: Tokenizer | None = None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """LongTensor ``[B, context_length]`` of CLIP BPE ids."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.context_length)
        return self._tokenizer(texts)

    def freeze_layout(self) -> tuple[list[list[str]], list[str]]:
        blocks = module_list_blocks(self.net.transformer.resblocks, "net.transformer.resblocks.")
        head = [f"net.{n}" for n, _ in self.net.named_parameters() if n.startswith(("ln_final", "text_projection"))]
        return blocks, head

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.net.set_grad_checkpointing(enable)


# -- options of the text towers (checked by _check_keys; documented by python -m bench.run --help text) -----
_CTX = {"help": "token positions (texts are cut to it)", "min": 2}


@dataclass
class TinyTextOptions:
    context_length: int = field(default=32, metadata=_CTX)
    width: int = field(default=128, metadata={"help": "transformer width", "min": 1})
    heads: int = field(default=4, metadata={"help": "attention heads", "min": 1})
    layers: int = field(default=2, metadata={"help": "transformer layers", "min": 1})


@dataclass
class OpenCLIPTextOptions:
    model: Optional[str] = field(default=None, metadata={"help": "open_clip model name (required), e.g. ViT-B-32"})
    pretrained: Any = field(default=None, metadata={"help": "a local weights file or folder (nothing is downloaded)"})
    strict: bool = field(default=True, metadata={"help": "every missing or unexpected key of the weights is an error"})
    quick_gelu: Optional[bool] = field(default=None, metadata={"help": "QuickGELU (default: the model config's)"})
    model_cfg: dict = field(default_factory=dict, metadata={"help": "overrides of the text config"})
    context_length: Optional[int] = field(default=None, metadata=_CTX)


@_register(TEXT_TOWERS, "tiny_transformer", options=TinyTextOptions)
def tiny_text(cfg: dict, embed_dim: int) -> nn.Module:
    """open_clip's causal ``TextTransformer`` at CPU size over the bundled CLIP BPE vocabulary:
    ``text.context_length`` (32), ``text.width`` (128), ``text.heads`` (4), ``text.layers`` (2)."""
    _check_keys("text", cfg, TinyTextOptions)
    return _TinyText(cfg, embed_dim)


# -- open_clip text -----------------------------------------------------------------------------------------
_TEXT_BASES = ("", "clip.", "module.", "model.", "module.clip.")
_OLD_TEXT_KEYS = ("text_projection", "positional_embedding", "token_embedding", "transformer", "ln_final")


def to_custom_text(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Move an old-format (OpenAI / plain ``CLIP``) text tower under ``text.``, for each wrapper prefix."""
    sd = dict(sd)
    for base in _TEXT_BASES:
        if base + "text_projection" in sd:
            moved = {}
            for k, v in sd.items():
                rest = k[len(base):] if k.startswith(base) else None
                if rest is not None and rest.split(".")[0] in _OLD_TEXT_KEYS and not rest.startswith("text."):
                    moved[base + "text." + rest] = v
                else:
                    moved[k] = v
            sd = moved
    return sd


class OpenCLIPText(nn.Module):
    """The text tower of an open_clip model config (causal transformer over the model's CLIP BPE tokenizer)
    with ``context_length`` positions + a bias-free projection when its output differs from ``embed_dim``."""

    def __init__(self, model_name: str, embed_dim: int, context_length: int | None, quick_gelu: bool | None = None,
                 overrides: dict | None = None):
        super().__init__()
        mcfg = open_clip_config("text", model_name)
        overrides = dict(overrides or {})
        out_dim = int(overrides.pop("embed_dim", mcfg["embed_dim"]))
        tcfg = dict(mcfg["text_cfg"])
        tcfg.update(overrides)
        if tcfg.get("hf_model_name") or tcfg.get("hf_tokenizer_name"):
            raise ModelConfigError(
                f"text.model={model_name!r}: its text tower/tokenizer is a Hugging Face model, which open_clip would "
                f"download; use text.name=hf text.path=/local/folder instead"
            )
        if context_length is not None:
            tcfg["context_length"] = int(context_length)
        qg = bool(mcfg.get("quick_gelu", False)) if quick_gelu is None else bool(quick_gelu)
        try:
            self.net = open_clip_tower("text", out_dim, tcfg, qg)
        except TypeError as e:
            raise ModelConfigError(f"text.model_cfg={overrides}: {e}") from e
        self.model_name = model_name
        self.context_length = int(tcfg["context_length"])
        self.output_dim = out_dim
        self.proj = nn.Linear(out_dim, embed_dim, bias=False) if out_dim != embed_dim else None
        self._tokenizer = None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        z = self.net(tokens)
        if isinstance(z, (tuple, list)):
            z = z[0]
        return self.proj(z) if self.proj is not None else z

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """LongTensor ``[B, context_length]`` from the model's own open_clip tokenizer."""
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer(self.model_name, context_length=self.context_length)
        return self._tokenizer(list(texts), context_length=self.context_length).long()

    def extract(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The text keys of a full CLIP / OpenAI / MGLL / bare text state dict; a longer position table is cut
        to ``context_length`` (the causal tower never attends past a text's end token)."""
        sd = to_custom_text(sd)
        prefix, _ = best_prefix(sd, self.net.state_dict().keys(), tuple(b + "text." for b in _TEXT_BASES) + ("",))
        out = take_prefix(sd, prefix)
        pe = out.get("positional_embedding")
        if pe is not None and pe.shape[0] != self.context_length:
            if pe.shape[0] < self.context_length:
                raise ModelConfigError(
                    f"text.context_length={self.context_length} exceeds the {pe.shape[0]} positions of the weights"
                )
            log.info("text.pretrained: position table cut from %d to %d positions", pe.shape[0], self.context_length)
            out["positional_embedding"] = pe[: self.context_length].clone()
        return out

    def freeze_layout(self) -> tuple[list[list[str]], list[str]]:
        blocks = module_list_blocks(self.net.transformer.resblocks, "net.transformer.resblocks.")
        head = [f"net.{n}" for n, _ in self.net.named_parameters() if n.startswith(("ln_final", "text_projection"))]
        return blocks, head + (["proj.weight"] if self.proj is not None else [])

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.net.set_grad_checkpointing(enable)


@_register(TEXT_TOWERS, "open_clip", options=OpenCLIPTextOptions)
def open_clip_text(cfg: dict, embed_dim: int) -> nn.Module:
    """The text tower of an open_clip model (``text.model=ViT-L-14``) with that model's tokenizer;
    ``text.context_length`` positions (the harness default is 32; the model's own is 77: set it to reproduce
    MGLL), ``text.pretrained=/path`` (full CLIP / OpenAI / MGLL state dict or bare text state dict; OpenAI
    TorchScript files too), ``text.quick_gelu``, ``text.model_cfg`` (text config overrides), ``text.strict``."""
    _check_keys("text", cfg, OpenCLIPTextOptions)
    qg = cfg.get("quick_gelu")
    tower = OpenCLIPText(str(cfg.get("model") or ""), embed_dim, _ctx(cfg, None),
                         None if qg is None else as_bool("text.quick_gelu", qg), dict(cfg.get("model_cfg") or {}))
    path = local_path("text.pretrained", cfg.get("pretrained"))
    if path is not None and load_weights_enabled():
        sd = tower.extract(read_state_dict("text.pretrained", path))
        load_matching(tower.net, sd, source=f"text.pretrained={path}", strict=as_bool("text.strict", cfg.get("strict", True)))
    return tower
