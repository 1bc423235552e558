"""Load every cell of a grid folder (``results/<grid>/<cell id>/``) into one pandas DataFrame.

One row per cell folder that has a ``config.yaml``, whatever its state (``store.cell_state``: done, failed,
corrupt, running, pending; only done cells' metrics are read). Columns:

- ``cell`` (the folder name), ``state``, ``label`` (the config's ``label``, else ``objective.name``),
  ``seed``, ``objective`` (``objective.name``);
- ``cfg.<dotted key>`` for every config value (lists and mappings as compact JSON strings);
- derived: ``label_fraction:<task key>`` (the task entry's ``label_fraction``; 1.0 for a linear probe
  without one), ``n_levels`` and ``levels`` (the text levels the objective trains on: ``objective.levels``,
  ``[objective.level]``, all of ``data.levels`` for the multi-level objectives, else the first data level),
  ``term.sCLIP`` / ``term.P`` / ``term.sKL`` (booleans for the CLIP/MGLL family, empty otherwise);
- every scalar of ``metrics.json`` under its own flat key (``linear_probe/disease_multilabel/auc``,
  ``train/seconds_per_epoch``, ``peak_memory_mb``, ...); ``versions`` as ``versions.<package>``.

Task keys come from the config's ``tasks`` list, exactly as the runner names them (``bench.cell.parse_task``):
``"linear_probe/disease_multilabel"`` or ``{name, target, key?, **options}`` -> ``key`` or ``name/target``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .. import store
from ..errors import ConfigError
from .keys import BUILTIN_TASKS, NOT_DATASETS, parse_metric_key

log = logging.getLogger(__name__)

CFG = "cfg."
#: prefix of the derived per-task label-fraction columns (``label_fraction:<task key>``, from the config)
LABEL_FRACTION = "label_fraction:"
#: the three MGLL loss terms, in the paper's Table 3 order
TERMS = ("sCLIP", "P", "sKL")
#: the paper's name of each loss term a cell records (``metrics.json`` ``objective.terms``): mgll's own terms and
#: the released code's (mgll_released)
PAPER_TERMS = {"sclip": "sCLIP", "softce": "sCLIP", "pointwise": "P", "bce": "P", "skl": "sKL", "kl_raw": "sKL"}
#: the term of plain CLIP, the ablation table's row with none of the three
BASELINE_TERM = "clip"
#: the key of the objective's record in metrics.json (written by bench.cell.objective_record)
OBJECTIVE_RECORD = "objective"

# -- only to read results written before cells recorded their objective (metrics.json key "objective") -------
#: objectives that train on every data level unless ``levels`` is given (the others use one level)
_LEGACY_MULTI_LEVEL = frozenset({"mgll", "mgll_released", "soft_clip", "unicl", "flair"})
_LEGACY_TERM_ALIASES = {
    "sclip": "sCLIP", "softce": "sCLIP", "soft_clip": "sCLIP",
    "pointwise": "P", "p": "P", "bce": "P",
    "skl": "sKL", "kl": "sKL", "kl_raw": "sKL",
}
_LEGACY_MGLL_FAMILY = frozenset({"clip", "mgll", "mgll_released"})


class ReportError(ConfigError):
    """A problem that stops the report (exit status 2 from the command line); the message says what to do."""


@dataclass(frozen=True)
class MissingCell:
    """A cell (or one metric of a done cell) that the tables need and do not have."""

    cell: str
    label: str
    state: str
    detail: str = ""

    def line(self) -> str:
        text = f"{self.cell}  {self.label}  {self.state}"
        return f"{text}  ({self.detail})" if self.detail else text


class MissingCellsError(ReportError):
    """Some cells are not done (or lack a metric); ``missing`` lists them."""

    def __init__(self, root: Path, missing: list[MissingCell]):
        self.missing = list(missing)
        lines = "\n".join(f"  {m.line()}" for m in self.missing)
        super().__init__(
            f"{root}: {len(self.missing)} cell(s) missing from the report (cell id, label, state):\n{lines}\n"
            "Finish or rerun them (python -m bench.run ... rerun_failed=true), or pass allow_missing=true to "
            "report without them (shown as an em dash and listed under each table)."
        )


@dataclass(frozen=True)
class TaskEntry:
    """One entry of a cell's ``tasks`` list: its metric prefix ``key``, ``base`` (name/target) and label fraction."""

    key: str
    name: str
    base: str
    label_fraction: float | None


