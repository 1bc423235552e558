"""Check a grid before running it: every distinct data, objective and task configuration is built once,
so a bad option or bad data stops the run with exit status 2 and the full list of problems, instead of
failing cell after cell (or inside a cluster job, hours later).
"""

from __future__ import annotations

import json
import logging

from .cell import build_objective, parse_task
from .config import to_container
from .errors import ConfigError
from .grid import Cell

log = logging.getLogger(__name__)


class PreflightError(ConfigError):
    """A configuration or data problem found before running; ``str()`` lists every problem."""


def _key(node) -> str:
    return json.dumps(to_container(node), sort_keys=True, default=str)


def check(cells: list[Cell]) -> None:
    import tasks

    from .data import build_dataset

    problems: list[str] = []
    seen_data: dict[str, object] = {}
    seen_obj: set[str] = set()
    seen_task: set[str] = set()
    for cell in cells:
        cfg = cell.config
        k = _key(cfg.data)
        if k not in seen_data:
            try:
                seen_data[k] = build_dataset(cfg.data)
            except ValueError as e:  # DataConfigError, DataValidationError, bad options
                seen_data[k] = None
                problems.append(f"data ({cell.label}, cell {cell.id}): {e}")
        k = _key(cfg.objective)
        if k not in seen_obj:
            seen_obj.add(k)
            try:
                objective = build_objective(cfg)
                data = seen_data.get(_key(cfg.data))
                if data is not None:
                    used = objective.levels_used(list(data.levels))
                    absent = [g for g in used if g not in data.levels]
                    if absent:
                        raise ValueError(f"objective uses level(s) {absent} absent from the data (levels {list(data.levels)})")
            except (ValueError, KeyError) as e:
                problems.append(f"objective ({cell.label}, cell {cell.id}): {e}")
        for entry in cfg.tasks:
            k = _key(entry) if not isinstance(entry, str) else entry
            if k in seen_task:
                continue
            seen_task.add(k)
            try:
                _, name, options = parse_task(to_container(entry) if not isinstance(entry, str) else entry)
                tasks.build(name, **options)
            except (ValueError, KeyError) as e:
                problems.append(f"tasks entry {to_container(entry) if not isinstance(entry, str) else entry!r}: {e}")
    if problems:
        raise PreflightError(f"{len(problems)} problem(s) found before running:\n- " + "\n- ".join(problems))
