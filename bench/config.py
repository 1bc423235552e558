"""Run configuration: defaults, grid files, ``key=value`` overrides, validation.

A run config is an OmegaConf tree. Its top-level keys are fixed (an unknown key is an error naming it);
``data``, ``objective``, ``image`` and ``text`` are open sections whose keys are validated by the builder
they are handed to (the data format, the objective, the tower), which names the key and what is allowed.

Keys that control *how* a grid runs rather than *what* a cell computes (``results_dir``, ``dry_run``,
``rerun_failed``, ``launcher``, ``label``, ``grid``, ``train.checkpoint_every_steps``) are left out of the
cell id.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

GRIDS_DIR = Path(__file__).parent / "grids"

DEFAULTS: dict[str, Any] = {
    "grid": None,  # grid name (set by the runner)
    "label": None,  # row label in reports; default derived from the objective
    "seed": 0,
    "results_dir": "results",
    "dry_run": False,
    "rerun_failed": False,
    "rerun_corrupt": False,  # repair corrupt cells (bench.store.repair) and run them again
    "preflight": True,
    "report": {"rows": "label", "baseline": None},
    "launcher": {"name": "inline"},
    "data": {"format": "fundus_synth", "resolution": 64, "levels": None},
    "image": {"name": "vit_tiny_custom"},
    "text": {"name": "tiny_transformer", "context_length": 32},
    "model": {
        "embed_dim": 128,
        "normalize_embeddings": True,
        "logit_scale_init": None,  # None: the objective's preference, else 1/0.07
        "logit_scale_max": 100.0,
        "logit_bias_init": None,  # None: only objectives that need a bias (SigLIP) get one
        "precision": "auto",  # autocast of the forward: auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
        "compile": False,  # torch.compile both towers (state dict keys unchanged)
    },
    "objective": {"name": "clip"},
    "train": {
        "epochs": 10,
        "batch_size": 64,
        "lr": 3e-4,  # 1e-3 collapses the tiny towers to one point (loss stuck at ln B)
        "weight_decay": 0.05,
        "warmup_epochs": 1.0,
        "betas": [0.9, 0.98],
        "grad_clip": 10.0,
        "device": "auto",  # auto = cuda if available, else cpu
        "threads": 0,  # torch CPU threads; 0 = leave torch's default
        "augment": True,  # random horizontal flip
        "log_every": 10,
        "deterministic": False,
        # also save checkpoints/last.pt every N optimiser steps (0: only at epoch ends and when a
        # preemption/timeout signal arrives); not part of the cell id
        "checkpoint_every_steps": 0,
    },
    "tasks": ["linear_probe/disease_multilabel"],
    "eval": {"at_init": False, "batch_size": 256, "feature_cache": True},
}

# keys that do not change what a cell computes (dotted keys name one key inside a section)
NON_IDENTITY_KEYS = (
    "grid",
    "label",
    "results_dir",
    "dry_run",
    "rerun_failed",
    "rerun_corrupt",
    "preflight",
    "launcher",
    "report",
    "train.checkpoint_every_steps",
)
OPEN_SECTIONS = ("data", "objective", "image", "text", "launcher", "report")


from .errors import ConfigError  # noqa: E402  (the one error root; re-exported here)


def defaults() -> DictConfig:
    cfg = OmegaConf.create(DEFAULTS)
    OmegaConf.set_struct(cfg, True)
    for key in OPEN_SECTIONS:
        OmegaConf.set_struct(cfg[key], False)
    return cfg


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(node, (dict, DictConfig)):
        for k, v in node.items():
            out.append(prefix + str(k))
            out.extend(_all_keys(v, prefix + str(k) + "."))
    return out


def check_keys(overrides: DictConfig | dict, where: str) -> None:
    """Raise if ``overrides`` sets a key the defaults do not know (outside the open sections)."""
    known = set(_all_keys(DEFAULTS))
    for key in _all_keys(overrides):
        top = key.split(".")[0]
        if top in OPEN_SECTIONS:
            continue
        if key not in known:
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            if parent and parent not in known:
                continue  # reported for the parent already
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")


def merge(*parts: DictConfig | dict) -> DictConfig:
    """Merge config parts over the defaults (later parts win); lists are replaced, not merged."""
    cfg = defaults()
    for part in parts:
        if part is None:
            continue
        part = OmegaConf.create(part) if not isinstance(part, DictConfig) else part
        cfg = OmegaConf.merge(cfg, part)
    return cfg


def parse_overrides(args: Iterable[str]) -> DictConfig:
    """``["a.b=1", "objective.weights=[0.5,1,1]"]`` -> a config tree (YAML values)."""
    args = list(args)
    for a in args:
        if "=" not in a:
            raise ConfigError(f"override {a!r} is not of the form key=value (see --help)")
    try:
        return OmegaConf.from_dotlist(args)
    except Exception as e:  # omegaconf grammar errors
        raise ConfigError(f"cannot parse overrides {args}: {e}") from e


def grid_path(name: str) -> Path:
    """``smoke`` -> the packaged ``bench/grids/smoke.yaml``; a path to a YAML file is used as is."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.is_file():  # a folder named like a grid (./objectives) is not a grid file
        if not p.exists():
            raise ConfigError(f"grid file {p} does not exist")
        return p
    packaged = GRIDS_DIR / f"{name}.yaml"
    if not packaged.exists():
        names = sorted(q.stem for q in GRIDS_DIR.glob("*.yaml"))
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"grid={name!r} is unknown{hint}; packaged grids: {names}, or give a path to a YAML file")
    return packaged


GRID_KEYS = ("name", "description", "fixed", "axes", "seeds", "report")


def load_grid_file(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a grid file must be a mapping with keys {list(GRID_KEYS)}")
    unknown = sorted(set(raw) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown grid key(s) {unknown}; allowed: {list(GRID_KEYS)}")
    raw.setdefault("name", path.stem)
    return raw


def to_container(cfg: DictConfig | ListConfig) -> Any:
    return OmegaConf.to_container(cfg, resolve=True)
