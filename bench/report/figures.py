"""Figures (seaborn on the matplotlib Agg backend), each written as PNG and/or PDF; each only when the grid
has what it shows.

- ``bars``: every main-table metric, one bar per row (mean over seeds, error bar = std over seeds).
- ``loss_curves``: the training loss and every named loss term (``history.csv``) against the step, one
  line per row (mean over seeds, band = std); one panel per term.
- ``metric_vs_levels``: metrics against the number of text levels trained on, per objective (when an
  objective was trained with at least two numbers of levels).
- ``metric_vs_missing_rate``: metrics against ``data.missing_rate`` (unset = 0) when it varies.
- ``metric_vs_label_fraction``: metrics against the linear probe's ``label_fraction`` (the task metric
  ``<task key>/label_fraction``, else the task entry's option) per task (name/target) when it varies,
  whether across cells or across task entries of a cell.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .load import CFG, LABEL_FRACTION, Results
from .tables import Grouping, Table

log = logging.getLogger(__name__)

FIGURE_FORMATS = ("png", "pdf")


@dataclass
class Figure:
    """A written figure: ``name`` (file stem), one-line ``caption``, ``paths`` (format -> file)."""

    name: str
    caption: str
    paths: dict[str, Path] = field(default_factory=dict)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def _save(grid, out: Path, name: str, formats: list[str]) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        grid.savefig(path, dpi=150, bbox_inches="tight")
        paths[fmt] = path
    plt, _ = _plt()
    plt.close(grid.figure if hasattr(grid, "figure") else grid)
    return paths


def _hue_name(grouping: Grouping, exclude=()) -> str:
    """The legend title: the row-key headers (the first always, the others unless excluded)."""
    return " x ".join(h for i, (c, h) in enumerate(zip(grouping.key_cols, grouping.headers))
                      if i == 0 or c not in set(exclude))


def _wrap(n: int) -> int:
    return min(3, max(1, n))


def main_values(table: Table, grouping: Grouping, exclude=()) -> pd.DataFrame:
    """Long data of a table: one line per row x column x seed (values scaled as shown)."""
    recs = []
    for r in table.rows:
        name = grouping.row_name(r.key, exclude)
        for col in table.columns:
            for seed, v in r.stats[col.key].values.items():
                if v is not None and math.isfinite(v):
                    recs.append({"row": name, "seed": seed, "metric": _metric_title(col), "value": v * col.scale})
    return pd.DataFrame(recs)


def _metric_title(col) -> str:
    unit = " (%)" if col.scale == 100.0 else ""
    return f"{col.group} {col.short}{unit}".strip() if col.group else col.short


def bars(table: Table, grouping: Grouping, out: Path, formats: list[str]) -> Figure | None:
    data = main_values(table, grouping)
    if data.empty:
        return None
    plt, sns = _plt()
    n = data["metric"].nunique()
    g = sns.catplot(data=data, kind="bar", x="row", y="value", col="metric", col_wrap=_wrap(n), errorbar="sd",
                    sharey=False, height=3.0, aspect=1.2, capsize=0.15, hue="row", legend=False)
    g.set_titles("{col_name}")
    g.set_axis_labels("", "")
    for ax in g.axes.flat:
        ax.tick_params(axis="x", labelbottom=True)
        if data["row"].nunique() > 3:
            plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    g.tight_layout()
    return Figure("bars", "Every main-table metric per row: bar = mean over seeds, error bar = std over seeds.",
                  _save(g, out, "bars", formats))


def loss_curves(results: Results, grouping: Grouping, out: Path, formats: list[str]) -> Figure | None:
    recs = []
    skip = {"step", "epoch", "lr", "logit_scale"}
    for key, cells in grouping.groups:
        name = grouping.row_name(key)
        for i in cells.index:
            if cells.at[i, "state"] != "done":
                continue
            path = results.root / cells.at[i, "cell"] / "history.csv"
            if not path.exists():
                continue
            try:
                hist = pd.read_csv(path)
            except (OSError, ValueError, pd.errors.ParserError) as e:
                log.warning("%s: cannot read (%s); left out of the loss curves", path, e)
                continue
            if "step" not in hist.columns:
                continue
            terms = [c for c in hist.columns if c not in skip]
            long = hist.melt(id_vars=["step"], value_vars=terms, var_name="term", value_name="value").dropna()
            long["row"], long["seed"] = name, cells.at[i, "seed"]
            recs.append(long)
    if not recs:
        return None
    data = pd.concat(recs, ignore_index=True).rename(columns={"row": _hue_name(grouping)})
    order = ["loss"] + sorted(t for t in data["term"].unique() if t != "loss")
    order = [t for t in order if t in set(data["term"])]
    plt, sns = _plt()
    few = data.groupby([_hue_name(grouping), "seed", "term"])["step"].nunique().max() <= 20
    g = sns.relplot(data=data, kind="line", x="step", y="value", hue=_hue_name(grouping), col="term",
                    col_order=order, col_wrap=_wrap(len(order)), errorbar="sd", height=2.6, aspect=1.3,
                    marker="o" if few else None, facet_kws={"sharey": False, "sharex": True})
    g.set_titles("{col_name}")
    g.set_axis_labels("step", "")
    return Figure("loss_curves", "Training loss and each named loss term (unweighted) against the step, "
                  "mean over seeds (band = std), from history.csv.", _save(g, out, "loss_curves", formats))


def _lines(data: pd.DataFrame, x: str, hue: str, out: Path, name: str, formats: list[str], xlabel: str,
           logx: bool = False, xticks=None):
    _, sns = _plt()
    n = data["metric"].nunique()
    g = sns.relplot(data=data, kind="line", x=x, y="value", hue=hue, col="metric", col_wrap=_wrap(n),
                    marker="o", errorbar="sd", height=2.8, aspect=1.2, facet_kws={"sharey": False})
    g.set_titles("{col_name}")
    g.set_axis_labels(xlabel, "")
    for ax in g.axes.flat:
        if logx:
            ax.set_xscale("log")
        if xticks is not None:
            ax.set_xticks(list(xticks))
        ax.tick_params(axis="x", labelbottom=True)
    g.tight_layout()
    return _save(g, out, name, formats)


def metric_vs_levels(gran: Table | None, grouping: Grouping, out: Path, formats: list[str]) -> Figure | None:
    if gran is None or not gran.rows:
        return None
    recs = []
    for r in gran.rows:
        obj, n_levels = r.labels[len(grouping.key_cols)], int(r.labels[len(grouping.key_cols) + 1])
        extra = [f"{h}={v}" for h, v in zip(grouping.headers[1:], grouping.labels(r.key)[1:])]
        hue = f"{obj} ({', '.join(extra)})" if extra else obj
        for col in gran.columns:
            for v in r.stats[col.key].values.values():
                if math.isfinite(v):
                    recs.append({"objective": hue, "levels": n_levels, "metric": _metric_title(col),
                                 "value": v * col.scale})
    if not recs:
        return None
    data = pd.DataFrame(recs)
    paths = _lines(data, "levels", "objective", out, "metric_vs_levels", formats, "number of text levels",
                   xticks=sorted(data["levels"].unique()))
    return Figure("metric_vs_levels", "Metrics against the number of text levels (granularities) trained on, "
                  "per objective; mean over seeds, band = std.", paths)


def metric_vs_missing_rate(table: Table, grouping: Grouping, results: Results, out: Path,
                           formats: list[str]) -> Figure | None:
    col_name = CFG + "data.missing_rate"
    frame = results.frame
    rates = frame[col_name].fillna(0.0) if col_name in frame.columns else pd.Series(0.0, index=frame.index)
    if rates.nunique() < 2:
        return None
    by_key = dict(grouping.groups)
    recs = []
    for r in table.rows:
        cells = by_key[r.key]
        hue = grouping.row_name(r.key, exclude=[col_name])
        for i in cells.index:
            if cells.at[i, "state"] != "done":
                continue
            rate = cells.at[i, col_name] if col_name in cells.columns else 0.0
            rate = 0.0 if rate is None or (isinstance(rate, float) and math.isnan(rate)) else float(rate)
            for col in table.columns:
                v = r.stats[col.key].values.get(cells.at[i, "seed"])
                if v is not None and math.isfinite(v):
                    recs.append({"row": hue, "missing_rate": rate, "metric": _metric_title(col),
                                 "value": v * col.scale})
    if not recs:
        return None
    hue_name = _hue_name(grouping, exclude=[col_name])
    paths = _lines(pd.DataFrame(recs).rename(columns={"row": hue_name}), "missing_rate", hue_name, out,
                   "metric_vs_missing_rate", formats, "missing-text rate (data.missing_rate)")
    return Figure("metric_vs_missing_rate", "Metrics against the missing-text rate data.missing_rate, per row; "
                  "mean over seeds, band = std.", paths)


def label_fraction_data(results: Results, grouping: Grouping, metrics: list[str]) -> pd.DataFrame:
    """One line per done cell x task key x metric with the task's label fraction and its base task."""
    lf_cols = [c for c in grouping.key_cols if c.startswith(LABEL_FRACTION)]
    recs = []
    for key, cells in grouping.groups:
        hue = grouping.row_name(key, exclude=lf_cols)
        for i in cells.index:
            if cells.at[i, "state"] != "done":
                continue
            have = results.metric_keys.get(cells.at[i, "cell"], frozenset())
            for tkey, entry in results.tasks.items():
                lf = None
                if f"{tkey}/label_fraction" in have:
                    lf = cells.at[i, f"{tkey}/label_fraction"]
                elif any(k.startswith(tkey + "/") for k in have):
                    lf = entry.label_fraction
                if lf is None or not math.isfinite(float(lf)):
                    continue
                for m in metrics:
                    k = f"{tkey}/{m}"
                    if k in have and math.isfinite(float(cells.at[i, k])):
                        recs.append({"row": hue, "task": entry.base, "label_fraction": float(lf), "m": m,
                                     "value": 100.0 * float(cells.at[i, k])})
    return pd.DataFrame(recs)


def metric_vs_label_fraction(results: Results, grouping: Grouping, metrics: list[str], out: Path,
                             formats: list[str]) -> Figure | None:
    data = label_fraction_data(results, grouping, metrics)
    if data.empty:
        return None
    varies = data.groupby(["task", "m"])["label_fraction"].nunique()  # a panel needs two fractions or more
    keep = set(varies[varies > 1].index)
    if not keep:
        return None
    data = data[[(a, b) in keep for a, b in zip(data["task"], data["m"])]].copy()
    data["metric"] = data["task"] + " " + data["m"].str.upper().str.replace("MAP", "mAP") + " (%)"
    hue_name = _hue_name(grouping, exclude=[c for c in grouping.key_cols if c.startswith(LABEL_FRACTION)])
    paths = _lines(data.rename(columns={"row": hue_name}), "label_fraction", hue_name, out,
                   "metric_vs_label_fraction", formats, "label fraction (log scale)", logx=True)
    return Figure("metric_vs_label_fraction", "Metrics against the fraction of training labels the linear probe "
                  "used (label_fraction), per task and row; mean over seeds, band = std.", paths)
