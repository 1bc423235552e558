"""Shared machinery of the model layer: the error type, the two tower registries, option checks, local-path
checks (nothing is ever downloaded), reading weight files, matching a state dict against a module with a
clear report, and the build context used when a model is rebuilt from a checkpoint (freezing: ``freeze``).
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import difflib
import logging
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

log = logging.getLogger("bench.models")

IMAGE_TOWERS: dict[str, Callable[..., nn.Module]] = {}
TEXT_TOWERS: dict[str, Callable[..., nn.Module]] = {}


from .. import options as _options
from ..errors import ModelConfigError  # noqa: E402  (re-exported: the model layer's ConfigError)


def _register(table: dict, name: str, options: type | None = None):
    """Register a tower builder under ``name``; ``options`` (a dataclass) documents and checks its options."""

    def deco(fn):
        fn.options = options
        table[name] = fn
        return fn

    return deco


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` close matches of ``name`` (case-insensitive) among ``candidates``."""
    candidates = list(candidates)
    lower = {c.lower(): c for c in candidates}
    found = difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.6)
    return [lower[f] for f in found]


def _hint(close: Sequence[str]) -> str:
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _unknown(kind: str, name: str, table: dict, extra: Iterable[str] = ()) -> ModelConfigError:
    close = close_matches(name, list(table) + list(extra))
    return ModelConfigError(f"{kind}.name={name!r} is unknown{_hint(close)}; allowed: {sorted(table)}"
                            + (" or any timm model name" if kind == "image" else ""))


def _check_keys(kind: str, cfg: dict, spec: type) -> None:
    """Check a tower's options against its options dataclass ``spec`` (:mod:`bench.options` rules: unknown
    keys with close matches, types, bounds, choices); the given values are converted in place, so the
    builder reads ``cfg.get(key, default)`` as before. The common tower options (``freeze``,
    ``grad_checkpointing``, ``mean``, ``std``) are handled by :class:`~bench.models.TwoTower` before."""
    given = {k: v for k, v in cfg.items() if k != "name"}
    parsed = _options.parse(spec, given, prefix=f"{kind}.", owner=f"{kind}.name={cfg.get('name')}",
                            error=ModelConfigError, drop_none=True)
    for k, v in given.items():
        if v is not None:
            cfg[k] = getattr(parsed, k)


def as_bool(key: str, value: Any) -> bool:
    """``true``/``false`` (the harness's one boolean rule, :func:`bench.options.as_bool`)."""
    return _options.as_bool(key, value, error=ModelConfigError)


# -- local paths only ---------------------------------------------------------------------------------------
_HUB_PREFIXES = ("hf-hub:", "hf_hub:", "hf:", "timm/", "http://", "https://", "s3://", "gs://")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz", ".npy", ".tar", ".pkl")


def _offline_error(key: str, value: Any) -> ModelConfigError:
    return ModelConfigError(
        f"{key}={value!r} looks like a hub name or a pretrained tag; the harness runs offline and accepts only "
        f"local paths (a weights file or model folder you already have). Fetch the weights on a machine with "
        f"network access and give {key}=/path/to/them"
    )


