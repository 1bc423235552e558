"""The command line: ``python -m bench.report RESULTS_DIR/GRID [key=value ...]``."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional


from ..options import parse
from ..yamlio import parse_value
from .load import MissingCellsError, ReportError
from .writer import ALL_FORMATS, write_report

USAGE = f"""usage: python -m bench.report RESULTS_DIR/GRID [key=value ...]

Report of one grid folder (results/<grid>/, one folder per cell): every done cell's config and metrics in
one table (report/all.csv), tables as Markdown, LaTeX (booktabs) and CSV, seaborn figures (PNG, PDF), and
report/report.md showing them all. Values are YAML, as for python -m bench.run (lists: [a,b] or a,b).

Options:
  rows=KEY         row column: label, objective.name, or any config key (default: the cells'
                   report.rows, else label). Cells of one row that differ in another config key
                   (e.g. data.missing_rate) get that key added to the row.
  columns=LIST     main-table columns: task keys (their auc/map/acc/f1), metric names (that metric of
                   every task) or full metric keys (default: auc, map, acc and f1 of every task key).
  baseline=ROW     reference row of the significance tests (default: the cells' report.baseline,
                   else clip; matched ignoring case).
  alpha=P          significance level (default 0.05): dagger = paired t-test over seeds (>= 2 seeds in
                   common), double dagger = paired bootstrap over test samples (saved predictions).
  n_boot=N         bootstrap resamples (default 1000).
  allow_missing=B  true: report despite cells that are not done (or lack a metric): an em dash, listed
                   under each table. Default false: stop with exit status 2 and the list of them.
  formats=LIST     among {', '.join(ALL_FORMATS)} (default all; none = no table files or figures);
                   report.md, table.md and all.csv are always written.
  out=DIR          output folder (default RESULTS_DIR/GRID/report).

Tables: main (best bold, second best underlined), paper (the MGLL paper's layout: suite datasets as
column groups, LP/FT x AUC/ACC/mAP, an average; one per label fraction), ablation (sCLIP/P/sKL check
marks, when the grid has MGLL-family rows), granularity (when an objective is trained with different
numbers of levels), cost (time per epoch, peak memory, loss time). Under each table: its statistical
power (seeds, test-set size, seed std, minimum detectable effect; power.csv); see docs/reports.md. Figures: bars, loss_curves, metric_vs_levels,
metric_vs_missing_rate, metric_vs_label_fraction (each only when the grid varies what it shows).

Exit status: 0 written; 2 missing cells, an unknown option or another problem (the message says which).
Examples:
  python -m bench.report results/smoke
  python -m bench.report results/ablation rows=objective.name columns=[auc,map] baseline=clip
  python -m bench.report results/ablation allow_missing=true formats=md,tex out=/tmp/report
"""

@dataclass
class ReportOptions:
    rows: Optional[str] = field(default=None, metadata={"help": "row column: label, objective.name, or any config key"})
    columns: Optional[list[str]] = field(default=None, metadata={"help": "main-table columns"})
    baseline: Optional[str] = field(default=None, metadata={"help": "reference row of the significance tests"})
    alpha: Optional[float] = field(default=None, metadata={"help": "significance level", "min": 0, "max": 1,
                                                           "min_open": True, "max_open": True})
    n_boot: Optional[int] = field(default=None, metadata={"help": "bootstrap resamples", "min": 1})
    allow_missing: Optional[bool] = field(default=None, metadata={"help": "report despite cells that are not done"})
    formats: Optional[list[str]] = field(default=None, metadata={"help": "table/figure formats"})
    out: Optional[str] = field(default=None, metadata={"help": "output folder"})


OPTIONS = tuple(f.name for f in fields(ReportOptions))


def _list(value: Any) -> Any:
    """``a,b`` (a string) -> ``[a, b]``; lists stay lists."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def parse_args(argv: list[str]) -> tuple[Path, dict[str, Any]]:
    """``[folder, key=value, ...]`` -> (folder, write_report keyword arguments); ReportError on a bad one
    (the harness's option rules, :mod:`bench.options`)."""
    root, given = None, {}
    for a in argv:
        if "=" not in a:
            if root is not None:
                raise ReportError(f"one results folder expected; got {root} and {a} (options are key=value)")
            root = Path(a)
            continue
        key, raw = a.split("=", 1)
        try:
            value = parse_value(raw) if raw != "" else None
        except ValueError:
            value = raw
        given[key] = _list(value) if key in ("columns", "formats") else value
    if root is None:
        raise ReportError("no results folder given (python -m bench.report results/<grid>; see --help)")
    o = parse(ReportOptions, given, owner="python -m bench.report (see --help)", error=ReportError, drop_none=True)
    kwargs: dict[str, Any] = {}
    for key in ("rows", "baseline", "columns", "alpha", "n_boot", "allow_missing"):
        if getattr(o, key) is not None:
            kwargs[key] = getattr(o, key)
    if "formats" in given:
        kwargs["formats"] = o.formats or ["none"]
    if o.out is not None:
        kwargs["out"] = Path(o.out)
    return root, kwargs


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.report``; returns the exit status (0 written, 2 on a problem)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return 0
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)
    try:
        root, kwargs = parse_args(argv)
        paths = write_report(root, **kwargs)
    except MissingCellsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(paths["table_text"])
    print(f"\nreport: {paths['markdown']}\ntable: {paths['table']}\nall results: {paths['csv']}")
    for name, files in paths["tables"].items():
        if files:
            print(f"table {name}: " + ", ".join(str(p) for p in files.values()))
    for name, files in paths["figures"].items():
        print(f"figure {name}: " + ", ".join(str(p) for p in files.values()))
    if paths["significance"]:
        print(f"significance tests: {paths['significance']}")
    print(f"statistical power: {paths['power']}")
    if paths["missing"]:
        print(f"warning: {len(paths['missing'])} cell(s) or metric(s) missing; listed in the report", file=sys.stderr)
    return 0
