"""Render a ``tables.Table`` as a LaTeX ``table`` with ``booktabs`` rules and nothing else.

Needs only ``\\usepackage{booktabs}``: ``\\toprule``/``\\midrule``/``\\bottomrule`` and ``\\cmidrule`` under
the task headers; ``\\textbf`` (best), ``\\underline`` (second best), ``$\\pm$``, ``$^{\\dagger}$`` /
``$^{\\ddagger}$`` (significance), ``$\\surd$`` (a check mark without amssymb), ``---`` (missing). Text is
escaped (``_ % & # $ { } ~ ^ \\``). The seed count goes into the caption when every cell has the same one,
else after each cell as ``(n=k)``.
"""

from __future__ import annotations

from .render import cell_text
from .tables import Table

_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "\u00b1": r"$\pm$", "\u2014": "---", "\u2013": "--", "\u2713": r"$\surd$", "\u2020": r"$^{\dagger}$",
    "\u2021": r"$^{\ddagger}$", "\u00d7": r"$\times$", "\u2264": r"$\leq$", "\u2265": r"$\geq$",
    "<": r"\textless{}", ">": r"\textgreater{}",
}


def escape(text: object) -> str:
    """Escape LaTeX special characters (and map the few Unicode symbols the report uses to LaTeX)."""
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


def _label(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-:." else "-" for ch in text)


def latex(table: Table, grid: str = "") -> str:
    """The table as a ``table`` float (caption above, label ``tab:<grid>-<name>``), notes below the tabular."""
    counts = table.seed_counts()
    uniform = len(counts) <= 1
    caption = f"{table.title}. {table.caption}"
    if uniform and counts:
        n = next(iter(counts))
        caption += f" n = {n} seed{'s' if n != 1 else ''} per cell."
    ni, nc = len(table.index), len(table.columns)
    nk = ni if table.key_count is None else min(ni, table.key_count)
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\caption{" + escape(caption) + "}",
        r"\label{tab:" + _label(f"{grid}-{table.name}" if grid else table.name) + "}",
        r"\begin{tabular}{" + "l" * nk + "c" * (ni - nk + nc) + "}",
        r"\toprule",
    ]
    groups = []  # runs of equal group names: [name, first col, last col] (1-based LaTeX columns)
    for j, col in enumerate(table.columns):
        pos = ni + j + 1
        if groups and groups[-1][0] == col.group:
            groups[-1][2] = pos
        else:
            groups.append([col.group, pos, pos])
    if any(g[0] for g in groups):
        cells = [""] * ni
        for name, first, last in groups:
            span = last - first + 1
            cells.append(r"\multicolumn{" + str(span) + "}{c}{" + escape(name) + "}" if span > 1 else escape(name))
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(r"\cmidrule(lr){" + f"{f}-{l}" + "}" for name, f, l in groups if name))
    lines.append(" & ".join([escape(h) for h in table.index] + [escape(c.short) for c in table.columns]) + r" \\")
    lines.append(r"\midrule")
    for r in table.rows:
        cells = [escape(x) for x in r.labels]
        for col in table.columns:
            text = cell_text(table, col, r.stats[col.key], bold=("\0B", "\0E"), underline=("\0U", "\0E"),
                             show_n=not uniform)
            text = escape(text).replace("\0B", r"\textbf{").replace("\0U", r"\underline{").replace("\0E", "}")
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines.append(r"\par\smallskip{\footnotesize " + r"\\ ".join(escape(n) for n in table.notes) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def document(tables: list[str]) -> str:
    """A standalone document holding ``tables`` (for checking that they compile)."""
    return "\n".join([r"\documentclass{article}", r"\usepackage{booktabs}", r"\begin{document}", *tables,
                      r"\end{document}"]) + "\n"