def local_path(key: str, value: Any, *, kind: str = "any") -> Path | None:
    """Check that ``value`` names an existing local file/folder; ``None``/``false``/``""`` -> ``None``.

    Raises :class:`ModelConfigError` for hub names and pretrained tags (``openai``, ``hf-hub:org/name``,
    ``org/name``, ``true``: only local paths are accepted) and for paths that do not exist.
    ``kind``: ``file``, ``dir`` or ``any``.
    """
    if value is None or value is False or (isinstance(value, str) and value.strip() == ""):
        return None
    if value is True or (isinstance(value, str) and value.lower() in ("true", "yes")):
        raise _offline_error(key, value)
    s = str(value)
    if s.lower().startswith(_HUB_PREFIXES):
        raise _offline_error(key, value)
    p = Path(s).expanduser()
    if p.exists():
        if kind == "file" and not p.is_file():
            raise ModelConfigError(f"{key}={s!r} is a folder; a weights file is expected")
        if kind == "dir" and not p.is_dir():
            raise ModelConfigError(f"{key}={s!r} is a file; a model folder (config.json, tokenizer files, weights) is expected")
        return p
    explicit = s.startswith(("/", ".", "~")) or p.suffix.lower() in _WEIGHT_SUFFIXES
    if not explicit and ("/" not in s or _HUB_ID.match(s)):
        raise ModelConfigError(
            f"{key}={s!r}: no such local path, and it looks like a hub name or a pretrained tag; the harness runs "
            f"offline and accepts only local paths (a weights file or model folder you already have). Fetch the "
            f"weights on a machine with network access and give {key}=/path/to/them"
        )
    what = "folder" if kind == "dir" else "file" if kind == "file" else "file or folder"
    raise ModelConfigError(f"{key}={s!r}: no such {what} (only local paths are accepted)")


# -- reading weight files -----------------------------------------------------------------------------------
_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net", "encoder")
_SAFE_GLOBALS = [argparse.Namespace]  # the released MGLL checkpoints keep their argparse args next to the weights


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


def weights_file(key: str, path: Path) -> Path:
    """A folder -> the one weights file in it (open_clip / HF / timm names first, else a single *.pt/*.pth/...)."""
    if path.is_file():
        return path
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    found = sorted(q for ext in ("*.safetensors", "*.pt", "*.pth", "*.bin", "*.ckpt") for q in path.glob(ext))
    if len(found) == 1:
        return found[0]
    raise ModelConfigError(f"{key}={str(path)!r} is a folder with {len(found)} weight files {[q.name for q in found][:5]}; give the file")


def load_file(key: str, path: Path) -> Any:
    """Read a weights file: safetensors, or ``torch.load(weights_only=True)`` (an argparse ``Namespace`` is
    allowed, as in MGLL checkpoints); a TorchScript archive (OpenAI's ``ViT-L-14.pt``) through ``torch.jit.load``."""
    path = weights_file(key, path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file as load_st

        return load_st(str(path), device="cpu")
    if path.suffix in (".npz", ".npy"):
        raise ModelConfigError(f"{key}={str(path)!r}: numpy (big_vision) weights are not supported; convert them to a torch state dict")
    if _is_torchscript(path):
        log.info("%s: %s is a TorchScript archive; reading its state dict with torch.jit.load", key, path)
        import warnings

        with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.export; OpenAI ships TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
        sd = dict(module.state_dict())
        for k in ("input_resolution", "context_length", "vocab_size"):
            sd.pop(k, None)
        return sd
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise ModelConfigError(f"{key}={str(path)!r}: cannot read it as a weights file with torch.load(weights_only=True): {e}") from e


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(k, str) for k in obj) and any(
        isinstance(v, torch.Tensor) for v in obj.values()
    )