def parse_task(entry: Any) -> TaskEntry:
    """Mirror of ``bench.cell.parse_task`` (kept here so the report does not import torch)."""
    if isinstance(entry, str):
        name = entry.split("/", 1)[0]
        return TaskEntry(entry, name, entry, 1.0 if name == "linear_probe" else None)
    entry = dict(entry)
    name = str(entry.get("name", "?"))
    base = f"{name}/{entry['target']}" if "target" in entry else name
    key = entry.get("key") or base
    lf = entry.get("label_fraction", 1.0 if name == "linear_probe" else None)
    if isinstance(lf, (list, tuple)):  # several fractions: each is reported under its own lf<x> key
        lf = None
    return TaskEntry(str(key), name, base, None if lf is None else float(lf))


@dataclass
class Results:
    """Everything loaded from a grid folder.

    ``frame``: one row per cell (all states; see the module docstring). ``tasks``: task key -> its
    ``TaskEntry`` (first seen), in config order. ``metric_keys``: cell id -> the keys its metrics.json has.
    """

    root: Path
    frame: pd.DataFrame
    tasks: dict[str, TaskEntry] = field(default_factory=dict)
    metric_keys: dict[str, frozenset] = field(default_factory=dict)

    @property
    def done(self) -> pd.DataFrame:
        return self.frame[self.frame["state"] == store.DONE]

    def not_done(self) -> list[MissingCell]:
        """The cells that are not done, as ``MissingCell`` (id, label, state)."""
        nd = self.frame[self.frame["state"] != store.DONE]
        return [MissingCell(r.cell, str(r.label), r.state) for r in nd.itertuples()]

    def cell_dir(self, cell: str) -> Path:
        return self.root / cell


def _cell_value(v: Any) -> Any:
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return v


def levels_used(cfg: dict, record: dict | None = None) -> list[str] | None:
    """The text levels a cell's objective trains on: the cell's record (``metrics.json`` ``objective.levels``)
    when it has one, else guessed from the config (results written before cells recorded it); None when
    neither says."""
    if record and isinstance(record.get("levels"), list):
        return [str(x) for x in record["levels"]]
    # fallback, only to read results written before this version: guess from the config
    obj = cfg.get("objective") or {}
    data_levels = (cfg.get("data") or {}).get("levels")
    if obj.get("levels"):
        return [str(x) for x in obj["levels"]]
    if obj.get("level"):
        return [str(obj["level"])]
    if obj.get("name") in _LEGACY_MULTI_LEVEL:
        return [str(x) for x in data_levels] if data_levels else None
    return [str(data_levels[0])] if data_levels else None


def terms_used(cfg: dict, record: dict | None = None) -> dict[str, bool] | None:
    """Which of sCLIP, P, sKL an objective of the CLIP/MGLL family uses, or None for another objective.

    From the cell's record (``metrics.json`` ``objective.terms``): an objective whose terms are all among
    ``PAPER_TERMS`` and ``clip`` belongs to the family (plain ``clip``: none of the three). Results written
    before cells recorded it: guessed from the config (``clip``: none; ``mgll``: its ``terms``, default all
    three; ``mgll_released``: all three)."""
    if record and isinstance(record.get("terms"), list):
        names = {str(x) for x in record["terms"]}
        if not names or not names <= set(PAPER_TERMS) | {BASELINE_TERM}:
            return None
        used = {PAPER_TERMS[x] for x in names if x in PAPER_TERMS}
        return {t: t in used for t in TERMS}
    # fallback, only to read results written before this version: guess from the config
    obj = cfg.get("objective") or {}
    name = obj.get("name")
    if name not in _LEGACY_MGLL_FAMILY:
        return None
    if name == "clip":
        return dict.fromkeys(TERMS, False)
    terms = obj.get("terms")
    if terms is None:
        return dict.fromkeys(TERMS, True)
    used = {_LEGACY_TERM_ALIASES.get(str(x).lower(), str(x)) for x in terms}
    return {t: t in used for t in TERMS}


