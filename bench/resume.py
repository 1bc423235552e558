"""Loading a cell's resume checkpoint (``checkpoints/last.pt``) safely.

The file is read with ``torch.load(weights_only=True)``: tensors, containers and numbers, plus an allow-list
of the few other objects the training loop saves (:data:`SAFE_GLOBALS`: numpy's RNG state, an array of
uint32). Results folders live on shared file systems and travel between labs; a file that would need
anything else (a pickle that calls a function when read, e.g. ``os.system``) is refused before any of it
runs. A refused, truncated or otherwise unreadable checkpoint, or one that does not fit the cell (other
shapes, a step beyond the cell's plan), is a :class:`CheckpointError` naming the file. The cell is then
recorded as ``corrupt`` (``bench.store``), and ``rerun_corrupt=true`` restarts it from scratch: the file is
kept aside as ``last.pt.corrupt`` and never loaded again.
"""

from __future__ import annotations

import logging
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


def _numpy_globals() -> list[Any]:
    from numpy import dtypes

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    # numpy's RNG state: ('MT19937', uint32 array, pos, has_gauss, cached_gaussian)
    return [np.ndarray, np.dtype, _reconstruct, dtypes.UInt32DType]


#: the globals a resume checkpoint may name besides torch's own (tensors, OrderedDict, ...)
SAFE_GLOBALS = _numpy_globals()

#: top-level keys of a resume checkpoint
KEYS = ("model", "optimizer", "scheduler", "step", "history", "rng")


class CheckpointError(RuntimeError):
    """A resume checkpoint that cannot be used; ``path`` names it."""

    def __init__(self, path: Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}; to restart the cell from scratch, rerun with rerun_corrupt=true "
                         f"(the file is kept aside as {self.path.name}.corrupt and not loaded)")


def read_checkpoint(path: Path, map_location: Any = "cpu") -> dict:
    """The content of a resume checkpoint, loaded with ``weights_only=True`` and the allow-list; raises
    :class:`CheckpointError` for a refused, unreadable or incomplete file."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        detail = next((ln.strip() for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[-1] if first else "")
        raise CheckpointError(path, f"refused: it holds objects outside the allow-list of a resume checkpoint, "
                                    f"so it was not written by this code and may run code when loaded ({detail[:300]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, AttributeError) as e:
        raise CheckpointError(path, f"cannot be read (truncated or damaged): {type(e).__name__}: {str(e)[:300]}") from None
    if not isinstance(state, dict) or any(k not in state for k in KEYS):
        found = sorted(map(str, state))[:8] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(path, f"not a resume checkpoint of this code (needs keys {list(KEYS)}, has {found})")
    return state


def _check_fits(path: Path, state: dict, model: torch.nn.Module, optimizer) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint's model and optimiser states match the cell's
    (names and shapes) and its RNG states have their usual form."""
    sd, own = state["model"], model.state_dict()
    if not isinstance(sd, dict) or set(sd) != set(own):
        extra = sorted(set(sd) - set(own))[:3] if isinstance(sd, dict) else type(sd).__name__
        missing = sorted(set(own) - set(sd))[:3] if isinstance(sd, dict) else []
        raise CheckpointError(path, f"its model state does not match this cell's model (missing {missing}, unexpected {extra})")
    bad = [k for k in own if not isinstance(sd[k], torch.Tensor) or tuple(sd[k].shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(path, f"its model state does not match this cell's model (shapes differ: {bad[:3]})")
    opt, own_opt = state["optimizer"], optimizer.state_dict()
    if (not isinstance(opt, dict) or not isinstance(opt.get("param_groups"), list)
            or [len(g.get("params", ())) for g in opt["param_groups"] if isinstance(g, dict)]
            != [len(g["params"]) for g in own_opt["param_groups"]]):
        raise CheckpointError(path, "its optimiser state does not match this cell's parameters")
    rng = state["rng"]
    if not (isinstance(rng, dict) and isinstance(rng.get("torch"), torch.Tensor)
            and isinstance(rng.get("numpy"), tuple) and len(rng["numpy"]) == 5
            and isinstance(rng.get("python"), tuple) and len(rng["python"]) == 3):
        raise CheckpointError(path, "its RNG states are not those of a resume checkpoint")
    if not isinstance(state["history"], list) or not isinstance(state["scheduler"], dict):
        raise CheckpointError(path, "its history or scheduler state is not of the expected kind")


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def resume(path: Path, device: torch.device, total: int, model: torch.nn.Module, optimizer, scheduler,
           on_bad_checkpoint: str = "fail") -> tuple[int, list, float] | None:
    """Load ``path`` into the model, optimiser, scheduler and the RNGs; returns (step, history, elapsed).

    ``on_bad_checkpoint``: ``fail`` raises :class:`CheckpointError`; ``restart`` sets the file aside
    (``last.pt.corrupt``) with a warning and returns None (the cell trains from scratch)."""
    path = Path(path)
    try:
        state = read_checkpoint(path, map_location=device)
        step = state["step"]
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= total:
            raise CheckpointError(path, f"its step {step!r} is outside this cell's plan of {total} steps")
        _check_fits(path, state, model, optimizer)  # before anything is changed: a restart starts from scratch
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history, elapsed = list(state["history"]), float(state.get("elapsed", 0.0))
            _set_rng_state(state["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:  # pragma: no cover - checked above
            raise CheckpointError(path, f"does not fit this cell: {type(e).__name__}: {str(e)[:300]}") from None
    except CheckpointError as e:
        if on_bad_checkpoint != "restart":
            raise
        aside = path.with_name(path.name + ".corrupt")
        try:
            path.replace(aside)
        except FileNotFoundError:  # another rank of the same cell set it aside first
            pass
        log.warning("%s: %s; rerun_corrupt=true: set aside as %s, the cell starts from scratch", path, e.problem, aside.name)
        return None
    return step, history, elapsed
