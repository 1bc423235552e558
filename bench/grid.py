"""Grid expansion: a grid file plus command-line overrides -> a list of cells.

A grid file (``bench/grids/NAME.yaml`` or any path) has

```yaml
name: ablation                  # default: the file name
fixed: {...}                    # settings every cell shares (any run-config keys)
axes:                           # each axis multiplies the cells (cartesian product) ...
  objective.target: [exact, jaccard]        # a product axis: a run-config key and its values
  run:                                      # ... except zip groups: a key that is not a run-config
    - {label: CLIP, objective: {name: clip}} #     key; each entry (a dict of settings) is one value,
    - {label: MGLL, objective: {name: mgll}} #     so the settings in an entry vary together
seeds: [0, 1, 2]                # shorthand for a product axis on ``seed``
report: {rows: label, baseline: CLIP}
```

Precedence, low to high: defaults < ``fixed`` < axis values < command-line overrides. A command-line
override of an axis key (or of a key inside it) replaces that axis by the single value given. Cells whose
resolved configs are identical are run once. A cell's id is a hash of its resolved config, leaving out the
keys that do not change what it computes (``label``, ``results_dir``, the launcher, ...), so it does not
depend on the cell's position in the grid nor on key order.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .schema import omitted_at_default

from .config import (
    DEFAULTS,
    NON_IDENTITY_KEYS,
    ConfigError,
    checked,
    grid_path,
    load_grid_file,
    merge,
    to_container,
)


@dataclass
class Cell:
    id: str
    config: DictConfig
    axes: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return str(self.config.label)


def identity(cfg: DictConfig | dict) -> dict:
    """The part of a resolved config that defines what a cell computes (``NON_IDENTITY_KEYS`` left out;
    a dotted entry such as ``train.checkpoint_every_steps`` drops that one key of its section)."""
    data = to_container(cfg) if isinstance(cfg, DictConfig) else copy.deepcopy(dict(cfg))
    out = {k: v for k, v in data.items() if k not in NON_IDENTITY_KEYS}
    for key in NON_IDENTITY_KEYS:
        if "." not in key:
            continue
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    for key, default in omitted_at_default().items():  # keys added later: absent at their default
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node and node[last] == default:
            node.pop(last)
    if out.get("eval_only") is True:  # nothing trains: the training options do not change what it computes
        out.pop("train", None)
    suite = (out.get("eval") or {}).get("suite")
    if suite:  # the suite's content, not only its name: an edited suite file makes new cells
        from .suites import suite_identity

        out["eval"]["suite"] = suite_identity(suite)
    return out


def cell_id(cfg: DictConfig | dict) -> str:
    blob = json.dumps(identity(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _nest(dotted: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def _is_config_key(key: str) -> bool:
    return key.split(".")[0] in DEFAULTS


def _overridden(axis_key: str, override_keys: list[str]) -> bool:
    return any(k == axis_key or k.startswith(axis_key + ".") or axis_key.startswith(k + ".") for k in override_keys)


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(node, (dict, DictConfig)):
        for k, v in node.items():
            key = prefix + str(k)
            out.append(key)
            out.extend(_flat_keys(v, key + "."))
    return out


def default_label(cfg: DictConfig) -> str:
    obj = to_container(cfg.objective)
    name = obj.pop("name", "?")
    if not obj:
        return str(name)
    opts = ",".join(f"{k}={v}" for k, v in sorted(obj.items()))
    return f"{name}({opts})"


def expand(grid: dict, overrides: DictConfig | None = None, where: str = "grid") -> list[Cell]:
    """Expand a loaded grid (see :func:`bench.config.load_grid_file`) and overrides into cells."""
    overrides = overrides if overrides is not None else OmegaConf.create({})
    fixed = checked(grid.get("fixed") or {}, f"{where}: fixed")
    override_keys = _flat_keys(overrides)

    axes: list[tuple[str, list[dict]]] = []  # (axis name, list of override dicts)
    for key, values in (grid.get("axes") or {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: axes.{key} must be a non-empty list of values")
        if _is_config_key(key):
            if _overridden(key, override_keys):
                continue
            parts = [checked(_nest(key, v), f"{where}: axes.{key}") for v in values]
        else:  # a zip group
            parts = []
            for i, entry in enumerate(values):
                if not isinstance(entry, dict):
                    raise ConfigError(
                        f"{where}: axes.{key}[{i}] must be a mapping of settings: {key!r} is not a run-config key, "
                        f"so it is a zip group whose entries vary together (a product axis needs a key such as "
                        f"'objective' or 'data.missing_rate')"
                    )
                parts.append(checked(entry, f"{where}: axes.{key}[{i}]"))
        axes.append((key, parts))
    seeds = grid.get("seeds")
    if seeds is not None and "seed" not in override_keys:
        if not isinstance(seeds, list) or not seeds:
            raise ConfigError(f"{where}: seeds must be a non-empty list of integers")
        axes.append(("seed", [checked({"seed": s}, f"{where}: seeds") for s in seeds]))

    overrides_c = checked(overrides, "command line")
    report = checked({"report": grid["report"]}, f"{where}: report") if grid.get("report") else None
    cells: list[Cell] = []
    seen: set[str] = set()
    for combo in itertools.product(*[parts for _, parts in axes]) if axes else [()]:
        cfg = merge(fixed, *combo, overrides_c)
        cfg.grid = grid.get("name", "grid")
        if report and "report" not in override_keys:
            cfg.report = OmegaConf.merge(cfg.report, report["report"])
        if cfg.label is None:
            cfg.label = default_label(cfg)
        cid = cell_id(cfg)
        if cid in seen:
            continue
        seen.add(cid)
        axis_values = {name: part for (name, _), part in zip(axes, combo)}
        cells.append(Cell(cid, cfg, axis_values))
    return cells


def load(grid: str, overrides: DictConfig | None = None) -> tuple[dict, list[Cell]]:
    path: Path = grid_path(grid)
    raw = load_grid_file(path)
    return raw, expand(raw, overrides, where=str(path))
