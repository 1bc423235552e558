"""Check a grid before running it: every distinct configuration is built once, so a bad option or bad data
stops the run with exit status 2 and the full list of problems, instead of failing cell after cell (or
inside a cluster job, after a full pretraining).

Per distinct config part, once:

- **data**: ``build_dataset(cfg.data)`` (parsing, validation, splits); the training split must hold at least
  one batch (``train.batch_size``), and a batch must split evenly over the processes of a cell;
- **objective**: built with its options; the levels it uses must be levels of the data;
- **model**: built on the meta device without loading weights (cheap at any size; weight paths are still
  checked to exist), so a bad tower name, option or path is found now;
- **tasks**: every run of the cell's evaluation plan (:func:`bench.suites.eval_plan`: ``tasks`` entries, label
  fraction lists, ``eval.suite``) built with its options, then checked against the dataset it runs on: the
  target is declared, the splits the task reads exist and are not empty, the level exists; a suite's (or a
  task entry's) dataset is built once per distinct data config, and refused when it shares an image, a
  sample id or a patient with the pretraining corpus;
- **model.init**: the path exists (a cell folder must hold ``checkpoints/encoder.pt``);
- **device**: ``train.device`` is available, when the cells run on this machine (inline and local launchers).

Everything found is raised together as one :class:`PreflightError` (a :class:`~bench.errors.ConfigError`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from omegaconf import OmegaConf

from .cell import build_objective
from .config import to_container
from .errors import ConfigError
from .grid import Cell

log = logging.getLogger(__name__)


class PreflightError(ConfigError):
    """A configuration or data problem found before running; ``str()`` lists every problem."""


def _key(node: Any) -> str:
    if OmegaConf.is_config(node):
        node = to_container(node)
    return json.dumps(node, sort_keys=True, default=str)


def _describe(e: BaseException) -> str:
    if isinstance(e, ConfigError):
        return str(e)
    return f"{type(e).__name__}: {e}"


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.seen: set[tuple] = set()
        self.data: dict[str, Any] = {}
        self.hashes: dict[int, Any] = {}

    def once(self, *key: Any) -> bool:
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def fail(self, what: str, cell: Cell, e: BaseException) -> None:
        self.problems.append(f"{what} ({cell.label}, cell {cell.id}): {_describe(e)}")

    # -- the parts ----------------------------------------------------------------------------------------
    def dataset(self, cell: Cell):
        from .data import SPLITS, build_dataset

        k = _key(cell.config.data)
        if k not in self.data:
            try:
                data = build_dataset(cell.config.data)
                self.data[k] = (data, {s: data.split(s) for s in SPLITS})
            except Exception as e:  # noqa: BLE001 - every problem is reported, none is a traceback
                self.data[k] = None
                self.fail("data", cell, e)
        return self.data[k]

    def training(self, cell: Cell, built) -> None:
        cfg = cell.config
        if cfg.get("eval_only", False) is True:
            return  # nothing trains
        _, splits = built
        n, bs = len(splits["train"]), int(cfg.train.batch_size)
        world = _world_size(cfg)
        if not self.once("train", _key(cfg.data), bs, world):
            return
        if n == 0:
            self.problems.append(f"data ({cell.label}, cell {cell.id}): no training samples (no sample has split=train)")
        elif n < bs:
            self.problems.append(f"train ({cell.label}, cell {cell.id}): train.batch_size={bs} is larger than the "
                                 f"training split ({n} samples): no step could run; allowed: at most {n}")
        if world > 1 and bs % world:
            self.problems.append(f"train ({cell.label}, cell {cell.id}): train.batch_size={bs} must be divisible by the "
                                 f"{world} processes of a cell (launcher.tasks_per_node)")

    def objective(self, cell: Cell, built):
        cfg = cell.config
        try:
            objective = build_objective(cfg)
        except Exception as e:  # noqa: BLE001
            if self.once("objective", _key(cfg.objective)):
                self.fail("objective", cell, e)
            return None
        if built is not None and self.once("objective-levels", _key(cfg.objective), _key(cfg.data)):
            data, _ = built
            used = objective.levels_used(list(data.levels))
            absent = [g for g in used if g not in data.levels]
            if absent:
                self.problems.append(f"objective ({cell.label}, cell {cell.id}): objective.name={cfg.objective.name} "
                                     f"uses level(s) {absent} absent from the data; allowed: {list(data.levels)}")
        return objective

    def model(self, cell: Cell, objective) -> None:
        cfg = cell.config
        if not self.once("model", _key(cfg.image), _key(cfg.text), _key(cfg.model), _key(cfg.data.resolution),
                         _key(cfg.objective)):
            return
        import torch

        from .models import build_model
        from .models.common import rebuilding

        try:
            from .models.init import resolve_init

            if resolve_init(cfg.model.get("init")) is None:  # model.init: the file is read by the cell
                with rebuilding({}), torch.device("meta"):
                    build_model(cfg, objective)
        except Exception as e:  # noqa: BLE001
            self.fail("model", cell, e)

    def tasks(self, cell: Cell, built) -> None:
        """Every task run of the cell's evaluation plan, checked against the dataset it runs on; the datasets
        of a suite or of a task entry are built once per distinct data config and checked for overlap with
        the pretraining corpus."""
        from .suites import eval_plan

        cfg = cell.config
        try:
            plan = eval_plan(cfg)
        except Exception as e:  # noqa: BLE001
            if self.once("plan", _key(cfg.tasks), _key(cfg.eval)):
                self.fail("eval", cell, e)
            return
        for entry in plan:
            splits = built[1] if entry.data is None and built is not None else None
            dkey = _key(cfg.data) if entry.data is None else _key(entry.data)
            if entry.data is not None:
                other = self.other_dataset(cell, entry)
                if other is None:
                    continue
                splits = other[1]
                if built is not None and self.once("overlap", _key(cfg.data), dkey):
                    self.overlap(cell, entry, built[0], other[0])
            for run in entry.runs:
                if not self.once("task", _key(run.entry), run.key, dkey):
                    continue
                try:
                    task = tasks_build(run.name, run.options)
                    if splits is not None:
                        task.check(splits)
                except Exception as e:  # noqa: BLE001
                    where = "tasks" if entry.data is None else entry.where
                    self.problems.append(f"{where}: task {run.entry!r} ({cell.label}, cell {cell.id}): {_describe(e)}")

    def other_dataset(self, cell: Cell, entry):
        from .data import SPLITS, build_dataset

        k = _key(entry.data)
        if k not in self.data:
            try:
                data = build_dataset(entry.data)
                self.data[k] = (data, {s: data.split(s) for s in SPLITS})
            except Exception as e:  # noqa: BLE001
                self.data[k] = None
                self.problems.append(f"{entry.where}: data {entry.data} ({cell.label}, cell {cell.id}): {_describe(e)}")
        return self.data[k]

    def overlap(self, cell: Cell, entry, pretrain, other) -> None:
        from .overlap import check_overlap

        try:
            check_overlap(pretrain, other, pretrain_name=f"the pretraining corpus (data: {_key(cell.config.data)})",
                          other_name=f"dataset {entry.name!r} ({entry.where})", hashes=self.hashes)
        except Exception as e:  # noqa: BLE001
            self.problems.append(f"{entry.where} ({cell.label}, cell {cell.id}): {_describe(e)}")

    def device(self, cell: Cell) -> None:
        cfg = cell.config
        if cfg.launcher.get("name", "inline") not in ("inline", "local") or not self.once("device", str(cfg.train.device)):
            return
        try:
            from .train import resolve_device

            dev = resolve_device(str(cfg.train.device))
            if dev.type == "cuda":
                import torch

                if not torch.cuda.is_available() or (dev.index is not None and dev.index >= torch.cuda.device_count()):
                    raise ConfigError(f"train.device={cfg.train.device} is not available on this machine")
        except Exception as e:  # noqa: BLE001
            self.problems.append(f"train.device={cfg.train.device!r}: {_describe(e)}; allowed: auto, cpu, cuda, cuda:N "
                                 "(a GPU this machine has)")


def tasks_build(name: str, options: dict):
    import tasks

    return tasks.build(name, **options)


def _world_size(cfg) -> int:
    launcher = to_container(cfg.launcher)
    return int(launcher.get("tasks_per_node") or 1) if launcher.get("name") in ("local", "slurm") else 1


def check(cells: list[Cell]) -> None:
    """Build everything the cells need once per distinct configuration; raise :class:`PreflightError` with
    every problem found."""
    c = _Checker()
    for cell in cells:
        built = c.dataset(cell)
        if built is not None:
            c.training(cell, built)
        objective = c.objective(cell, built)
        c.model(cell, objective)
        c.tasks(cell, built)
        c.device(cell)
    if c.problems:
        raise PreflightError(f"{len(c.problems)} problem(s) found before running:\n- " + "\n- ".join(c.problems))
