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

    # -- what the task needs of the data (checked before any training, by the preflight) ----------------------
    def needed_splits(self, splits: Mapping[str, Any]) -> tuple[str, ...]:
        """The splits :meth:`run` reads (subclasses narrow it; ``splits`` may tell, e.g. the target's kind)."""
        return ("train", "val", "test")

    def check(self, splits: Mapping[str, Any]) -> None:
        """Cheap check that the data can serve this task: every needed split present and non-empty, the
        ``target`` declared by each of them, the ``level`` present. Raises :class:`TaskConfigError`."""
        names = self.needed_splits(splits)
        data = self.require_splits(splits, *names)
        target = getattr(self.options, "target", None)
        if self.needs_target and target:
            specs = {self.target_spec(ds, target) for ds in data}
            if len(specs) > 1:
                raise TaskConfigError.from_message(self.name, f"target={target!r} is declared differently by the "
                                                   f"splits {list(names)}", option="target", value=target)
        level = getattr(self.options, "level", None)
        if level:
            self.check_level(data[0], level)

    # -- shared run-time checks ---------------------------------------------------------------------------
    def require_splits(self, splits: Mapping[str, Any], *names: str) -> list[Any]:
        """The datasets for ``names``; a missing or empty one raises :class:`TaskConfigError` saying what
        is there."""
        have = {n: (0 if splits.get(n) is None else len(splits[n])) for n in splits}
        bad = [n for n in names if not have.get(n)]
        if bad:
            some = next((splits[n] for n in splits if splits[n] is not None), None)
            where = f" of {getattr(some, 'name', 'the data')}" if some is not None else ""
            counts = ", ".join(f"{n}: {k}" for n, k in have.items()) or "none"
            raise TaskConfigError.from_message(
                self.name, f"needs the split(s) {bad}, which the data{where} does not have or are empty (samples "
                f"per split: {counts}); give the data those splits (a split field, or data.val_fraction / "
                "data.test_fraction for drawn splits) or evaluate on a dataset that has them")
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

