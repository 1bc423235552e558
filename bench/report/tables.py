"""Tables: rows of cells grouped over seeds, mean +- std, best / second-best marks.

Rows. The ``rows`` column (default ``label``; any config key such as ``objective.name`` works) names the
rows. When cells that share a row value differ in another identity key of their config (anything but the
seed and the keys that do not change what a cell computes: label, results_dir, launcher, report, ...) — say
``data.missing_rate``, or a task's ``label_fraction`` (column ``label_fraction:<task key>``) — that key is
added to the row key, so a row only ever averages over seeds of one configuration. Rows are ordered
baseline first, then by their values.

Cells. Mean and sample standard deviation (``ddof=1``) over the seeds of the row, and the seed count ``n``;
a cell with no value (only with ``allow_missing=true``) is an em dash. A NaN metric value is shown as NaN.

Marks (the MGLL paper's convention). Per column, the best value is bold and the second best underlined,
using the column's direction (``metrics.direction``: higher is better for AUC/mAP/ACC/F1/recall, lower for
loss/time/memory; columns without a direction are not marked). Values are compared as displayed (rounded),
and ranks are dense: every row tied for the best value is bold, every row with the next distinct value is
underlined (so a tie for best still leaves an underlined second). Fewer than two rows with a value: no marks.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..schema import non_identity_keys
from .load import CFG, LABEL_FRACTION, TERMS, MissingCell, ReportError, Results
from .metrics import ColumnSpec, decimals_for

log = logging.getLogger(__name__)

BEST, SECOND = "best", "second"
CHECK = "\u2713"
EM_DASH = "\u2014"

#: config keys that never split a row: the seed and the schema's keys that do not change what a cell computes
#: (``bench.schema.non_identity_keys``: label, results_dir, launcher, report, train.checkpoint_every_steps, ...)
NOT_ROW_KEYS = ("seed", *non_identity_keys())


def is_row_key_candidate(key: str) -> bool:
    """Whether config key ``key`` (dotted) may split a row: not the seed nor a non-identity key or inside one."""
    return not any(key == k or key.startswith(k + ".") for k in NOT_ROW_KEYS)


# -- statistics of one table cell ----------------------------------------------------------------------------
@dataclass
class Stat:
    """The values of one row x column: ``values`` maps seed -> value (done cells having the metric)."""

    values: dict[Any, float] = field(default_factory=dict)
    missing: list[MissingCell] = field(default_factory=list)
    mark: str = ""
    sig: str = ""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        if not self.values:
            return None
        v = np.array(list(self.values.values()), dtype=float)
        return float(v.mean()) if np.all(np.isfinite(v)) else math.nan

    @property
    def std(self) -> float | None:
        if len(self.values) < 2:
            return None
        v = np.array(list(self.values.values()), dtype=float)
        return float(v.std(ddof=1)) if np.all(np.isfinite(v)) else math.nan


@dataclass
class Row:
    """One table row: ``key`` (values of the row-key columns), ``labels`` (the descriptive cells shown before
    the metrics), ``stats`` (column key -> Stat), ``cells`` (the cell ids aggregated)."""

    key: tuple
    labels: list[str]
    stats: dict[str, Stat]
    cells: list[str]


@dataclass
class Table:
    """A table ready to render as Markdown, LaTeX or CSV."""

    name: str
    title: str
    caption: str
    index: list[str]
    columns: list[ColumnSpec]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    decimals: dict[str, int] = field(default_factory=dict)
    key_count: int | None = None  # how many of ``index`` are row-key columns (the rest: descriptive)

    def seed_counts(self) -> set[int]:
        return {s.n for r in self.rows for s in r.stats.values() if s.n}

    def fmt(self, col: ColumnSpec, value: float | None) -> str:
        if value is None:
            return EM_DASH
        if not math.isfinite(value):
            return "NaN"
        return f"{value * col.scale:.{self.decimals.get(col.key, 2)}f}"

    def rounded(self, col: ColumnSpec, stat: Stat) -> float | None:
        m = stat.mean
        if m is None or not math.isfinite(m):
            return None
        return round(m * col.scale, self.decimals.get(col.key, 2))


# -- rows -----------------------------------------------------------------------------------------------------
def resolve_column(frame: pd.DataFrame, name: str, what: str = "rows") -> str:
    """``label`` -> ``label``; ``objective.name`` -> ``cfg.objective.name``; else a ReportError naming close matches."""
    if name in frame.columns:
        return name
    if CFG + name in frame.columns:
        return CFG + name
    import difflib

    names = sorted({c[len(CFG):] if c.startswith(CFG) else c for c in frame.columns})
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ReportError(f"{what}={name!r} is not a config key or column of the results{hint}")


def display_name(column: str) -> str:
    return column[len(CFG):] if column.startswith(CFG) else column


def _tasks_without_label_fraction(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        entries = json.loads(value)
    except ValueError:
        return value
    if not isinstance(entries, list):
        return value
    out = [{k: v for k, v in e.items() if k != "label_fraction"} if isinstance(e, dict) else e for e in entries]
    return json.dumps(out, sort_keys=True)


def _natural(v: Any) -> tuple:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return (2, "")
    if isinstance(v, (int, float, np.integer, np.floating)):
        return (0, float(v), "")
    return (1, 0.0, [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(v))])


def fmt_key_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "default"
    if isinstance(v, float) and v.is_integer():
        return str(v)
    return str(v)


@dataclass
class Grouping:
    """The rows of every table: ``rows_col`` (the requested row column), ``key_cols`` (it plus the config keys
    that vary among its cells), and the ordered groups (row key -> that row's cells, all states)."""

    rows_col: str
    key_cols: list[str]
    groups: list[tuple[tuple, pd.DataFrame]]
    baseline_value: Any = None

    @property
    def headers(self) -> list[str]:
        return [display_name(c) for c in self.key_cols]

    def labels(self, key: tuple) -> list[str]:
        return [fmt_key_value(v) for v in key]

    def row_name(self, key: tuple, exclude: Iterable[str] = ()) -> str:
        """``MGLL`` or ``MGLL (data.missing_rate=0.3)``; key columns in ``exclude`` are left out."""
        first = fmt_key_value(key[0])
        rest = [f"{display_name(c)}={fmt_key_value(v)}" for c, v in zip(self.key_cols[1:], key[1:])
                if c not in set(exclude)]
        return f"{first} ({', '.join(rest)})" if rest else first


def group_rows(results: Results, rows: str, baseline: Any = None) -> Grouping:
    """Group every cell (any state) into rows; see the module docstring."""
    frame = results.frame.copy()
    rows_col = resolve_column(frame, rows)
    candidates = []
    for c in frame.columns:
        if not c.startswith(CFG) or c == rows_col:
            continue
        if not is_row_key_candidate(c[len(CFG):]):
            continue
        candidates.append(c)
    if CFG + "tasks" in frame.columns:
        frame[CFG + "tasks"] = frame[CFG + "tasks"].map(_tasks_without_label_fraction)
    candidates += [c for c in frame.columns if c.startswith(LABEL_FRACTION)]
    key_cols = [rows_col]
    for c in candidates:
        values = frame[c].map(lambda v: "\0nan" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
        if (values.groupby(frame[rows_col], dropna=False).nunique() > 1).any():
            key_cols.append(c)
    if len(key_cols) > 1:
        log.info("rows %s: cells of one row differ in %s; added to the row key", display_name(rows_col),
                 ", ".join(display_name(c) for c in key_cols[1:]))
    groups = []
    for key, sub in frame.groupby(key_cols, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        key = tuple(None if (isinstance(k, float) and math.isnan(k)) else k for k in key)
        groups.append((key, sub))
    baseline_value = match_baseline([k for k, _ in groups], baseline)

    def order(item):
        key = item[0]
        return (0 if baseline_value is not None and key[0] == baseline_value else 1, [_natural(v) for v in key])

    groups.sort(key=order)
    return Grouping(rows_col=rows_col, key_cols=key_cols, groups=groups, baseline_value=baseline_value)


def match_baseline(keys: Iterable[tuple], baseline: Any) -> Any:
    """The row value equal to ``baseline`` (exact, else as a string ignoring case), or None."""
    if baseline is None:
        return None
    values = [k[0] for k in keys]
    for v in values:
        if v == baseline:
            return v
    for v in values:
        if str(v).lower() == str(baseline).lower():
            return v
    return None


# -- statistics -----------------------------------------------------------------------------------------------
def stat_for(results: Results, cells: pd.DataFrame, key: str) -> Stat:
    """Values over the done cells of a row for column ``key``; cells lacking it are listed as missing."""
    st = Stat()
    for idx in cells.index:
        if cells.at[idx, "state"] != "done":
            continue
        cell, label, seed = cells.at[idx, "cell"], str(cells.at[idx, "label"]), cells.at[idx, "seed"]
        if key not in results.metric_keys.get(cell, ()):
            st.missing.append(MissingCell(cell, label, "done", f"no {key} in metrics.json"))
            continue
        try:
            value = float(cells.at[idx, key])
        except (TypeError, ValueError):
            value = math.nan
        if seed in st.values:
            log.warning("%s: two cells of one row have seed %s; averaging them", key, seed)
            st.values[seed] = (st.values[seed] + value) / 2
        else:
            st.values[seed] = value
    return st


def build_table(results: Results, grouping: Grouping, columns: list[ColumnSpec], *, name: str, title: str,
                caption: str, select: Iterable[tuple] | None = None, extra: dict[tuple, list[str]] | None = None,
                extra_headers: list[str] | None = None, order: list[tuple] | None = None) -> Table:
    """A table over ``grouping``'s rows (or the ``select``ed / ``order``ed row keys) and ``columns``, with
    optional descriptive ``extra`` cells after the row key, then marks (see the module docstring)."""
    by_key = dict(grouping.groups)
    keys = order if order is not None else [k for k, _ in grouping.groups]
    if select is not None:
        wanted = set(select)
        keys = [k for k in keys if k in wanted]
    rows = []
    for key in keys:
        cells = by_key[key]
        stats = {c.key: stat_for(results, cells, c.key) for c in columns}
        labels = grouping.labels(key) + (extra.get(key, []) if extra else [])
        rows.append(Row(key=key, labels=labels, stats=stats, cells=list(cells["cell"])))
    table = Table(name=name, title=title, caption=caption, index=grouping.headers + (extra_headers or []),
                  columns=columns, rows=rows, key_count=len(grouping.key_cols))
    for c in columns:
        table.decimals[c.key] = decimals_for(c, [r.stats[c.key].mean for r in rows])
    apply_marks(table)
    return table


def apply_marks(table: Table) -> None:
    """Bold (best) and underline (second best) per column; ties share the mark (dense ranks on shown values)."""
    for col in table.columns:
        for r in table.rows:
            r.stats[col.key].mark = ""
        if not col.direction:
            continue
        shown = {i: table.rounded(col, r.stats[col.key]) for i, r in enumerate(table.rows)}
        shown = {i: v for i, v in shown.items() if v is not None}
        if len(shown) < 2:
            continue
        distinct = sorted(set(shown.values()), reverse=col.direction > 0)
        for i, v in shown.items():
            if v == distinct[0]:
                table.rows[i].stats[col.key].mark = BEST
            elif len(distinct) > 1 and v == distinct[1]:
                table.rows[i].stats[col.key].mark = SECOND


def missing_notes(table: Table, grouping: Grouping) -> list[str]:
    """One line per missing cell or metric of the table (for allow_missing=true)."""
    by_key = dict(grouping.groups)
    lines: list[str] = []
    seen = set()
    for r in table.rows:
        cells = by_key[r.key]
        for idx in cells.index:
            cell, state = cells.at[idx, "cell"], cells.at[idx, "state"]
            if state != "done" and cell not in seen:
                seen.add(cell)
                lines.append(f"{cell} ({cells.at[idx, 'label']}, seed {cells.at[idx, 'seed']}): {state}")
        for col in table.columns:
            for m in r.stats[col.key].missing:
                lines.append(f"{m.cell} ({m.label}): {m.detail}")
    return lines


# -- the ablation and granularity rows ------------------------------------------------------------------------
def _first(cells: pd.DataFrame, column: str) -> Any:
    vals = cells[column].dropna() if column in cells.columns else []
    return vals.iloc[0] if len(vals) else None


def ablation_rows(grouping: Grouping) -> tuple[list[tuple], dict[tuple, list[str]]]:
    """Row keys of the CLIP/MGLL-family rows (objectives whose recorded terms are among the paper's three and
    plain CLIP's; ``load.terms_used``) in the paper's Table 3 order, and their sCLIP / P / sKL check marks;
    empty when no row uses one of the three terms."""
    picked = []
    for key, cells in grouping.groups:
        flags = [cells[f"term.{t}"].dropna() for t in TERMS]
        if any(f.empty for f in flags):
            continue
        picked.append((key, [bool(f.iloc[0]) for f in flags]))
    if not any(any(flags) for _, flags in picked):
        return [], {}
    picked.sort(key=lambda p: (sum(p[1]), not p[1][1], not p[1][0], not p[1][2]))
    return [k for k, _ in picked], {k: [CHECK if f else "" for f in flags] for k, flags in picked}


def granularity_rows(grouping: Grouping) -> tuple[list[tuple], dict[tuple, list[str]]]:
    """Row keys of the objectives trained with at least two different numbers of text levels, ordered by
    objective then number of levels, with their (objective, number of levels, level names)."""
    info = []
    for key, cells in grouping.groups:
        n = _first(cells, "n_levels")
        if n is None or (isinstance(n, float) and math.isnan(n)):
            continue
        info.append((key, str(_first(cells, "objective")), int(n), str(_first(cells, "levels") or "")))
    counts: dict[str, set] = {}
    for _, obj, n, _ in info:
        counts.setdefault(obj, set()).add(n)
    keep = {obj for obj, ns in counts.items() if len(ns) > 1}
    info = [i for i in info if i[1] in keep]
    info.sort(key=lambda i: (i[1], i[2], i[3]))
    return [i[0] for i in info], {i[0]: [i[1], str(i[2]), i[3].replace(",", ", ")] for i in info}


COST_COLUMNS = (
    ("train/seconds_per_epoch", "time/epoch (s)", 1.0),
    ("peak_memory_mb", "peak memory (MB)", 1.0),
    ("train/objective_forward_s_per_step", "loss time (ms/step)", 1000.0),
)


def cost_columns(results: Results) -> tuple[list[ColumnSpec], list[str]]:
    """The cost columns present in at least one done cell, and the names of those absent everywhere."""
    present = set().union(*results.metric_keys.values()) if results.metric_keys else set()
    cols, absent = [], []
    for key, title, scale in COST_COLUMNS:
        if key in present:
            cols.append(ColumnSpec.for_metric(key, title=title, group="", short=title, scale=scale))
        else:
            absent.append(key)
    return cols, absent
