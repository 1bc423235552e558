"""The shape of a metric key: ``[<dataset>/]<task>[/<target>]/<metric>``, with at most one label-fraction
segment right after the task or right before the metric.

- the pretraining corpus's own splits: ``<task>/<target>/<metric>`` (``linear_probe/disease_multilabel/auc``);
- a suite dataset: ``<dataset>/<task>/<target>/<metric>`` (``fundus_synth-dr/linear_probe/dr_grade/auc``);
- a label fraction adds a segment ``lf0.01`` (a fraction; ``lf1%``, a percentage, also reads) after the
  target (``dr/linear_probe/dr_grade/lf0.01/auc``, how a task entry with a list of label fractions names its
  runs) or after the task (``dr/linear_probe/lf0.01/dr_grade/auc``);
- tasks without a target (retrieval): ``[<dataset>/]retrieval/<metric>``.

``<task>`` is a task name (the cells' task entries plus the built-in ``linear_probe``, ``finetune``,
``zeroshot``, ``retrieval``). Keys under ``init/`` (evaluation at initialisation), ``train/`` and ``data/``
are not task metrics. :func:`parse_metric_key` returns None for any other shape: the report never guesses,
and such keys are shown in the generic table only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

#: the built-in task names (``tasks.TASKS``; listed here so the report does not import the task modules)
BUILTIN_TASKS = frozenset({"linear_probe", "finetune", "zeroshot", "retrieval"})
#: first segments that are never a dataset name
NOT_DATASETS = frozenset({"init", "train", "data"})
_FRACTION = re.compile(r"lf(\d+(?:\.\d*)?|\.\d+)(%?)")


@dataclass(frozen=True)
class MetricKey:
    """A parsed metric key; ``dataset`` is None for the pretraining corpus's own splits, ``fraction`` None
    without a label-fraction segment (all labels)."""

    key: str
    dataset: str | None
    task: str
    fraction: float | None
    target: str | None
    metric: str

    @property
    def prefix(self) -> str:
        """The task key: everything but the metric."""
        return self.key.rsplit("/", 1)[0]


def parse_fraction(segment: str) -> float | None:
    """``lf0.01`` -> 0.01, ``lf1%`` -> 0.01; None when ``segment`` is not a label-fraction segment."""
    m = _FRACTION.fullmatch(segment)
    if m is None:
        return None
    value = float(m.group(1)) / (100.0 if m.group(2) else 1.0)
    return value if 0 < value <= 1 else None


def parse_metric_key(key: str, tasks: Iterable[str] = ()) -> MetricKey | None:
    """The parts of ``key`` (see the module docstring), or None for any other shape."""
    names = BUILTIN_TASKS | set(tasks)
    parts = key.split("/")
    if len(parts) < 2 or any(not p for p in parts) or parts[0] in NOT_DATASETS:
        return None
    at = [i for i, p in enumerate(parts[:-1]) if p in names]
    if len(at) != 1 or at[0] > 1:
        return None
    i = at[0]
    dataset = parts[0] if i == 1 else None
    rest = parts[i + 1:-1]
    fraction = None
    at_lf = [j for j, p in enumerate(rest) if _FRACTION.fullmatch(p)]
    if len(at_lf) > 1 or (at_lf and at_lf[0] not in (0, len(rest) - 1)):
        return None
    if at_lf:
        fraction = parse_fraction(rest[at_lf[0]])
        if fraction is None:
            return None
        rest = rest[:at_lf[0]] + rest[at_lf[0] + 1:]
    if len(rest) > 1:
        return None
    return MetricKey(key, dataset, parts[i], fraction, rest[0] if rest else None, parts[-1])


def fraction_text(fraction: float | None) -> str:
    """0.01 -> ``1%``; None -> ``100%``."""
    return "100%" if fraction is None else f"{fraction * 100:g}%"
