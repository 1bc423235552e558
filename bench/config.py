"""Run configuration: the typed defaults, grid files, ``key=value`` overrides, their checks and merging.

A run config is an OmegaConf tree built from the schema in :mod:`bench.schema` (``OmegaConf.structured``):
every key has a type, a default and a help line there. Each *part* of a config (a grid's ``fixed``
settings, an axis value, the command line) is checked with :func:`check_part` before it is merged, with the
rules of :mod:`bench.options` (one boolean rule, one number rule, unknown keys named with close matches);
the error names where the part came from, the key, the value and what is allowed.

Open sections (``data``, ``image``, ``text``, ``objective``, ``launcher``) hold the options of the builder
their selector picks (``data.format``, ``*.name``); the schema checks their shared keys, the builder the rest
(at preflight, before any cell runs). Two conveniences:

- ``launcher=slurm`` means ``launcher.name=slurm``; likewise ``objective=mgll``, ``image=resnet18``,
  ``text=minilm`` and ``data=jsonl`` (``data.format``);
- a part that *changes* a selector starts that section afresh: the builder-specific options set below it
  (for the previous objective, format or tower) are dropped, the section's shared keys are kept. So
  ``objective.name=mgll`` on the command line of a grid whose rows set ``{name: clip, level: disease}`` runs
  MGLL with its defaults rather than failing on CLIP's ``level``. What was dropped is logged.

Keys whose schema entry says ``identity: False`` (where results go, how cells are launched, the report
layout, ``train.checkpoint_every_steps``, ...) are left out of the cell id (:data:`NON_IDENTITY_KEYS`).
"""

from __future__ import annotations

import logging
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ConfigError, did_you_mean
from .options import check_known, coerce
from .yamlio import load as load_yaml
from .yamlio import parse_value
from .schema import OPEN_SECTIONS, SELECTORS, RunConfig, check_shared, non_identity_keys, section_classes

__all__ = [
    "DEFAULTS",
    "GRIDS_DIR",
    "NON_IDENTITY_KEYS",
    "OPEN_SECTIONS",
    "ConfigError",
    "check_part",
    "defaults",
    "grid_path",
    "load_grid_file",
    "merge",
    "parse_overrides",
    "to_container",
]

log = logging.getLogger(__name__)

GRIDS_DIR = Path(__file__).parent / "grids"

#: the defaults as a plain dict (generated from the schema)
DEFAULTS: dict[str, Any] = OmegaConf.to_container(OmegaConf.structured(RunConfig))  # type: ignore[assignment]
#: keys that do not change what a cell computes (dotted keys name one key inside a section)
NON_IDENTITY_KEYS = non_identity_keys()

_TOP_HINTS = typing.get_type_hints(RunConfig)
_TOP_FIELDS = {f.name: f for f in fields(RunConfig)}
_SECTIONS = section_classes()
_TYPED_SECTIONS = {k: v for k, v in _SECTIONS.items() if k not in OPEN_SECTIONS}
_dropped_logged: set[tuple] = set()


def defaults() -> DictConfig:
    """The typed default config (struct mode: unknown keys outside the open sections are refused)."""
    return OmegaConf.structured(RunConfig)


def _plain(part: Any) -> Any:
    if isinstance(part, (DictConfig, ListConfig)):
        return OmegaConf.to_container(part, resolve=True)
    return part


def check_part(part: Any, where: str) -> dict:
    """One config part (a mapping of keys, possibly nested) checked against the schema and returned as a
    plain dict with values converted (``"3"`` -> 3 for an integer key). Raises :class:`ConfigError` naming
    ``where``, the key, the value and what is allowed."""
    part = _plain(part)
    if part is None:
        return {}
    if not isinstance(part, dict):
        raise ConfigError(f"{where}: expected a mapping of run-config keys, got {part!r}")
    out: dict[str, Any] = {}
    try:
        check_known(part, list(_TOP_FIELDS), owner="the run config")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}", key=e.key) from None
    for key, value in part.items():
        if key in OPEN_SECTIONS:
            out[key] = _check_open(key, value, where)
        elif key in _TYPED_SECTIONS:
            out[key] = _check_typed(key, value, where)
        elif key == "tasks":
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{where}: tasks={value!r} must be a list of task entries (TASK/TARGET or a mapping)",
                                  key="tasks", value=value)
            out[key] = list(value)
        else:
            f = _TOP_FIELDS[key]
            try:
                out[key] = coerce(key, value, _TOP_HINTS[key], f.metadata)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}", key=e.key, value=e.value) from None
    return out


def _check_typed(section: str, value: Any, where: str) -> dict:
    cls = _TYPED_SECTIONS[section]
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {section}={value!r} must be a mapping of {section}.* keys", key=section, value=value)
    hints = typing.get_type_hints(cls)
    flds = {f.name: f for f in fields(cls)}
    try:
        check_known(value, list(flds), prefix=f"{section}.", owner=f"the {section} section")
        return {k: coerce(f"{section}.{k}", v, hints[k], flds[k].metadata) for k, v in value.items()}
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}", key=e.key, value=e.value) from None


