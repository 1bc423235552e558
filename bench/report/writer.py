"""``write_report``: load a grid folder, build every table and figure, and write ``report/``.

Output (``out=``, default ``results/<grid>/report/``)::

    report.md            every table and figure with a one-line caption (relative links; GitHub renders it)
    table.md             the main table alone (what ``python -m bench.run`` prints after a grid)
    all.csv              one line per cell: state, config (cfg.*), derived columns, every metric
    significance.csv     every test: row, reference, column, test, n, difference, p, significant, note
    power.csv            per table and column: seeds, test-set size, seed std, minimum detectable effect (power)
    tables/<name>.md|.tex|.csv   main, paper (and paper_lf<x>), ablation, granularity, cost (those that apply)
    figures/<name>.png|.pdf      bars, loss_curves, metric_vs_levels, metric_vs_missing_rate,
                                 metric_vs_label_fraction (those that apply)
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .. import store
from . import figures as figs
from . import latex as tex
from . import page, power, render
from .load import MissingCell, MissingCellsError, ReportError, Results, load_results, task_metric_columns
from .metrics import DEFAULT_METRICS, ColumnSpec, is_fraction, metric_name
from .paper import paper_tables
from .significance import BOOTSTRAP, DAGGER, DDAGGER, TTEST, compare, markers
from .tables import (Grouping, Table, ablation_rows, build_table, cost_columns, display_name, granularity_rows,
                     group_rows, missing_notes)

log = logging.getLogger(__name__)

TABLE_FORMATS = ("md", "tex", "csv")
ALL_FORMATS = TABLE_FORMATS + figs.FIGURE_FORMATS
_FORMAT_ALIASES = {"markdown": "md", "latex": "tex"}
DEFAULT_BASELINE = "clip"


def parse_formats(formats: Any) -> list[str]:
    """``None`` -> all; ``"md,tex"`` or a list -> those (``markdown``/``latex`` accepted); ``none`` -> none."""
    if formats is None:
        return list(ALL_FORMATS)
    if isinstance(formats, str):
        formats = [f for f in formats.replace(" ", "").split(",") if f]
    out = []
    for f in formats:
        f = _FORMAT_ALIASES.get(str(f).lower(), str(f).lower())
        if f == "none":
            continue
        if f not in ALL_FORMATS:
            raise ReportError(f"formats: {f!r} is unknown; allowed: {', '.join(ALL_FORMATS)} (or none)")
        if f not in out:
            out.append(f)
    return out


def select_columns(results: Results, requested: Iterable[str] | None) -> list[ColumnSpec]:
    """The main table's metric columns.

    Default: for every task key, ``auc``, ``map``, ``acc`` and ``f1`` where present (a task with none of them,
    such as retrieval, shows its ``recall@k`` metrics). ``requested`` items may be task keys (their default
    metrics), metric names (that metric of every task having it) or full metric keys.
    """
    per_task = task_metric_columns(results)
    frame = results.done

    def defaults(key: str) -> list[str]:
        cols = per_task.get(key, [])
        chosen = [f"{key}/{m}" for m in DEFAULT_METRICS if f"{key}/{m}" in cols]
        return chosen or [c for c in cols if "recall@" in metric_name(c)]

    keys: list[str] = []
    if not requested:
        for key in per_task:
            keys += defaults(key)
    else:
        for item in requested:
            item = str(item)
            if item in per_task:
                keys += defaults(item)
            elif item in frame.columns and pd.api.types.is_numeric_dtype(frame[item]):
                keys.append(item)
            elif any(f"{k}/{item}" in cols for k, cols in per_task.items()):
                keys += [f"{k}/{item}" for k, cols in per_task.items() if f"{k}/{item}" in cols]
            else:
                names = list(per_task) + sorted({metric_name(c) for cols in per_task.values() for c in cols})
                close = difflib.get_close_matches(item, names + list(frame.columns), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ReportError(f"columns: {item!r} is not a task key, metric name or metric column of the results"
                                  f"{hint}; task keys: {list(per_task)}")
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise ReportError(f"{results.root}: no task metric to report (task keys: {list(per_task) or 'none'}); "
                          "name columns with columns=[...]")
    return [ColumnSpec.for_metric(k) for k in keys]


def _config_default(results: Results, key: str) -> Any:
    col = "cfg." + key
    if col not in results.frame.columns:
        return None
    values = [v for v in results.frame[col].tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None
    counts = Counter(values)
    if len(counts) > 1:
        log.warning("cells disagree on %s (%s); using the most common", key, dict(counts))
    return counts.most_common(1)[0][0]


def _write(path: Path, text: str) -> Path:
    store.write_text(path, text)
    return path


def _sig_caption(alpha: float, n_boot: int, tests: set[str], base: str | None, why: str) -> str:
    if base is None:
        return f"No significance test: {why}."
    parts = []
    if TTEST in tests:
        parts.append(f"{DAGGER} p < {alpha:g} vs {base}, paired t-test over seeds (scipy.stats.ttest_rel, two-sided)")
    if BOOTSTRAP in tests:
        parts.append(f"{DDAGGER} p < {alpha:g} vs {base}, paired bootstrap over test samples ({n_boot} resamples, "
                     "two-sided)")
    if not parts:
        return f"No significance test against {base} could be run (see the notes)."
    return "; ".join(parts) + "."


def _untested_notes(comparisons, grouping: Grouping, rows: Iterable[tuple]) -> list[str]:
    """One line per (test, reason) listing the rows of ``rows`` that could not be tested."""
    position = {k: i for i, k in enumerate(rows)}
    by_reason: dict[tuple[str, str], list[str]] = {}
    for c in sorted(comparisons, key=lambda c: position.get(c.row, -1)):
        if c.p is None and c.note and c.row in position:
            names = by_reason.setdefault((c.test, c.note), [])
            name = grouping.row_name(c.row)
            if name not in names:
                names.append(name)
    return [f"no {'t-test' if test == TTEST else 'bootstrap'} ({note}): {', '.join(names)}"
            for (test, note), names in by_reason.items()]


def write_report(
    root: Path | str,
    rows: str | None = None,
    allow_missing: bool = False,
    *,
    columns: Iterable[str] | None = None,
    baseline: str | None = None,
    alpha: float = 0.05,
    formats: Any = None,
    out: Path | str | None = None,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Write the report of grid folder ``root``; see the module docstring for the files.

    ``rows``: the row column (default: the cells' ``report.rows``, else ``label``). ``columns``: task keys,
    metric names or metric keys (default: auc/map/acc/f1 of every task). ``baseline``: the reference row of
    the significance tests (default: the cells' ``report.baseline``, else ``clip``). ``alpha``: significance
    level. ``allow_missing``: report despite missing cells (em dash, listed under each table) instead of
    raising ``MissingCellsError``. ``formats``: among md, tex, csv, png, pdf (default all; report.md,
    table.md and all.csv are always written). ``out``: output folder. ``n_boot``: bootstrap resamples.

    Returns ``{"markdown": report.md, "table": table.md, "csv": all.csv, "table_text": the main Markdown
    table, "tables": {name: {format: path}}, "figures": {name: {format: path}}, "significance": path or
    None, "power": power.csv, "missing": [MissingCell]}``.
    """
    root = Path(root)
    fmts = parse_formats(formats)
    if not 0 < float(alpha) < 1:
        raise ReportError(f"alpha={alpha!r} must be between 0 and 1")
    if int(n_boot) < 1:
        raise ReportError(f"n_boot={n_boot!r} must be a positive integer")
    alpha, n_boot = float(alpha), int(n_boot)
    results = load_results(root)
    grid = _config_default(results, "grid") or root.name
    rows = rows or _config_default(results, "report.rows") or "label"
    explicit_baseline = baseline is not None
    baseline = baseline if baseline is not None else (_config_default(results, "report.baseline") or DEFAULT_BASELINE)
    grouping = group_rows(results, str(rows), baseline)
    row_values = list(dict.fromkeys(str(k[0]) for k, _ in grouping.groups))
    if grouping.baseline_value is None and explicit_baseline:
        raise ReportError(f"baseline={baseline!r} is not a row of the report; rows "
                          f"({display_name(grouping.rows_col)}): {row_values}")
    if results.done.empty:
        if not allow_missing:
            raise MissingCellsError(root, results.not_done())
        raise ReportError(f"{root}: no done cell, nothing to report ({len(results.frame)} cell(s) not done)")
    main_cols = select_columns(results, list(columns) if columns else None)
    cost_cols, cost_absent = cost_columns(results)

    # -- every missing cell or metric, before writing anything ---------------------------------------------
    missing: list[MissingCell] = results.not_done()
    present_somewhere = set().union(*results.metric_keys.values())
    for cell, keys in results.metric_keys.items():
        label = str(results.frame.loc[results.frame["cell"] == cell, "label"].iloc[0])
        for c in main_cols + cost_cols:
            if c.key not in keys and c.key in present_somewhere:
                missing.append(MissingCell(cell, label, "done", f"no {c.key} in metrics.json"))
    if missing and not allow_missing:
        raise MissingCellsError(root, missing)

    out = Path(out) if out is not None else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    base_name = None
    if grouping.baseline_value is not None:
        base_name = str(grouping.baseline_value)
        if len(grouping.key_cols) > 1:
            base_name += f" (same {', '.join(grouping.headers[1:])} where it exists)"
    no_base_why = f"no row {baseline!r} among {row_values} (pass baseline=ROW)"
    row_header = " x ".join(grouping.headers)
    pct = any(c.scale == 100.0 for c in main_cols)
    stat_text = "mean \u00b1 std over seeds (n = seed count)" + ("; AUC/mAP/ACC/F1/recall in %" if pct else "")
    marks_text = "bold: best, underlined: second best per column (ties share the mark)"

    # -- main table ------------------------------------------------------------------------------------------
    main = build_table(results, grouping, main_cols, name="main", title="Main results",
                       caption=f"Rows: {row_header}; columns: task/metric; {stat_text}; {marks_text}.")
    papers = paper_tables(results, grouping, stat_text=stat_text, marks_text=marks_text)
    comparisons = []
    if grouping.baseline_value is not None:
        comparisons = compare(results, grouping, main, n_boot=n_boot)
        tested = {c.key for c in main.columns}
        for t in papers:  # the paper layout's columns the main table does not have (averages, ...)
            extra = [c for c in t.columns if c.key not in tested]
            tested |= {c.key for c in extra}
            if extra:
                comparisons += compare(results, grouping, dataclasses.replace(t, columns=extra), n_boot=n_boot)
    sig = markers(comparisons, alpha)
    tests_run = {c.test for c in comparisons if c.p is not None}
    sig_caption = _sig_caption(alpha, n_boot, tests_run, base_name, no_base_why)

    def finish(table: Table, with_sig: bool = True) -> Table:
        if with_sig:
            for r in table.rows:
                for c in table.columns:
                    r.stats[c.key].sig = sig.get((r.key, c.key), "")
            table.caption += " " + sig_caption
            table.notes += _untested_notes(comparisons, grouping, [r.key for r in table.rows])
        gaps = missing_notes(table, grouping)
        if gaps:
            table.notes += [f"missing (shown as \u2014 or left out of the mean): {g}" for g in gaps]
        return table

    tables = [finish(main)] + [finish(t) for t in papers]
    abl_keys, checks = ablation_rows(grouping)
    if abl_keys:
        tables.append(finish(build_table(
            results, grouping, main_cols, name="ablation", title="Objective ablation (MGLL paper Table 3 form)",
            caption=("\u2713 = loss term used: sCLIP (soft CLIP over levels), P (point-wise BCE), sKL (KL across "
                     "levels), as each cell recorded its objective's terms (clip: none; mgll: its terms; "
                     f"mgll_released: softce/bce/raw KL). {stat_text}; {marks_text} among these rows."),
            order=abl_keys, extra=checks, extra_headers=["sCLIP", "P", "sKL"])))
    gran_keys, gran_info = granularity_rows(grouping)
    gran = None
    if gran_keys:
        gran = finish(build_table(
            results, grouping, main_cols, name="granularity", title="Number of granularities (MGLL paper Table 4 form)",
            caption=("levels = number of text levels the objective trains on, as each cell recorded it; "
                     f"{stat_text}; {marks_text} among these rows."),
            order=gran_keys, extra=gran_info, extra_headers=["objective", "levels", "level names"]))
        tables.append(gran)
    if cost_cols:
        cost = build_table(
            results, grouping, cost_cols, name="cost", title="Training cost",
            caption=("time/epoch = train/seconds_per_epoch, peak memory = peak_memory_mb, loss time = "
                     f"train/objective_forward_s_per_step x 1000; {stat_text.split(';')[0]}; lower is better: "
                     f"{marks_text}."))
        finish(cost, with_sig=False)
        if cost_absent:
            cost.notes.append(f"not recorded by these cells: {', '.join(cost_absent)}")
        tables.append(cost)

    powers = []
    for t in tables:
        if t.name != "cost":
            found = power.table_power(results, grouping, t)
            t.notes += power.notes(found)
            powers += found

    # -- files -----------------------------------------------------------------------------------------------
    store.write_text(out / "all.csv", results.frame.to_csv(index=False))
    power_path = _write(out / "power.csv", power.to_csv(powers))
    written: dict[str, dict[str, Path]] = {}
    for t in tables:
        paths = {}
        if "md" in fmts:
            paths["md"] = _write(out / "tables" / f"{t.name}.md", render.markdown_block(t))
        if "tex" in fmts:
            paths["tex"] = _write(out / "tables" / f"{t.name}.tex", tex.latex(t, grid=str(grid)))
        if "csv" in fmts:
            paths["csv"] = _write(out / "tables" / f"{t.name}.csv",
                                  render.csv(t, comparisons if t.name != "cost" else None, grouping.row_name))
        written[t.name] = paths
    sig_path = None
    if comparisons:
        mdes = power.mde_by_column(powers)
        recs = [{"row": grouping.row_name(c.row), "column": c.column,
                 "reference": grouping.row_name(c.reference) if c.reference is not None else None,
                 "test": c.test, "n": c.n, "diff": c.diff, "p": c.p, "alpha": alpha,
                 "significant": c.significant(alpha), "note": c.note, "mde": mdes.get(c.column),
                 "resolvable": power.resolvable(c.diff, mdes.get(c.column))} for c in comparisons]
        sig_path = _write(out / "significance.csv", pd.DataFrame(recs).to_csv(index=False))

    fig_formats = [f for f in fmts if f in figs.FIGURE_FORMATS]
    figures: list[figs.Figure] = []
    if fig_formats:
        fdir = out / "figures"
        frac_metrics = list(dict.fromkeys(metric_name(c.key) for c in main_cols if is_fraction(c.key)))
        for make in (
            lambda: figs.bars(main, grouping, fdir, fig_formats),
            lambda: figs.loss_curves(results, grouping, fdir, fig_formats),
            lambda: figs.metric_vs_levels(gran, grouping, fdir, fig_formats),
            lambda: figs.metric_vs_missing_rate(main, grouping, results, fdir, fig_formats),
            lambda: figs.metric_vs_label_fraction(results, grouping, frac_metrics, fdir, fig_formats),
        ):
            fig = make()
            if fig is not None:
                figures.append(fig)

    main_md = render.markdown(main)
    table_md = _write(out / "table.md", f"# {grid}\n\n" + render.markdown_block(main, 1))
    report_md = _write(out / "report.md", page.report_markdown(results, grouping, grid, tables, figures, written,
                                                              out, sig_path, missing, fmts, base_name, no_base_why))
    log.info("report of %s written to %s", root, out)
    return {
        "markdown": report_md,
        "table": table_md,
        "csv": out / "all.csv",
        "table_text": main_md,
        "tables": written,
        "figures": {f.name: f.paths for f in figures},
        "significance": sig_path,
        "power": power_path,
        "missing": missing,
    }
