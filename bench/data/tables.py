"""Reading label tables (CSV) as strings, and the cell values label columns may hold.

Rows are located by ``line`` (the header is line 1, so data row ``i`` (0-based) is on line ``i + 2``,
assuming no quoted line breaks) and ``row`` (1-based data row).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from .registry import DataConfigError
from .sample import Origin

FLAG_VALUES = {"1": 1, "1.0": 1, "0": 0, "0.0": 0, "-1": -1, "-1.0": -1, "": None}
FLAG_ALLOWED = "1, 0, -1 (uncertain) or blank"


def non_finite(value: str) -> bool:
    """Whether a cell spells a number that is not finite (``nan``, ``NaN``, ``inf``, ``-Infinity``, ...): a
    missing value written by a program, never a label."""
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def number_hint(value: str) -> str:
    """`` (not a finite number)`` for NaN/inf cells, else ``""``: appended to a bad-value message."""
    return " (not a finite number: a missing value written as NaN/inf?)" if non_finite(value) else ""


def read_csv(path: str | Path):
    """The table with every cell as a stripped string (blank cells are ``""``)."""
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError as e:
        raise DataConfigError(f"{path}: no such file") from e
    except Exception as e:  # pandas parser errors, empty files, bad encodings
        raise DataConfigError(f"{path}: cannot be read as CSV: {e}") from e
    df.columns = [str(c).strip() for c in df.columns]
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise DataConfigError(f"{path}: repeated column name(s) {dup}")
    return df.apply(lambda col: col.str.strip())


def row_origin(path: str | Path, i: int, image_field: str | None = None) -> Origin:
    """The :class:`Origin` of data row ``i`` (0-based)."""
    return Origin(str(path), line=i + 2, row=i + 1, image_field=image_field)


def parse_flag(value: str) -> int | None:
    """``"1"`` -> 1, ``"0"`` -> 0, ``"-1"`` -> -1, ``""`` -> None; anything else raises ValueError."""
    if value in FLAG_VALUES:
        return FLAG_VALUES[value]
    raise ValueError(f"value {value!r} is not one of {FLAG_ALLOWED}{number_hint(value)}")


def flag_columns(df, exclude: Sequence[str]) -> tuple[list[str], list[str]]:
    """Columns whose cells are all 1/0/-1/blank with at least one non-blank cell, and the all-blank ones. A
    column of flags with some NaN/inf cells is a flag column too (its NaN/inf cells are then per-row problems,
    not a reason to drop the label silently)."""
    flags, blank = [], []
    for c in df.columns:
        if c in exclude:
            continue
        values = set(df[c].unique())
        odd = {v for v in values - set(FLAG_VALUES) if not non_finite(v)}
        if not odd and values & set(FLAG_VALUES) - {""}:
            flags.append(c)
        elif values <= {""}:
            blank.append(c)
    return flags, blank


def require_columns(path: str | Path, df, columns: dict[str, str | None]) -> None:
    """``columns``: option name -> column; a column that is not in the table is an error naming both."""
    for option, col in columns.items():
        if col is not None and col not in df.columns:
            raise DataConfigError(
                f"{path}: data.{option}={col!r} is not a column of this table; its columns are {list(df.columns)}"
            )
