"""``python -m bench.report results/<grid>``: one table from every done cell of a grid.

Loads each cell's ``config.yaml`` and ``metrics.json`` into a pandas DataFrame (saved as
``report/all.csv``), then writes ``report/table.md``: rows = ``report.rows`` (default: the cell label),
columns = task metrics (``auc``, ``map``, ``acc``, ``f1`` of every task), cells = mean +- std over seeds
with the number of seeds. Cells that are not done are listed, and the report stops unless
``allow_missing=true``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import yaml
from tabulate import tabulate

from . import store

MAIN_METRICS = ("auc", "map", "acc", "f1")


class ReportError(RuntimeError):
    pass


def load_results(root: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per done cell: ``cell``, ``label``, ``seed``, config columns (``cfg.<dotted key>``) and metrics."""
    rows, missing = [], []
    for cell_dir in sorted(p for p in Path(root).iterdir() if p.is_dir() and (p / "config.yaml").exists()):
        state = store.cell_state(cell_dir)
        if state != store.DONE:
            missing.append(f"{cell_dir.name} ({state})")
            continue
        cfg = yaml.safe_load((cell_dir / "config.yaml").read_text())
        metrics = store.read_json(cell_dir / "metrics.json")
        row = {"cell": cell_dir.name, "label": cfg.get("label"), "seed": cfg.get("seed")}
        row.update({f"cfg.{k}": v for k, v in pd.json_normalize(cfg, sep=".").iloc[0].items()})
        row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None})
        rows.append(row)
    return pd.DataFrame(rows), missing


def metric_columns(df: pd.DataFrame) -> list[str]:
    cols = []
    for c in df.columns:
        if c.startswith(("cfg.", "init/", "train/")) or "/" not in c:
            continue
        if c.rsplit("/", 1)[1] in MAIN_METRICS:
            cols.append(c)
    return cols


def summary_table(df: pd.DataFrame, rows: str = "label") -> pd.DataFrame:
    cols = metric_columns(df)
    if rows not in df.columns:
        rows = f"cfg.{rows}"
    if rows not in df.columns:
        raise ReportError(f"report.rows={rows!r} is not a column of the results")
    out = {}
    for key, group in df.groupby(rows, sort=False):
        cells = {}
        for c in cols:
            vals = pd.to_numeric(group[c], errors="coerce").dropna()
            if len(vals) == 0:
                cells[c] = "—"
            elif len(vals) == 1:
                cells[c] = f"{100 * vals.iloc[0]:.2f} (n=1)"
            else:
                cells[c] = f"{100 * vals.mean():.2f} ± {100 * vals.std(ddof=1):.2f} (n={len(vals)})"
        out[key] = cells
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = rows.removeprefix("cfg.")
    return table


def write_report(root: Path, rows: str = "label", allow_missing: bool = False) -> dict:
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"{root} is not a results folder")
    df, missing = load_results(root)
    if missing and not allow_missing:
        raise ReportError(f"{len(missing)} cell(s) are not done: {', '.join(missing)} (allow_missing=true to report anyway)")
    if df.empty:
        raise ReportError(f"{root}: no done cells")
    out = root / "report"
    store.write_text(out / "all.csv", df.to_csv(index=False))
    table = summary_table(df, rows)
    text = tabulate(table, headers="keys", tablefmt="github")
    note = "\n\nValues in % (mean ± std over seeds, n = number of seeds)."
    if missing:
        note += "\n\nMissing cells: " + ", ".join(missing)
    store.write_text(out / "table.md", f"# {root.name}\n\n{text}{note}\n")
    return {"markdown": out / "table.md", "csv": out / "all.csv", "table_text": text}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or any(a in ("-h", "--help") for a in argv):
        print("usage: python -m bench.report RESULTS_DIR/GRID [rows=label] [allow_missing=false]\n\n" + (__doc__ or ""))
        return 0 if argv else 2
    root, opts = Path(argv[0]), dict(a.split("=", 1) for a in argv[1:] if "=" in a)
    bad = sorted(set(opts) - {"rows", "allow_missing"})
    if bad:
        print(f"error: unknown option(s) {bad}; allowed: rows, allow_missing", file=sys.stderr)
        return 2
    try:
        paths = write_report(root, opts.get("rows", "label"), opts.get("allow_missing", "false").lower() in ("1", "true", "yes"))
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(paths["table_text"])
    print(f"\ntable: {paths['markdown']}\nall results: {paths['csv']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