def unwrap_state_dict(key: str, obj: Any, path: Any = None) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: unwraps ``{"state_dict"|"model"|...: ...}`` and a ``module.`` prefix."""
    seen = 0
    while isinstance(obj, dict) and not _is_state_dict(obj) and seen < 3:
        inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], dict)), None)
        if inner is None:
            break
        obj, seen = inner, seen + 1
    if _is_state_dict(obj) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        obj = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not _is_state_dict(obj):
        top = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise ModelConfigError(f"{key}={str(path)!r}: no state dict found in the file (top-level: {top})")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def read_state_dict(key: str, path: Path) -> dict[str, torch.Tensor]:
    """``load_file`` + ``unwrap_state_dict``."""
    return unwrap_state_dict(key, load_file(key, path), path)


def best_prefix(sd: dict[str, torch.Tensor], own_keys: Iterable[str], candidates: Sequence[str]) -> tuple[str, int]:
    """The candidate prefix under which most of ``own_keys`` appear in ``sd`` (first wins on ties)."""
    own = list(own_keys)
    best, count = candidates[0], -1
    for p in candidates:
        c = sum(1 for k in own if p + k in sd)
        if c > count:
            best, count = p, c
    return best, count


def take_prefix(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if not prefix:
        return dict(sd)
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


# -- matching a state dict against a module -----------------------------------------------------------------
_IGNORABLE_MISSING = ("num_batches_tracked",)


def _names(keys: Sequence[str], n: int = 5) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


@dataclass
class LoadReport:
    """What a weights load matched: ``matched``, ``missing`` (the module's keys the file lacks), ``unexpected``
    (the file's keys the module lacks), ``mismatched`` (same key, different shape: ``key: file vs model``)."""

    source: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.matched)} matched"]
        for name in ("missing", "unexpected", "mismatched"):
            keys = getattr(self, name)
            if keys:
                parts.append(f"{len(keys)} {name} ({_names(keys)})")
        return f"{self.source}: " + "; ".join(parts)

    def as_dict(self) -> dict[str, list[str]]:
        return {"matched": list(self.matched), "missing": list(self.missing),
                "unexpected": list(self.unexpected), "mismatched": list(self.mismatched)}


def load_matching(
    module: nn.Module,
    sd: dict[str, torch.Tensor],
    *,
    source: str,
    strict: bool = True,
    ignore_unexpected: Callable[[str], bool] | None = None,
) -> LoadReport:
    """Load ``sd`` into ``module`` and report. ``strict``: any missing, unexpected or shape-mismatched key is a
    :class:`ModelConfigError` naming a few of each with counts; else the matching keys load and the rest is
    logged. Nothing matching at all is always an error."""
    own = module.state_dict()
    report = LoadReport(source)
    good = {}
    for k, v in sd.items():
        if k not in own:
            if not (ignore_unexpected and ignore_unexpected(k)):
                report.unexpected.append(k)
            continue
        if tuple(v.shape) != tuple(own[k].shape):
            report.mismatched.append(f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}")
            continue
        good[k] = v
    report.matched = sorted(good)
    report.missing = sorted(k for k in own if k not in sd and not k.endswith(_IGNORABLE_MISSING))
    if not good and report.mismatched:
        raise ModelConfigError(f"{source}: the weights do not match the architecture: {report.summary()}")
    if not good:
        raise ModelConfigError(
            f"{source}: no key of the file matches the architecture (file keys: {_names(list(sd))}; "
            f"model keys: {_names(list(own))}); the weights belong to another model"
        )
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise ModelConfigError(
            f"{source}: the weights do not match the architecture: {report.summary()}. "
            f"Check the model name, or set the tower's strict=false to load only the matching keys"
        )
    module.load_state_dict(good, strict=False)
    (log.warning if (report.missing or report.mismatched) else log.info)("loaded %s", report.summary())
    return report


# -- build context (rebuilding from a checkpoint) -----------------------------------------------------------
_BUILD: contextvars.ContextVar[dict | None] = contextvars.ContextVar("bench_models_build", default=None)


@contextlib.contextmanager
def rebuilding(assets: dict | None) -> Iterator[None]:
    """Inside: tower builders skip loading pretrained weights (a checkpoint's state dict follows) and HF towers
    take their config and tokenizer from ``assets[kind]`` (files stored in the checkpoint) instead of a folder."""
    token = _BUILD.set({"load_weights": False, "assets": assets or {}})
    try:
        yield
    finally:
        _BUILD.reset(token)


def load_weights_enabled() -> bool:
    ctx = _BUILD.get()
    return True if ctx is None else bool(ctx["load_weights"])


def build_assets(kind: str) -> dict[str, bytes] | None:
    ctx = _BUILD.get()
    return None if ctx is None else ctx["assets"].get(kind)