def objective_record(metrics: dict) -> dict | None:
    """The objective's record a cell wrote into metrics.json (name, options, levels, terms), or None."""
    record = metrics.get(OBJECTIVE_RECORD)
    return record if isinstance(record, dict) else None


def load_results(root: Path | str) -> Results:
    """Read every cell folder under ``root`` (see the module docstring). Raises ``ReportError`` when ``root``
    is not a folder, holds no cell, or a done cell's metrics.json cannot be read."""
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"{root} is not a results folder (expected results/<grid>/ with one folder per cell)")
    rows: list[dict] = []
    tasks: dict[str, TaskEntry] = {}
    metric_keys: dict[str, frozenset] = {}
    for cell_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        cfg_path = cell_dir / "config.yaml"
        if not cfg_path.exists():
            if cell_dir.name != "report" and any(cell_dir.iterdir()):
                log.warning("%s has no config.yaml; not a cell, skipped", cell_dir)
            continue
        try:
            cfg = yaml.safe_load(cfg_path.read_text()) or {}
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise ReportError(f"{cfg_path}: cannot read the cell's config: {e}; repair the cell with "
                              f"python -m bench.run ... {store.REPAIR_OPTION}") from e
        if not isinstance(cfg, dict):
            raise ReportError(f"{cfg_path}: the cell's config is not a mapping (a {type(cfg).__name__}); repair the "
                              f"cell with python -m bench.run ... {store.REPAIR_OPTION}")
        state = store.cell_state(cell_dir)
        metrics: dict[str, Any] | None = None
        if state == store.DONE:
            try:
                metrics = store.read_json(cell_dir / "metrics.json")
            except (OSError, ValueError) as e:
                raise ReportError(f"{cell_dir}: marked done but metrics.json cannot be read ({e})") from e
        record = objective_record(metrics or {})
        obj = cfg.get("objective") or {}
        label = cfg.get("label") or obj.get("name") or cell_dir.name
        levels = levels_used(cfg, record)
        row: dict[str, Any] = {
            "cell": cell_dir.name,
            "state": state,
            "label": str(label),
            "seed": cfg.get("seed"),
            "objective": (record or {}).get("name") or obj.get("name"),
            "n_levels": len(levels) if levels else math.nan,
            "levels": ",".join(levels) if levels else None,
            "terms": ",".join(str(x) for x in record["terms"]) if record and isinstance(record.get("terms"), list)
            else None,
        }
        terms = terms_used(cfg, record)
        for t in TERMS:
            row[f"term.{t}"] = None if terms is None else terms[t]
        flat = pd.json_normalize(cfg, sep=".").iloc[0].to_dict() if cfg else {}
        row.update({CFG + k: _cell_value(v) for k, v in flat.items()})
        for t in _task_entries(cfg, cfg_path):
            tasks.setdefault(t.key, t)
            if t.label_fraction is not None:
                row[LABEL_FRACTION + t.key] = t.label_fraction
        if metrics is not None:
            keys = set()
            for k, v in metrics.items():
                if k in ("seed", OBJECTIVE_RECORD):
                    continue
                if isinstance(v, dict):
                    row.update({f"{k}.{kk}": vv for kk, vv in v.items() if not isinstance(vv, (dict, list))})
                elif isinstance(v, bool):
                    row[k] = int(v)
                    keys.add(k)
                elif isinstance(v, (int, float, str)) or v is None:
                    row[k] = v
                    keys.add(k)
            metric_keys[cell_dir.name] = frozenset(keys)
        rows.append(row)
    if not rows:
        raise ReportError(f"{root}: no cell folders (a cell folder holds config.yaml; run python -m bench.run first)")
    frame = pd.DataFrame(rows)
    _add_metric_task_keys(tasks, metric_keys)
    return Results(root=root, frame=frame, tasks=tasks, metric_keys=metric_keys)


