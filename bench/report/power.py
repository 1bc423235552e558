"""Statistical power of a table: how large a difference between two rows its seeds can resolve.

Per column with a direction (higher or lower is better):

- ``n_seeds``: the smallest seed count among the rows having the column (the comparison with the least data);
- ``n_test``: the test-set size, from the cells' ``<task key>/n_test`` (a range when the cells differ; empty
  for the average columns and when the task does not record it);
- ``seed_std``: the seed standard deviation pooled over the rows, ``sqrt(sum_i (n_i - 1) s_i^2 / sum_i (n_i - 1))``
  over rows with at least two seeds (``s_i``: the row's sample std over seeds): the run-to-run noise of one
  objective (initialisation, data order, and the fit of the probe);
- ``mde``: the minimum detectable effect of a two-sided two-sample t-test between two rows of ``n`` seeds
  each at level ``alpha`` (default 0.05) and power ``power`` (default 0.8), in closed form with t quantiles:
  ``mde = (t_{1 - alpha/2, df} + t_{power, df}) * seed_std * sqrt(2 / n)``, ``df = 2 n - 2``; undefined (NaN)
  with fewer than two seeds;
- ``best``, ``second``, ``gap``: the rows with the best and second best mean and the difference of their
  means; ``resolvable`` is false when the gap is smaller than the MDE: with these seeds the two rows cannot
  be told apart (their order in the table is not evidence).

``significance.csv`` repeats the column's MDE next to every comparison with the baseline row, with
``resolvable`` = ``|difference| >= MDE``. A difference below the MDE may still be real; the paired tests of ``significance`` (paired t-test over seeds,
``†``; paired bootstrap over the test samples, ``‡``) remove what the rows share and can resolve less. The
MDE says what the design can promise: more seeds shrink it by about ``sqrt(n)``; a larger test set shrinks the
part of the seed std that comes from scoring a finite test set.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from .load import Results
from .tables import Grouping, Table

ALPHA, POWER = 0.05, 0.8


def mde(std: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The minimum detectable effect of a two-sample t-test with ``n`` seeds per row (see the module docstring)."""
    if n < 2 or not math.isfinite(std):
        return math.nan
    df = 2 * n - 2
    return float((student_t.ppf(1 - alpha / 2, df) + student_t.ppf(power, df)) * std * math.sqrt(2.0 / n))


def pooled_std(groups: list[list[float]]) -> float:
    """The standard deviation pooled over groups (each with at least two finite values); NaN when none has."""
    num = den = 0.0
    for g in groups:
        v = np.asarray([x for x in g if math.isfinite(x)], dtype=float)
        if len(v) >= 2:
            num += (len(v) - 1) * float(v.var(ddof=1))
            den += len(v) - 1
    return math.sqrt(num / den) if den else math.nan


@dataclass
class ColumnPower:
    table: str
    column: str
    title: str
    scale: float
    n_seeds: int
    n_test: str
    seed_std: float
    df: int
    mde: float
    best: str
    second: str
    gap: float
    resolvable: bool | None
    alpha: float
    power: float


def _n_test(results: Results, table_rows, column: str) -> str:
    key = column.rsplit("/", 1)[0] + "/n_test" if "/" in column else ""
    if key not in results.frame.columns:
        return ""
    cells = {c for r in table_rows for c in r.cells}
    values = results.frame.loc[results.frame["cell"].isin(cells), key].dropna().astype(int).tolist()
    if not values:
        return ""
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def table_power(results: Results, grouping: Grouping, table: Table, alpha: float = ALPHA,
                power: float = POWER) -> list[ColumnPower]:
    """One ``ColumnPower`` per column of ``table`` that has a direction and a value in two or more rows."""
    out = []
    for col in table.columns:
        if not col.direction:
            continue
        stats = [(grouping.row_name(r.key), r.stats[col.key]) for r in table.rows if r.stats[col.key].n]
        means = [(name, st.mean) for name, st in stats if st.mean is not None and math.isfinite(st.mean)]
        if len(means) < 2:
            continue
        n = min(st.n for _, st in stats)
        std = pooled_std([list(st.values.values()) for _, st in stats])
        ranked = sorted(means, key=lambda m: m[1], reverse=col.direction > 0)
        gap = abs(ranked[0][1] - ranked[1][1])
        m = mde(std, n, alpha, power)
        out.append(ColumnPower(
            table=table.name, column=col.key, title=f"{col.group} {col.short}".strip() if col.group else col.title,
            scale=col.scale, n_seeds=n, n_test=_n_test(results, table.rows, col.key), seed_std=std,
            df=max(0, 2 * n - 2), mde=m, best=ranked[0][0], second=ranked[1][0], gap=gap,
            resolvable=None if not math.isfinite(m) else bool(gap >= m), alpha=alpha, power=power))
    return out


def mde_by_column(powers: list[ColumnPower]) -> dict[str, float]:
    """Column key -> its MDE (the first table that has the column), for ``significance.csv``."""
    out: dict[str, float] = {}
    for p in powers:
        out.setdefault(p.column, p.mde)
    return out


def resolvable(diff: float | None, mde_value: float | None) -> bool | None:
    """Whether a difference is at least the MDE; None when either is unknown."""
    if diff is None or mde_value is None or not math.isfinite(diff) or not math.isfinite(mde_value):
        return None
    return bool(abs(diff) >= mde_value)


def _shown(value: float, scale: float) -> str:
    return "NaN" if not math.isfinite(value) else f"{value * scale:.2f}"


def notes(powers: list[ColumnPower]) -> list[str]:
    """The lines stated under a table: seeds, test-set size, seed std and MDE, and the unresolvable columns."""
    if not powers:
        return []
    alpha, power = powers[0].alpha, powers[0].power
    seeds = sorted({p.n_seeds for p in powers})
    tests = sorted({p.n_test for p in powers if p.n_test})
    head = (f"power (two-sample t-test over seeds, alpha = {alpha:g}, power = {power:g}; power.csv): "
            f"n = {'/'.join(map(str, seeds))} seed(s) per row; test set N = {', '.join(tests) if tests else 'not recorded'}")
    if max(seeds) < 2:
        return [head + "; one seed: no seed std, so no minimum detectable effect (run two or more seeds)."]
    finite = [p for p in powers if math.isfinite(p.mde)]
    parts = [f"{p.title}: std {_shown(p.seed_std, p.scale)}, MDE {_shown(p.mde, p.scale)}" for p in finite]
    lines = [head + "; seed std and minimum detectable effect (MDE) per column, in the table's units: "
             + "; ".join(parts) + "."]
    unresolved = [p for p in finite if p.resolvable is False]
    if unresolved:
        lines.append("not resolvable with these seeds (best - second best < MDE): " + "; ".join(
            f"{p.title} ({p.best} vs {p.second}: {_shown(p.gap, p.scale)} < {_shown(p.mde, p.scale)})"
            for p in unresolved))
    return lines


def to_csv(powers: list[ColumnPower]) -> str:
    columns = list(ColumnPower.__dataclass_fields__)
    return pd.DataFrame([asdict(p) for p in powers], columns=columns).to_csv(index=False)
