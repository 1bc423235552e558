"""``launcher.name=inline`` (default): the cells one after the other in this process."""

from __future__ import annotations

import logging
from pathlib import Path

from ..cell import execute
from ..grid import Cell
from .errors import LaunchResult
from .registry import register_launcher

log = logging.getLogger("bench.launch")


@register_launcher("inline", {}, "the cells one after the other in this process (default)")
def run_inline(cells: list[Cell], root: Path, opts: dict) -> LaunchResult:
    """Run the cells one after the other in this process."""
    states = {}
    for i, cell in enumerate(cells, 1):
        log.info("[%d/%d] cell %s: %s", i, len(cells), cell.id, cell.label)
        states[cell.id] = execute(cell.config, root / cell.id)  # claims the cell: state read again, run once
        log.info("[%d/%d] cell %s: %s", i, len(cells), cell.id, states[cell.id])
    return LaunchResult(states)
