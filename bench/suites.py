"""Downstream suites and the evaluation plan of a cell (torch-free: the report and the preflight use it).

A **suite** is a YAML file listing datasets, each with its own data options (any ``data.format``, its own
splits) and the tasks evaluated on it::

    name: my_suite
    description: two downstream datasets
    datasets:
      - name: dr                                  # the metric prefix: dr/linear_probe/dr_grade/auc
        data: {format: fundus_synth, variant: dr}
        tasks: [linear_probe/dr_grade]
      - name: clinic
        data: {format: jsonl, path: /data/clinic.jsonl}
        tasks:
          - {name: linear_probe, target: finding, label_fraction: [0.01, 0.1, 1.0]}

Packaged suites live in ``bench/suites/NAME.yaml`` (``eval.suite=NAME``); any other file by path
(``eval.suite=path/to/suite.yaml``). ``eval.suite_datasets=[dr]`` keeps a subset of the suite's datasets.

A **task entry** of the run config (``tasks``) may also name its own dataset: ``data: {...}`` (evaluated on
that dataset, named by ``dataset: NAME`` or after its format), or ``dataset: NAME`` alone (a dataset of the
suite, e.g. to add a fine-tune on one suite dataset in a grid). Entries without either evaluate on the
pretraining dataset's splits, with today's keys.

**Metric keys**: ``<dataset>/<task>/<target>/<metric>`` for a dataset of the suite or of a task entry;
``<task>/<target>/<metric>`` on the pretraining dataset. **Label fractions**: ``label_fraction: [0.01, 1.0]``
in one entry runs the task once per fraction, each under ``<task>/<target>/lf<fraction>/<metric>`` (the
fraction as Python's ``repr`` of the float: ``lf0.01``, ``lf1.0``); a single number keeps the plain key.
A data option a suite dataset does not set falls back to the cell's own ``data.resolution``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, did_you_mean
from .options import check_known
from .yamlio import load as load_yaml

__all__ = [
    "SUITES_DIR",
    "EvalDataset",
    "Suite",
    "SuiteDataset",
    "TaskRun",
    "expand_entry",
    "eval_plan",
    "load_suite",
    "packaged_suites",
    "suite_path",
    "task_keys",
]

SUITES_DIR = Path(__file__).parent / "suites"
SUITE_KEYS = ("name", "description", "datasets")
DATASET_KEYS = ("name", "data", "tasks")


class SuiteError(ConfigError):
    """A suite file (or a task entry's dataset) is wrong: names the file, the entry and what is allowed."""


@dataclass(frozen=True)
class SuiteDataset:
    name: str
    data: dict
    tasks: list
    where: str  # "suite FILE: datasets[i] (NAME)" for messages


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    datasets: tuple[SuiteDataset, ...]

    def content(self) -> dict:
        """What of the suite changes what a cell computes (in the cell id)."""
        return {"name": self.name, "datasets": [{"name": d.name, "data": d.data, "tasks": d.tasks} for d in self.datasets]}


@dataclass
class TaskRun:
    """One task run: its metric key (without the dataset prefix), the task name and its options."""

    key: str
    name: str
    options: dict
    entry: Any  # the entry as written (for messages)


@dataclass
class EvalDataset:
    """A dataset a cell evaluates on: ``name`` (None = the pretraining dataset), its data options (None = the
    cell's ``data``), and its task runs."""

    name: str | None
    data: dict | None
    where: str
    runs: list[TaskRun] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return "" if self.name is None else f"{self.name}/"


def packaged_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def suite_path(name: str) -> Path:
    p = Path(str(name))
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise SuiteError(f"eval.suite={name!r}: suite file {p} does not exist", key="eval.suite", value=name)
        return p
    packaged = SUITES_DIR / f"{name}.yaml"
    if not packaged.is_file():
        names = packaged_suites()
        raise SuiteError(f"eval.suite={name!r} is unknown{did_you_mean(str(name), names)}; packaged suites: {names}, "
                         "or give a path to a suite YAML file", key="eval.suite", value=name, allowed=names)
    return packaged


def _plain(x: Any) -> Any:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(x):
            return OmegaConf.to_container(x, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return copy.deepcopy(x)


def _task_name(entry: Any, where: str) -> str:
    if isinstance(entry, str):
        if "/" not in entry:
            raise SuiteError(f"{where}: task {entry!r} must be 'TASK/TARGET' (e.g. linear_probe/disease_multilabel) "
                             "or a mapping {name: TASK, target: ...}")
        return entry.split("/", 1)[0]
    if not isinstance(entry, dict) or "name" not in entry:
        raise SuiteError(f"{where}: task entry {entry!r} needs a 'name' (TASK/TARGET or {{name: TASK, ...}})")
    return str(entry["name"])


def _check_task_names(tasks: list, where: str) -> None:
    import tasks as task_registry

    for j, entry in enumerate(tasks):
        name = _task_name(entry, f"{where}: tasks[{j}]")
        if name not in task_registry.TASKS:
            allowed = sorted(task_registry.TASKS)
            raise SuiteError(f"{where}: tasks[{j}]: unknown task {name!r}{did_you_mean(name, allowed)}; allowed: {allowed}",
                             value=name, allowed=allowed)
        if isinstance(entry, dict) and ("data" in entry or "dataset" in entry):
            raise SuiteError(f"{where}: tasks[{j}]: a suite dataset's task evaluates on that dataset; remove "
                             f"{'data' if 'data' in entry else 'dataset'} from it")


def load_suite(name: str, check_tasks: bool = True) -> Suite:
    """Read and check a suite file (structure, keys, data formats and, with ``check_tasks``, task names); the
    datasets themselves are built by the preflight and the cell. Read once per file version (memoised by path,
    size and modification time)."""
    path = suite_path(name)
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    suite = _MEMO.get(memo_key)
    if suite is None:
        suite = _read_suite(path)
        _MEMO[memo_key] = suite
    if check_tasks:
        for d in suite.datasets:
            _check_task_names(d.tasks, d.where)
    return suite


_MEMO: dict[tuple, Suite] = {}


def _read_suite(path: Path) -> Suite:
    from .data import FORMATS

    try:
        raw = load_yaml(path.read_text())
    except yaml.YAMLError as e:
        raise SuiteError(f"suite {path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"suite {path}: a suite file must be a mapping with keys {list(SUITE_KEYS)}")
    try:
        check_known(raw, SUITE_KEYS, owner=f"a suite file ({path})")
    except ConfigError as e:
        raise SuiteError(f"suite {path}: {e}", key=e.key) from None
    datasets = raw.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise SuiteError(f"suite {path}: datasets must be a non-empty list of {{name, data, tasks}}")
    out, names = [], set()
    for i, d in enumerate(datasets):
        where = f"suite {path}: datasets[{i}]"
        if not isinstance(d, dict):
            raise SuiteError(f"{where}: must be a mapping with keys {list(DATASET_KEYS)}, got {d!r}")
        try:
            check_known(d, DATASET_KEYS, owner="a suite dataset")
        except ConfigError as e:
            raise SuiteError(f"{where}: {e}", key=e.key) from None
        dname = d.get("name")
        if not isinstance(dname, str) or not dname or "/" in dname:
            raise SuiteError(f"{where}: name={dname!r} must be a non-empty name without '/' (it prefixes the metric keys)")
        where = f"{where} ({dname})"
        if dname in names:
            raise SuiteError(f"{where}: the name {dname!r} is used twice")
        names.add(dname)
        data = d.get("data")
        if not isinstance(data, dict) or "format" not in data:
            raise SuiteError(f"{where}: data must be a mapping with a format (one of {sorted(FORMATS)})",
                             allowed=sorted(FORMATS))
        if data["format"] not in FORMATS:
            fmt = str(data["format"])
            raise SuiteError(f"{where}: data.format={fmt!r} is unknown{did_you_mean(fmt, FORMATS)}; allowed: "
                             f"{sorted(FORMATS)}", key="data.format", value=fmt, allowed=sorted(FORMATS))
        tasks = d.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise SuiteError(f"{where}: tasks must be a non-empty list of task entries")
        for j, entry in enumerate(tasks):
            _task_name(entry, f"{where}: tasks[{j}]")
        out.append(SuiteDataset(dname, dict(data), list(tasks), where))
    sname = raw.get("name") or path.stem
    return Suite(str(sname), path, str(raw.get("description") or ""), tuple(out))


def _lf_tag(f: float) -> str:
    return f"lf{float(f)!r}"


def expand_entry(entry: Any) -> list[TaskRun]:
    """A task entry -> its runs: ``TASK/TARGET`` or ``{name, target, key?, label_fraction?, ...}``; a list of
    label fractions gives one run per fraction (key ``<key>/lf<fraction>``). ``data`` / ``dataset`` are
    removed (they say where the task runs, see :func:`eval_plan`)."""
    if isinstance(entry, str):
        if "/" not in entry:
            raise ConfigError(f"tasks entry {entry!r} must be 'TASK/TARGET' (e.g. linear_probe/disease_multilabel) or a mapping")
        name, target = entry.split("/", 1)
        return [TaskRun(entry, name, {"target": target}, entry)]
    options = _plain(dict(entry))
    if "name" not in options:
        raise ConfigError(f"tasks entry {entry} needs a 'name'")
    options.pop("data", None)
    options.pop("dataset", None)
    name = options.pop("name")
    key = options.pop("key", None) or (f"{name}/{options['target']}" if "target" in options else name)
    lf = options.get("label_fraction")
    if isinstance(lf, (list, tuple)):
        if not lf:
            raise ConfigError(f"tasks entry {entry}: label_fraction=[] must list at least one fraction")
        runs = []
        for f in lf:
            try:
                f = float(f)
            except (TypeError, ValueError):
                raise ConfigError(f"tasks entry {entry}: label_fraction {f!r} must be a number in (0, 1]") from None
            runs.append(TaskRun(f"{key}/{_lf_tag(f)}", name, {**options, "label_fraction": f}, entry))
        return runs
    return [TaskRun(key, name, options, entry)]


def _resolution_default(data: dict, cfg_data: dict) -> dict:
    data = dict(data)
    if data.get("resolution") is None and cfg_data.get("resolution") is not None:
        data["resolution"] = cfg_data["resolution"]
    return data


def eval_plan(cfg: Any, check_tasks: bool = True) -> list[EvalDataset]:
    """The datasets a cell evaluates on and the task runs on each, in order: the pretraining dataset (entries
    of ``tasks`` without data), then the datasets of ``tasks`` entries with ``data``, then the suite's
    (``eval.suite``, filtered by ``eval.suite_datasets``). Entries naming a suite dataset (``dataset: NAME``
    without ``data``) join that dataset. Raises :class:`SuiteError` / :class:`ConfigError`.
    ``check_tasks=False`` skips checking the suite's task names against the registry (no torch import: the
    report can call it on a stored ``config.yaml`` to get every metric prefix of a cell)."""
    c = _plain(cfg)
    cfg_data = c.get("data") or {}
    ev = c.get("eval") or {}
    suite = load_suite(ev["suite"], check_tasks=check_tasks) if ev.get("suite") else None
    suite_ds = {d.name: d for d in suite.datasets} if suite else {}
    keep = ev.get("suite_datasets")
    if keep is not None:
        if suite is None:
            raise ConfigError("eval.suite_datasets is set but eval.suite is not", key="eval.suite_datasets")
        unknown = [k for k in keep if k not in suite_ds]
        if unknown:
            raise SuiteError(f"eval.suite_datasets names {unknown}{did_you_mean(str(unknown[0]), suite_ds)}, not "
                             f"datasets of suite {suite.path}; allowed: {list(suite_ds)}", key="eval.suite_datasets",
                             value=unknown, allowed=list(suite_ds))
    plan: dict[str | None, EvalDataset] = {None: EvalDataset(None, None, "the pretraining dataset (data)")}
    if suite is not None:
        for d in suite.datasets:
            if keep is None or d.name in keep:
                plan[d.name] = EvalDataset(d.name, _resolution_default(d.data, cfg_data), d.where)
    for i, entry in enumerate(c.get("tasks") or []):
        where = f"tasks[{i}]"
        target: str | None = None
        if isinstance(entry, dict) and ("data" in entry or "dataset" in entry):
            data = entry.get("data")
            dname = entry.get("dataset")
            if data is None:
                if dname not in plan:
                    allowed = [k for k in plan if k is not None]
                    raise SuiteError(f"{where}: dataset={dname!r} is not a dataset of the suite; give the entry its own "
                                     f"data: {{format: ...}} or name one of {allowed}", key="dataset", value=dname,
                                     allowed=allowed)
                target = dname
            else:
                if not isinstance(data, dict) or "format" not in data:
                    raise SuiteError(f"{where}: data={data!r} must be a mapping with a format")
                if not dname:
                    dname = f"{data['format']}-{data['variant']}" if data.get("variant") else str(data["format"])
                dname = str(dname)
                if "/" in dname:
                    raise SuiteError(f"{where}: dataset={dname!r} must not contain '/'")
                data = _resolution_default(data, cfg_data)
                if dname in plan and plan[dname].data != data:
                    raise SuiteError(f"{where}: dataset {dname!r} is already defined with other data options "
                                     f"({plan[dname].where}); give this one another dataset name")
                plan.setdefault(dname, EvalDataset(dname, data, where))
                target = dname
        for run in expand_entry(entry):
            plan[target].runs.append(run)
    if suite is not None:
        for d in suite.datasets:
            if d.name in plan:
                for entry in d.tasks:
                    plan[d.name].runs.extend(expand_entry(entry))
    out = [e for e in plan.values() if e.runs]
    for e in out:
        keys = [r.key for r in e.runs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ConfigError(f"{e.where}: the task key(s) {dup} are used twice on one dataset; give one of them a "
                              "distinct 'key'")
    return out


def suite_identity(name: str) -> dict:
    """The suite's content, for the cell id (a changed suite file is a new cell)."""
    return json.loads(json.dumps(load_suite(name, check_tasks=False).content(), default=str))


def task_keys(cfg: Any) -> list[dict]:
    """Every metric prefix a cell writes, for readers of stored configs (the report; torch-free): one dict per
    task run with ``key`` (``[<dataset>/]<task key>``: the metric columns are ``<key>/<metric>``), ``dataset``
    (None: the pretraining dataset), ``name`` (the task), ``base`` (``<task>/<target>``) and
    ``label_fraction`` (None when the entry does not set one)."""
    out = []
    for entry in eval_plan(cfg, check_tasks=False):
        for run in entry.runs:
            target = run.options.get("target")
            lf = run.options.get("label_fraction")
            out.append({"key": entry.prefix + run.key, "dataset": entry.name, "name": run.name,
                        "base": f"{run.name}/{target}" if target else run.name,
                        "label_fraction": None if lf is None else float(lf)})
    return out
