"""``report.md``: the page that shows every table and figure of a report, with relative links to the files."""

from __future__ import annotations

from pathlib import Path

from .. import store
from . import render
from .load import Results
from .tables import Grouping, Table


def _rel(path: Path, out: Path) -> str:
    try:
        return path.relative_to(out).as_posix()
    except ValueError:
        return path.as_posix()


def report_markdown(results: Results, grouping: Grouping, grid: str, tables: list[Table], figures, written,
                     out: Path, sig_path, missing, fmts, base_name, no_base_why) -> str:
    frame = results.frame
    n_done = int((frame["state"] == store.DONE).sum())
    seeds = sorted({s for s in frame["seed"].tolist() if s is not None}, key=str)
    lines = [
        f"# Report: {grid}",
        "",
        f"`{results.root}`: {len(frame)} cell(s), {n_done} done"
        + (f", {len(frame) - n_done} not done" if n_done < len(frame) else "")
        + f"; rows by `{' x '.join(grouping.headers)}`; seeds {', '.join(map(str, seeds))}; "
        + (f"significance reference: {base_name}." if base_name else f"no significance test ({no_base_why})."),
        "",
    ]
    if missing:
        lines += ["**Missing** (reported with allow_missing=true):", ""]
        lines += [f"- `{m.cell}` {m.label}: {m.state}" + (f" ({m.detail})" if m.detail else "") for m in missing]
        lines.append("")
    lines += ["## Tables", ""]
    for i, t in enumerate(tables, 1):
        lines.append(render.markdown_block(t, i))
        links = " \u00b7 ".join(f"[{fmt}]({_rel(p, out)})" for fmt, p in written.get(t.name, {}).items())
        if links:
            lines += [f"Files: {links}", ""]
    if figures:
        lines += ["## Figures", ""]
        for i, f in enumerate(figures, 1):
            lines.append(f"**Figure {i}.** {f.caption}")
            lines.append("")
            if "png" in f.paths:
                lines.append(f"![Figure {i}: {f.name}]({_rel(f.paths['png'], out)})")
            if "pdf" in f.paths:
                lines.append(f"[PDF]({_rel(f.paths['pdf'], out)})")
            lines.append("")
    lines += ["## Files", "", "- [all.csv](all.csv): one line per cell (state, config as cfg.*, every metric)"]
    if sig_path:
        lines.append("- [significance.csv](significance.csv): every test (row, reference, column, test, n, "
                     "difference, p, note)")
    lines.append("- [power.csv](power.csv): per table and column: seeds, test-set size, seed std, minimum "
                 "detectable effect, best vs second best and whether their gap is resolvable")
    lines.append("")
    return "\n".join(lines)
