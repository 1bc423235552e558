"""``launcher.*`` options: the tables of the local and SLURM launchers (checked with :mod:`bench.options`)
and the SLURM profiles (``slurm/profiles/NAME.yaml``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .. import options as _opts
from ..yamlio import load as load_yaml
from .errors import LauncherError

#: folder of the SLURM profiles (``launcher.profile=NAME`` -> ``PROFILES_DIR / NAME.yaml``); the environment
#: variable ``BENCH_SLURM_PROFILES`` points elsewhere
PROFILES_DIR = Path(__file__).resolve().parents[2] / "slurm" / "profiles"


def _mem(key: str, v: Any) -> Any:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
        return v
    if isinstance(v, str) and re.fullmatch(r"\d+(\.\d+)?[KMGT]?B?", v.upper()) is not None:
        return v
    raise LauncherError(f"{key}={v!r} must be GB as a number, or a SLURM size string such as 16G", key=key, value=v)


@dataclass(frozen=True)
class Option:
    """One ``launcher.*`` option: default, type (checked with :mod:`bench.options`), help, check metadata."""

    default: Any
    type: Any
    help: str
    meta: dict = field(default_factory=dict)


_POS = {"min": 1}
_NONNEG = {"min": 0}
_POSNUM = {"min": 0, "min_open": True}

LOCAL_OPTIONS: dict[str, Option] = {
    "parallel": Option(1, int, "cells running at once", _POS),
    "timeout_min": Option(7 * 24 * 60, float, "per-cell time limit, minutes (USR2 `signal_delay_s` before it: checkpoint and restart)", _POSNUM),
    "signal_delay_s": Option(30, int, "seconds between the timeout signal and the kill", _NONNEG),
    "max_num_timeout": Option(3, int, "restarts after a timeout before giving up", _NONNEG),
    "tasks_per_node": Option(1, int, "processes per cell (torch.distributed when > 1)", _POS),
    "gpus": Option(0, int, "GPUs per cell; concurrent cells get disjoint GPUs (slot k uses GPUs k*gpus .. k*gpus+gpus-1)", _NONNEG),
    "setup": Option([], list[str], "shell lines run before each cell's process"),
    "poll_s": Option(1.0, float, "how often the runner checks its jobs, seconds", _POSNUM),
}

#: SLURM resources: the keys a profile may set (``launcher.<key>`` overrides the profile)
SLURM_RESOURCES: dict[str, Option] = {
    "partition": Option(None, Optional[str], "sbatch --partition"),
    "account": Option(None, Optional[str], "sbatch --account"),
    "qos": Option(None, Optional[str], "sbatch --qos"),
    "time": Option(60, int, "time limit per cell, minutes (sbatch --time)", _POS),
    "cpus": Option(1, int, "CPUs per task (sbatch --cpus-per-task)", _POS),
    "gpus": Option(0, int, "GPUs per cell (sbatch --gpus-per-node)", _NONNEG),
    "mem": Option(None, Any, "memory per cell: GB as a number, or a SLURM size string such as 16G (sbatch --mem)", {"check": _mem}),
    "constraint": Option(None, Optional[str], "sbatch --constraint"),
    "setup": Option([], list[str], "lines run in the sbatch script before srun"),
    "tasks_per_node": Option(1, int, "processes per cell (torch.distributed when > 1)", _POS),
    "array_parallelism": Option(256, int, "array elements running at once (%N)", _POS),
    "signal_delay_s": Option(90, int, "USR2 this many seconds before the time limit (checkpoint + requeue)", _NONNEG),
    "max_num_timeout": Option(3, int, "requeues after a timeout before giving up", _NONNEG),
    "additional": Option({}, dict, "extra sbatch options, e.g. {exclude: node1}"),
}

SLURM_OPTIONS: dict[str, Option] = {
    "profile": Option(None, Optional[str], "slurm/profiles/<profile>.yaml (or a YAML path): resources, overridden by launcher.* keys"),
    **SLURM_RESOURCES,
    "wait": Option(True, bool, "wait for the jobs (false: submit, print the job id, exit 0)"),
    "poll_s": Option(10.0, float, "how often the runner polls squeue/sacct, seconds", _POSNUM),
    "job_name": Option(None, Optional[str], "SLURM job name (default bench-<grid>)"),
}


def _check(name: str, given: dict, options: dict[str, Option], where: str = "launcher") -> dict:
    """``given`` merged over the defaults of ``options``; unknown keys and bad values raise, naming the key
    (:mod:`bench.options` rules)."""
    prefix = f"{where}." if where else ""
    owner = f"launcher.name={name}" if where else "a SLURM profile"
    _opts.check_known(given, list(options), prefix=prefix, owner=owner, error=LauncherError)
    out = {k: o.default for k, o in options.items()}
    for k, v in given.items():
        o = options[k]
        out[k] = None if v is None and o.default is None else _opts.coerce(f"{prefix}{k}", v, o.type, o.meta, error=LauncherError)
    return out


def list_profiles() -> list[str]:
    folder = Path(os.environ.get("BENCH_SLURM_PROFILES", PROFILES_DIR))
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_profile(name: str) -> tuple[Path, dict]:
    """``local`` -> ``slurm/profiles/local.yaml`` (or a path to a YAML file): its resources, validated."""
    folder = Path(os.environ.get("BENCH_SLURM_PROFILES", PROFILES_DIR))
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = folder / f"{name}.yaml"
    if not path.exists():
        raise LauncherError(f"launcher.profile={name!r}: no profile {path}; available in {folder}: {list_profiles()}")
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise LauncherError(f"launcher.profile={name!r}: {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise LauncherError(f"launcher.profile={name!r}: {path} must be a mapping of SLURM resources")
    data.pop("description", None)
    try:
        return path, _check("slurm", data, SLURM_RESOURCES, where="")
    except LauncherError as e:
        raise LauncherError(f"profile {path}: {e} (a profile may also set description)", key=e.key) from None
