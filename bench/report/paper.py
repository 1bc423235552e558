"""The MGLL paper's main-table layout (paper Table 1): downstream datasets as column groups, objectives as
rows.

Columns. Every metric key of a suite dataset (``<dataset>/<task>/<target>/<metric>``, maybe with a
label-fraction segment ``lf<fraction>``; parsed by ``keys.parse_metric_key``) with task ``linear_probe`` (LP)
or ``finetune`` (FT) and metric ``auc``, ``acc`` or ``map``: per dataset (a column group; ``dataset (target)``
when a dataset has several targets) LP then FT, each AUC, ACC, mAP (in %). Then the **Average** group: per
(task, metric) the unweighted mean over the datasets, computed per cell (a cell lacking one of the datasets
has no average) and then averaged over seeds like any column. One table per label fraction (``paper`` for
all labels, ``paper_lf1pct`` for ``lf0.01``, ...).

The pretraining corpus's own keys (no dataset) and keys of any other shape are not part of this layout; they
stay in the generic main table. Rows, mean ± std over seeds, bold best and underlined second best per column
are those of every table (``tables``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .keys import MetricKey, fraction_text, parse_metric_key
from .load import Results
from .metrics import HIGHER, ColumnSpec
from .tables import Grouping, Table, build_table

PAPER_TASKS = {"linear_probe": "LP", "finetune": "FT"}
PAPER_METRICS = {"auc": "AUC", "acc": "ACC", "map": "mAP"}
AVERAGE = "Average"


@dataclass(frozen=True)
class _Col:
    parsed: MetricKey
    group: str


def paper_keys(results: Results) -> list[MetricKey]:
    """The metric keys of the done cells that belong to the layout (see the module docstring)."""
    names = {t.name for t in results.tasks.values()}
    present = set().union(*results.metric_keys.values()) if results.metric_keys else set()
    out = []
    for key in [c for c in results.frame.columns if c in present]:
        p = parse_metric_key(key, names)
        if p and p.dataset and p.target and p.task in PAPER_TASKS and p.metric in PAPER_METRICS:
            out.append(p)
    return out


def _fraction_name(fraction: float | None) -> str:
    return "paper" if fraction is None else "paper_lf" + fraction_text(fraction).replace("%", "pct").replace(".", "_")


def _average_key(fraction: float | None, task: str, metric: str) -> str:
    lf = "" if fraction is None else f"/lf{fraction:g}"
    return f"{AVERAGE.lower()}/{task}{lf}/{metric}"


def paper_tables(results: Results, grouping: Grouping, *, stat_text: str, marks_text: str) -> list[Table]:
    """One table per label fraction (none when no suite dataset has an LP/FT AUC/ACC/mAP metric)."""
    keys = paper_keys(results)
    tables = []
    for fraction in sorted({k.fraction for k in keys}, key=lambda f: (f is not None, f or 0.0)):
        chosen = [k for k in keys if k.fraction == fraction]
        targets: dict[str, list[str]] = {}
        for k in chosen:
            targets.setdefault(k.dataset, [])
            if k.target not in targets[k.dataset]:
                targets[k.dataset].append(k.target)
        groups: dict[str, list[MetricKey]] = {}
        for dataset, ts in targets.items():
            for t in ts:
                name = dataset if len(ts) == 1 else f"{dataset} ({t})"
                groups[name] = [k for k in chosen if k.dataset == dataset and k.target == t]
        columns: list[ColumnSpec] = []
        per_pair: dict[tuple[str, str], list[str]] = {}
        for name, ks in groups.items():
            by = {(k.task, k.metric): k.key for k in ks}
            for task, t_short in PAPER_TASKS.items():
                for metric, m_short in PAPER_METRICS.items():
                    if (task, metric) in by:
                        short = f"{t_short} {m_short}"
                        columns.append(ColumnSpec.for_metric(by[task, metric], title=f"{name} {short}", group=name,
                                                             short=short, scale=100.0, direction_=HIGHER))
                        per_pair.setdefault((task, metric), []).append(by[task, metric])
        view = _with_averages(results, fraction, per_pair)
        for (task, metric), members in per_pair.items():
            if len(members) > 1:
                short = f"{PAPER_TASKS[task]} {PAPER_METRICS[metric]}"
                columns.append(ColumnSpec.for_metric(_average_key(fraction, task, metric), title=f"{AVERAGE} {short}",
                                                     group=AVERAGE, short=short, scale=100.0, direction_=HIGHER))
        lf = "" if fraction is None else f", {fraction_text(fraction)} of the training labels"
        caption = (f"Downstream datasets as column groups (LP = linear probe, FT = full fine-tuning{lf}; AUC, ACC, "
                   f"mAP in %); {AVERAGE} = unweighted mean over the {len(groups)} dataset(s), per seed; rows: "
                   f"{' x '.join(grouping.headers)}; {stat_text}; {marks_text}.")
        title = "Main results, paper layout" + ("" if fraction is None else f" ({fraction_text(fraction)} labels)")
        rows = Grouping(grouping.rows_col, grouping.key_cols, [(k, view.frame.loc[sub.index]) for k, sub in grouping.groups],
                        grouping.baseline_value)
        tables.append(build_table(view, rows, columns, name=_fraction_name(fraction), title=title, caption=caption))
    return tables


def _with_averages(results: Results, fraction: float | None, per_pair: dict[tuple[str, str], list[str]]) -> Results:
    """A view of ``results`` with the average columns added (a cell has one when it has every member)."""
    frame = results.frame.copy()
    metric_keys = dict(results.metric_keys)
    for (task, metric), members in per_pair.items():
        if len(members) < 2:
            continue
        key = _average_key(fraction, task, metric)
        has_all = {c for c, ks in metric_keys.items() if all(m in ks for m in members)}
        values = frame[members].apply(lambda col: col.map(_number)).to_numpy(dtype=float)
        frame[key] = [float(np.mean(v)) if c in has_all else math.nan for c, v in zip(frame["cell"], values)]
        for c in has_all:
            metric_keys[c] = metric_keys[c] | {key}
    return Results(root=results.root, frame=frame, tasks=results.tasks, metric_keys=metric_keys)


def _number(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
