"""Render a ``tables.Table`` as Markdown (GitHub tables via tabulate) or CSV (one line per row x column).

Markdown cells: ``mean ± std (n=k)`` (``mean (n=1)`` for one seed), best ``**bold**``, second best
``<ins>underlined</ins>``, then the significance markers (``†``, ``‡``); an em dash where a row has no value.
"""

from __future__ import annotations

import io
import math

import pandas as pd
from tabulate import tabulate

from .tables import BEST, EM_DASH, SECOND, Stat, Table


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def cell_text(table: Table, col, st: Stat, *, bold=("**", "**"), underline=("<ins>", "</ins>"), pm=" \u00b1 ",
              show_n: bool = True) -> str:
    """The text of one cell (Markdown markup by default; the LaTeX renderer passes its own)."""
    if st.n == 0:
        return EM_DASH
    mean, std = st.mean, st.std
    if mean is not None and not math.isfinite(mean):
        body = "NaN"
    else:
        body = table.fmt(col, mean)
        if std is not None:
            body += pm + table.fmt(col, std)
    if st.mark == BEST:
        body = f"{bold[0]}{body}{bold[1]}"
    elif st.mark == SECOND:
        body = f"{underline[0]}{body}{underline[1]}"
    body += st.sig
    if show_n:
        body += f" (n={st.n})"
    return body


def markdown(table: Table) -> str:
    """The table body as a GitHub Markdown table (no caption)."""
    headers = [_md_escape(h) for h in table.index] + [_md_escape(c.title) for c in table.columns]
    body = []
    for r in table.rows:
        body.append([_md_escape(x) for x in r.labels] + [cell_text(table, c, r.stats[c.key]) for c in table.columns])
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def markdown_block(table: Table, number: int | None = None) -> str:
    """Caption line, table, and the notes under it (missing cells, significance remarks)."""
    head = f"**Table {number}. {table.title}.**" if number is not None else f"**{table.title}.**"
    parts = [f"{head} {table.caption}", "", markdown(table)]
    if table.notes:
        parts += [""] + [f"- {n}" for n in table.notes]
    return "\n".join(parts) + "\n"


def csv(table: Table, comparisons=None, row_name=None) -> str:
    """Long format: one line per row x column with mean, std, n, mark, significance markers and p-values."""
    pvals = {}
    for c in comparisons or []:
        pvals[(c.row, c.column, c.test)] = c
    lines = []
    for r in table.rows:
        for col in table.columns:
            st = r.stats[col.key]
            rec = dict(zip(table.index, r.labels))
            tt, bs = pvals.get((r.key, col.key, "ttest")), pvals.get((r.key, col.key, "bootstrap"))
            rec.update({
                "column": col.key,
                "mean": st.mean,
                "std": st.std,
                "n": st.n,
                "scale": col.scale,
                "shown": cell_text(table, col, st, bold=("", ""), underline=("", ""), show_n=False),
                "mark": st.mark,
                "significance": st.sig,
                "p_ttest": tt.p if tt else None,
                "p_bootstrap": bs.p if bs else None,
                "reference": (row_name(tt.reference) if (tt and row_name and tt.reference is not None) else None),
                "seeds": ";".join(f"{k}:{v:.6g}" for k, v in st.values.items()),
                "cells": ";".join(r.cells),
            })
            lines.append(rec)
    buf = io.StringIO()
    pd.DataFrame(lines).to_csv(buf, index=False)
    return buf.getvalue()
