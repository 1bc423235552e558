"""Freezing a tower: ``image.freeze`` / ``text.freeze`` = false (train all), true (freeze all) or k (train only the
last k blocks and the layers after them). A tower says what its blocks are with ``freeze_layout()``; a bare timm
model uses timm's parameter groups; anything else its longest ``ModuleList``.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from torch import nn

from ..errors import ModelConfigError

log = logging.getLogger("bench.models")


def parse_freeze(key: str, value: Any) -> bool | int:
    """``false`` -> nothing frozen, ``true`` -> whole tower frozen, integer ``k >= 0`` -> all but the last k
    blocks frozen (the layers after the blocks, e.g. final norm and projection, stay trainable)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "false", "yes", "no"):
            return low in ("true", "yes")
        if low.lstrip("-").isdigit():
            value = int(low)
    if isinstance(value, int) and value >= 0:
        return int(value)
    raise ModelConfigError(f"{key}={value!r} must be true, false or a number k >= 0 (train only the last k blocks)")


def freeze_layout(module: nn.Module) -> tuple[list[list[str]], list[str]]:
    """``(blocks, head)``: the parameter names of each block in order, and of the layers after the blocks.

    Towers define ``freeze_layout()``; a bare timm model uses timm's fine-grained parameter groups (first group =
    stem, the rest = blocks, with trailing head/norm-only groups counted as head)."""
    if hasattr(module, "freeze_layout"):
        return module.freeze_layout()
    if hasattr(module, "group_matcher"):
        return timm_layout(module)
    lists = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise ModelConfigError(f"{type(module).__name__}: no blocks found; freeze it whole (freeze=true) or not at all")
    name, ml = max(lists, key=lambda x: len(x[1]))
    return module_list_blocks(ml, name + "."), []


def module_list_blocks(ml: Iterable[nn.Module], prefix: str) -> list[list[str]]:
    """Parameter names (prefixed) of each child of a ModuleList / Sequential."""
    return [[f"{prefix}{i}.{n}" for n, _ in m.named_parameters()] for i, m in enumerate(ml)]


def timm_layout(model: nn.Module, prefix: str = "") -> tuple[list[list[str]], list[str]]:
    from timm.models import group_parameters

    groups = [list(v) for _, v in sorted(group_parameters(model, model.group_matcher(coarse=False)).items())]
    blocks = groups[1:]
    head_like = ("head", "norm", "fc_norm", "fc", "classifier", "global_pool", "pre_logits", "final_conv", "conv_head", "bn2")
    while len(blocks) > 1 and all(n.split(".")[0] in head_like for n in blocks[-1]):
        blocks.pop()
    in_groups = {n for g in groups[:1] + blocks for n in g}
    head = [n for n, _ in model.named_parameters() if n not in in_groups]
    return [[prefix + n for n in b] for b in blocks], [prefix + n for n in head]


def apply_freeze(module: nn.Module, freeze: bool | int, key: str) -> int:
    """Set ``requires_grad=False`` on the frozen parameters of ``module``; returns how many tensors froze."""
    if freeze is False:
        return 0
    params = dict(module.named_parameters())
    if freeze is True:
        trainable: set[str] = set()
    else:
        blocks, head = freeze_layout(module)
        k = int(freeze)
        if k > len(blocks):
            raise ModelConfigError(f"{key}={k}: the tower has only {len(blocks)} blocks (use true to freeze it whole)")
        trainable = set(head)
        for b in blocks[len(blocks) - k:] if k else []:
            trainable.update(b)
    n = 0
    for name, p in params.items():
        if name not in trainable:
            p.requires_grad_(False)
            n += 1
    log.info("%s=%s: %d of %d parameter tensors frozen", key, freeze, n, len(params))
    return n
