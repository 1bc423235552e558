"""What the report knows about a metric: its direction, display scale, header and number format.

A metric column is a flat ``metrics.json`` key such as ``linear_probe/disease_multilabel/auc``; the
metric *name* is its last ``/`` component (``auc``).

Direction (which value is best, for the bold/underline marks):

- higher is better: ``auc``, ``map``, ``acc``, ``f1``, ``precision``, ``recall``, ``recall@k`` (and
  ``i2t_recall@k`` / ``t2i_recall@k``), ``balanced_acc``, ``kappa``, ``sensitivity``, ``specificity``,
  their ``val_`` variants, and throughputs (``*_per_s``);
- lower is better: losses (a name containing ``loss``), times (``time``, ``seconds``, ``*_s``,
  ``*_s_per_step``) and memory (``memory``, ``*_mb``);
- anything else has no direction and is never marked (bootstrap intervals ``*_ci_low/high``, counts, ...).

Fractions (the higher-is-better metrics above, except throughputs) are shown in % (x100, two decimals),
as in the MGLL paper; other values keep their unit with a number of decimals chosen per column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

HIGHER, LOWER, NONE = 1, -1, 0

#: metric names that are fractions in [0, 1] where higher is better
FRACTIONS = frozenset(
    {"auc", "map", "acc", "f1", "precision", "recall", "balanced_acc", "kappa", "sensitivity", "specificity"}
)
#: metric names the bootstrap over saved predictions can recompute (see ``significance``)
BOOTSTRAP_METRICS = ("auc", "map", "acc", "f1")
#: default metrics of the main table, per task key (f1 only where present)
DEFAULT_METRICS = ("auc", "map", "acc", "f1")

_HEADERS = {"auc": "AUC", "map": "mAP", "acc": "ACC", "f1": "F1", "kappa": "Kappa", "balanced_acc": "BACC"}


def metric_name(column: str) -> str:
    """``linear_probe/disease_multilabel/auc`` -> ``auc``."""
    return column.rsplit("/", 1)[-1]


def _base(name: str) -> str:
    name = name.lower()
    return name[4:] if name.startswith("val_") else name


def _is_recall_at_k(name: str) -> bool:
    return re.fullmatch(r"(?:[a-z0-9]+_)?recall@\d+", name) is not None


def direction(column: str) -> int:
    """``HIGHER`` (+1), ``LOWER`` (-1) or ``NONE`` (0) for a metric column (see the module docstring)."""
    name = _base(metric_name(column))
    if name.endswith(("_ci_low", "_ci_high")):
        return NONE
    if name in FRACTIONS or _is_recall_at_k(name):
        return HIGHER
    if name.endswith("_per_s") or name == "images_per_s":
        return HIGHER
    if "loss" in name:
        return LOWER
    if "time" in name or "seconds" in name or re.search(r"(^|_)s($|_per_)", name):
        return LOWER
    if "memory" in name or name.endswith("_mb"):
        return LOWER
    return NONE


def is_fraction(column: str) -> bool:
    """Whether the values are fractions shown in % (x100)."""
    name = _base(metric_name(column))
    return name in FRACTIONS or _is_recall_at_k(name)


def header(column: str) -> str:
    """A short display name for the metric part of a column: ``auc`` -> ``AUC``, ``i2t_recall@1`` -> ``i2t R@1``."""
    name = metric_name(column)
    if name in _HEADERS:
        return _HEADERS[name]
    m = re.fullmatch(r"(?:([a-z0-9]+)_)?recall@(\d+)", name)
    if m:
        return (f"{m.group(1)} " if m.group(1) else "") + f"R@{m.group(2)}"
    return name


@dataclass(frozen=True)
class ColumnSpec:
    """How one column of a table is shown and ranked.

    ``key`` is the DataFrame column (a metrics.json key); ``title`` the header in Markdown/CSV (the key
    itself unless a table renames it); ``group`` and ``short`` the two LaTeX header rows (task key, metric);
    ``scale`` multiplies values for display (100 for fractions); ``unit`` is appended to headers that need it.
    """

    key: str
    title: str
    group: str
    short: str
    direction: int
    scale: float = 1.0

    @classmethod
    def for_metric(cls, key: str, title: str | None = None, group: str | None = None, short: str | None = None,
                   scale: float | None = None, direction_: int | None = None) -> "ColumnSpec":
        task = key.rsplit("/", 1)[0] if "/" in key else ""
        return cls(
            key=key,
            title=title or key,
            group=task if group is None else group,
            short=short or header(key),
            direction=direction(key) if direction_ is None else direction_,
            scale=(100.0 if is_fraction(key) else 1.0) if scale is None else scale,
        )


def decimals_for(spec: ColumnSpec, means: list[float]) -> int:
    """Decimals shown in a column: 2 for fractions in %, else about 4 significant digits of the largest value."""
    if spec.scale == 100.0:
        return 2
    finite = [abs(m * spec.scale) for m in means if m is not None and math.isfinite(m) and m != 0]
    if not finite:
        return 2
    return int(min(6, max(0, 3 - math.floor(math.log10(max(finite))))))