def _check_open(section: str, value: Any, where: str) -> dict:
    if isinstance(value, str):  # shorthand: launcher=slurm -> launcher.name=slurm
        value = {SELECTORS[section]: value}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}: {section}={value!r} must be a mapping of {section}.* keys, or a {section}.{SELECTORS[section]} "
            "name", key=section, value=value)
    return check_shared(section, value, where)


def merge(*parts: DictConfig | dict | None) -> DictConfig:
    """Merge config parts over the defaults (later parts win; lists are replaced, not merged), each part
    checked with :func:`check_part` first. A part that changes an open section's selector starts that
    section afresh (see the module docstring)."""
    cfg = defaults()
    for i, part in enumerate(parts):
        if part is None:
            continue
        clean = check_part(part, f"config part {i + 1}") if not isinstance(part, _Checked) else dict(part)
        cfg = _merge_one(cfg, clean)
    return cfg


class _Checked(dict):
    """A part already checked by :func:`check_part` (so :func:`merge` does not check it twice)."""


def checked(part: Any, where: str) -> "_Checked":
    return _Checked(check_part(part, where))


def _merge_one(cfg: DictConfig, part: dict) -> DictConfig:
    for section, sel in SELECTORS.items():
        new = part.get(section)
        if not isinstance(new, dict) or sel not in new:
            continue
        old = OmegaConf.to_container(cfg[section], resolve=True)
        if old.get(sel) == new[sel]:
            continue
        shared = {f.name for f in fields(_SECTIONS[section])}
        kept = {k: v for k, v in old.items() if k in shared and k != sel}
        dropped = sorted(k for k in old if k not in shared)
        if dropped:
            note = (section, old.get(sel), new[sel], tuple(dropped))
            if note not in _dropped_logged:
                _dropped_logged.add(note)
                log.info("%s.%s=%s replaces %s: dropped %s", section, sel, new[sel], old.get(sel),
                         ", ".join(f"{section}.{k}" for k in dropped))
        cfg[section] = kept  # the section is an untyped dict: replace it, then merge the part below
    return OmegaConf.merge(cfg, part)  # type: ignore[return-value]


def _shorthand(arg: str) -> str:
    key, _, value = arg.partition("=")
    if key in SELECTORS and value and not value.lstrip().startswith(("{", "[")):
        return f"{key}.{SELECTORS[key]}={value}"
    return arg


def parse_overrides(args: Iterable[str]) -> DictConfig:
    """``["a.b=1", "objective.weights=[0.5,1,1]", "launcher=slurm"]`` -> a config tree (YAML values);
    ``SECTION=NAME`` is the shorthand for the section's selector (``launcher.name=slurm``)."""
    args = list(args)
    for a in args:
        if "=" not in a or a.startswith("="):
            raise ConfigError(f"command line: {a!r} is not of the form key=value (see --help)")
    tree: dict[str, Any] = {}
    for arg in args:
        dotted, _, raw = _shorthand(arg).partition("=")
        parts = dotted.strip().split(".")
        if not all(parts):
            raise ConfigError(f"command line: {arg!r}: {dotted!r} is not a dotted key (see --help)")
        node = tree
        for i, p in enumerate(parts[:-1]):
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"command line: {arg!r} sets a key inside {'.'.join(parts[:i + 1])}, which is also "
                                  f"given a value ({nxt!r})")
            node = nxt
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"command line: {arg!r} gives a value to {dotted}, whose keys are also set")
        node[parts[-1]] = parse_value(raw)  # YAML 1.2 scalars: yes stays a string (bench.yamlio)
    return OmegaConf.create(tree)


def grid_path(name: str) -> Path:
    """``smoke`` -> the packaged ``bench/grids/smoke.yaml``; a path to a YAML file is used as is."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.is_file():  # a folder named like a grid (./objectives) is not a grid file
        if not p.exists():
            raise ConfigError(f"grid file {p} does not exist")
        return p
    packaged = GRIDS_DIR / f"{name}.yaml"
    if not packaged.exists():
        names = sorted(q.stem for q in GRIDS_DIR.glob("*.yaml"))
        raise ConfigError(f"grid={name!r} is unknown{did_you_mean(name, names)}; packaged grids: {names}, "
                          "or give a path to a YAML file")
    return packaged


GRID_KEYS = ("name", "description", "fixed", "axes", "seeds", "report")


def load_grid_file(path: Path) -> dict:
    try:
        raw = load_yaml(Path(path).read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the grid file: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a grid file must be a mapping with keys {list(GRID_KEYS)}")
    try:
        check_known(raw, GRID_KEYS, owner=f"a grid file ({path})")
    except ConfigError as e:
        raise ConfigError(f"{path}: unknown grid key: {e}") from None
    raw.setdefault("name", path.stem)
    if not isinstance(raw["name"], str) or not raw["name"] or "/" in raw["name"]:
        raise ConfigError(f"{path}: name={raw['name']!r} must be a non-empty name without '/' (it names the results folder)")
    return raw


def to_container(cfg: DictConfig | ListConfig) -> Any:
    return OmegaConf.to_container(cfg, resolve=True)