def _task_entries(cfg: dict, cfg_path: Path) -> list[TaskEntry]:
    """The task runs of a stored config, named as the cell names its metrics (``bench.suites.task_keys``: suite
    datasets, entries on their own dataset, label-fraction lists); entry by entry with :func:`parse_task` when
    the config cannot be planned (e.g. a suite file that has moved since)."""
    from ..suites import task_keys  # torch-free

    try:
        return [TaskEntry(k["key"], k["name"], k["base"], k["label_fraction"] if k["label_fraction"] is not None
                          else (1.0 if k["name"] == "linear_probe" else None)) for k in task_keys(cfg)]
    except (ConfigError, TypeError, ValueError, KeyError, OSError) as e:
        log.warning("%s: cannot plan the cell's tasks (%s); reading its tasks entries one by one", cfg_path, e)
    out = []
    for entry in cfg.get("tasks") or []:
        try:
            out.append(parse_task(entry))
        except (TypeError, ValueError, KeyError):
            log.warning("%s: cannot read tasks entry %r", cfg_path, entry)
    return out


def _add_metric_task_keys(tasks: dict[str, TaskEntry], metric_keys: dict[str, frozenset]) -> None:
    """Add the task keys that only the metrics name (a suite's datasets, ``<dataset>/<task>/<target>``, and
    label-fraction keys) to ``tasks``; a key naming a task in a shape ``keys.parse_metric_key`` does not know
    is added as it is (it shows in the generic table only) and logged."""
    names = {t.name for t in tasks.values()}
    for key in sorted(set().union(*metric_keys.values()) if metric_keys else ()):
        prefix = key.rsplit("/", 1)[0] if "/" in key else ""
        if not prefix or prefix in tasks:
            continue
        parsed = parse_metric_key(key, names)
        if parsed is not None:
            if parsed.dataset is not None or parsed.fraction is not None:
                # base: the key without its label-fraction segment, so that the fractions of one task line up
                base = "/".join(p for p in (parsed.dataset, parsed.task, parsed.target) if p)
                fraction = parsed.fraction
                if fraction is None and parsed.task in ("linear_probe", "finetune"):
                    fraction = 1.0  # no lf segment: every training label
                tasks[prefix] = TaskEntry(prefix, parsed.task, base, fraction)
            continue
        parts = key.split("/")
        if any(prefix.startswith(k + "/") for k in tasks):
            continue  # a task's own nested output (not a task key of its own)
        if parts[0] not in NOT_DATASETS and any(p in BUILTIN_TASKS | names for p in parts[:-1]):
            log.warning("metric %s: key shape not understood ([<dataset>/]<task>[/lf<fraction>]/<target>/<metric>); "
                        "shown in the generic table only", key)
            tasks[prefix] = TaskEntry(prefix, "?", prefix, None)


def task_metric_columns(results: Results) -> dict[str, list[str]]:
    """Task key -> its numeric metric columns in the frame (``<task key>/<metric>``), metrics in first-seen order.

    Task keys are those of the cells' ``tasks`` lists; when no cell lists tasks, any column ``a/b/metric``
    outside ``init/``, ``train/`` and ``cfg.`` counts.
    """
    frame = results.done
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) or frame[c].isna().all()]
    out: dict[str, list[str]] = {}
    keys = list(results.tasks)
    if not keys:
        keys = sorted({c.rsplit("/", 1)[0] for c in numeric if c.count("/") >= 2
                       and not c.startswith(("init/", "train/", CFG))})
    for key in keys:
        cols = [c for c in numeric if c.startswith(key + "/") and "/" not in c[len(key) + 1:]]
        out[key] = [c for c in cols if frame[c].notna().any()]
    return out
