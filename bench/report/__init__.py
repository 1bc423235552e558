"""``python -m bench.report results/<grid> [key=value ...]``: tables and figures from a grid's cells.

Loads every cell's ``config.yaml`` and ``metrics.json`` into one DataFrame (``report/all.csv``) and writes,
under ``results/<grid>/report/``: the main table (rows = objectives or any config key, columns = task x
metric, mean +- std over seeds, best bold, second best underlined, significance daggers against a baseline
row), the paper's layout (suite datasets as column groups), the MGLL-style objective-ablation (Table 3) and
number-of-granularities (Table 4) tables, a cost table, each as Markdown, LaTeX (booktabs) and CSV, with its
statistical power (``power.csv``); seaborn figures (PNG, PDF); and ``report.md`` showing them all.
Cells that are not done stop the report (``MissingCellsError``, exit status 2) unless ``allow_missing``.

Modules: ``load`` (cells -> DataFrame), ``keys`` (the shape of a metric key), ``metrics`` (direction, scale,
headers), ``tables`` (rows, mean/std, marks), ``paper`` (the paper's main-table layout), ``render``
(Markdown, CSV), ``latex``, ``significance`` (t-test over seeds, bootstrap over saved predictions), ``power``
(seed std and minimum detectable effect), ``figures``, ``page`` (report.md), ``writer`` (``write_report``),
``cli`` (``main``).
The report never imports torch: the metrics it recomputes come from ``tasks.metrics`` (numpy only).
"""

from .cli import USAGE, main
from .load import MissingCell, MissingCellsError, ReportError, Results, load_results
from .writer import write_report

__all__ = ["USAGE", "MissingCell", "MissingCellsError", "ReportError", "Results", "load_results", "main",
           "write_report"]
