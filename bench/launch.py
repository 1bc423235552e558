"""Launchers: how a list of cells gets executed. ``launcher.name=inline`` runs them in this process.

Every launcher ends up calling :func:`bench.cell.execute` once per cell with the cell's resolved config
and folder, so the outcome is recorded the same way whatever runs it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from .cell import execute
from .grid import Cell

log = logging.getLogger(__name__)

LAUNCHERS: dict[str, Callable[..., dict[str, str]]] = {}


def register_launcher(name: str):
    def deco(fn):
        LAUNCHERS[name] = fn
        return fn

    return deco


@register_launcher("inline")
def run_inline(cells: list[Cell], root: Path, launcher_cfg: DictConfig) -> dict[str, str]:
    """Run the cells one after the other in this process; returns cell id -> final state."""
    extra = sorted(set(launcher_cfg) - {"name"})
    if extra:
        raise ValueError(f"launcher.name=inline takes no options; got {extra}")
    states = {}
    for i, cell in enumerate(cells, 1):
        log.info("[%d/%d] cell %s: %s", i, len(cells), cell.id, cell.label)
        states[cell.id] = execute(cell.config, root / cell.id)
        log.info("[%d/%d] cell %s: %s", i, len(cells), cell.id, states[cell.id])
    return states
