"""The task base class and the run-time checks every task shares (splits present, target provided)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

from .options import parse_options
from .registry import TaskConfigError

Metrics = dict[str, float | int | str]


class Task:
    """A downstream evaluation. Subclasses define a dataclass ``Options``, ``validate`` and ``run``.

    ``Task(**options)`` parses and validates the options (``TaskConfigError`` on any problem), so a wrong
    config fails when the task is built, before any training. ``needs_target`` says whether the task requires a
    ``target`` option (the name of a downstream task the datasets declare in ``task_specs``).
    """

    name: ClassVar[str] = "task"
    needs_target: ClassVar[bool] = True
    #: the last ``run``'s test-set predictions, for paired bootstrap tests in reports:
    #: ``{"y_true": ..., "scores": ..., "kind": ..., "threshold": ...}`` or None (set by ``record_predictions``)
    last_predictions: dict[str, Any] | None = None

    @dataclasses.dataclass
    class Options:
        pass

    def __init__(self, **options: Any):
        self.options = parse_options(self.name, self.Options, options)
        self.validate()

    def validate(self) -> None:
        """Check and normalise ``self.options`` in place; raise ``TaskConfigError``."""

    def run(self, model: Any, splits: Mapping[str, Any], cache: Any = None) -> Metrics:
        """Evaluate ``model`` on ``splits`` (``{"train": ..., "val": ..., "test": ...}``); flat metrics."""
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{f.name}={getattr(self.options, f.name)!r}" for f in dataclasses.fields(self.options))
        return f"{type(self).__name__}({opts})"

    def record_predictions(self, y_true: Any, scores: Any, kind: str, threshold: float = 0.5) -> None:
        """Keep the test-set predictions of this run (the runner saves them as ``predictions/<task>.npz``)."""
        import numpy as np

        self.last_predictions = {
            "y_true": np.asarray(y_true), "scores": np.asarray(scores), "kind": kind, "threshold": float(threshold),
        }

    # -- shared run-time checks ---------------------------------------------------------------------------
    def require_splits(self, splits: Mapping[str, Any], *names: str) -> list[Any]:
        """The datasets for ``names``; a missing or empty one raises ``ValueError`` saying what is there."""
        missing = [n for n in names if n not in splits or splits[n] is None]
        if missing:
            raise ValueError(f"task {self.name!r} needs split(s) {missing}; got {sorted(splits)}")
        empty = [n for n in names if len(splits[n]) == 0]
        if empty:
            raise ValueError(f"task {self.name!r}: split(s) {empty} are empty")
        return [splits[n] for n in names]

    def target_spec(self, dataset: Any, target: str) -> Any:
        """The ``TaskSpec`` for ``target``; an unknown target raises ``TaskConfigError`` with what exists."""
        specs = getattr(dataset, "task_specs", {})
        if target not in specs:
            raise TaskConfigError(
                self.name, "target", f"{dataset!r} provides no downstream task {target!r}", value=target,
                allowed=sorted(specs),
            )
        return specs[target]

    def check_level(self, dataset: Any, level: str) -> None:
        """``level`` must be one of the dataset's levels (``TaskConfigError`` otherwise)."""
        if level not in dataset.levels:
            raise TaskConfigError(self.name, "level", f"{dataset!r} has no level {level!r}", value=level, allowed=list(dataset.levels))

