"""One cell: data -> model -> objective -> pretrain (resumable) -> downstream tasks -> metrics.

The model starts from ``model.init`` when given (:mod:`bench.models.init`); ``eval_only=true`` skips the
pretraining. The tasks run on the datasets of the cell's evaluation plan (``tasks`` entries, ``eval.suite``;
:mod:`bench.evaluate`).

``run_cell(cfg, cell_dir)`` does the work; ``execute(cfg, cell_dir)`` wraps it the way every launcher
calls it: claims the cell (``bench.claim``; a cell done or held elsewhere is not run), writes
``metrics.json`` and then ``done`` on success, or ``error.json`` (type, message, traceback; ``corrupt``:
the damaged files, e.g. a refused checkpoint) on failure, never both.

Under ``torch.distributed`` (a cell run by several processes, see ``bench.launch``) every rank builds the
data and the model and trains its slice of each batch; only rank 0 writes (config, running marker,
checkpoints, history, metrics, ``done`` / ``error.json``) and runs the downstream tasks; rank 0 alone
claims the cell and tells the other ranks whether it runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from . import claim as claims
from . import store
from .config import to_container
from .data import SPLITS, build_dataset
from .interrupts import interruption, noting_interruptions
from .evaluate import Datasets, evaluate
from .memory import peak_memory_mb, reset_peak_memory, resident_memory_mb
from .models.init import initial_model
from .resume import CheckpointError
from .train import dist_info, pretrain, resolve_device, seed_everything

log = logging.getLogger(__name__)


def parse_task(entry: Any) -> tuple[str, str, dict]:
    """``"linear_probe/disease_multilabel"`` or ``{name: linear_probe, target: ..., **options}`` ->
    (metric prefix, task name, options)."""
    if isinstance(entry, str):
        if "/" not in entry:
            raise ValueError(f"tasks entry {entry!r} must be 'TASK/TARGET' (e.g. linear_probe/disease_multilabel) or a mapping")
        name, target = entry.split("/", 1)
        return entry, name, {"target": target}
    entry = dict(entry)
    if "name" not in entry:
        raise ValueError(f"tasks entry {entry} needs a 'name'")
    name = entry.pop("name")
    key = entry.pop("key", None) or (f"{name}/{entry['target']}" if "target" in entry else name)
    return key, name, entry


def build_objective(cfg: DictConfig):
    import objectives

    options = to_container(cfg.objective)
    name = options.pop("name")
    return objectives.build(name, **options)


def environment() -> dict[str, Any]:
    versions = {"python": platform.python_version()}
    for mod in ("torch", "numpy", "timm", "open_clip", "sklearn", "omegaconf"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip() or None
    except Exception:  # pragma: no cover
        commit = None
    return {"versions": versions, "git_commit": commit, "host": platform.node()}


def run_cell(cfg: DictConfig, cell_dir: Path) -> dict[str, Any]:
    cell_dir = Path(cell_dir)
    t0 = time.perf_counter()
    seed = int(cfg.seed)
    if int(cfg.train.threads) > 0:
        torch.set_num_threads(int(cfg.train.threads))
    seed_everything(seed)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True)
    device = resolve_device(str(cfg.train.device))
    memory_source = reset_peak_memory(device)  # this cell's peak, whatever ran in this process before
    memory_start = resident_memory_mb(device)

    eval_only = cfg.get("eval_only", False) is True
    data = build_dataset(cfg.data)
    splits = {s: data.split(s) for s in SPLITS}
    if len(splits["train"]) == 0 and not eval_only:
        raise ValueError(f"{data.name}: no training samples (no sample has split='train')")
    objective = build_objective(cfg)
    seed_everything(seed)  # the model's init does not depend on what the data builder drew
    model = initial_model(cfg, objective).to(device)

    from tasks.features import FeatureCache, SharedFeatures

    disk = FeatureCache(cell_dir / "features") if cfg.eval.feature_cache else None
    datasets = Datasets(data, splits, to_container(cfg.data))

    rank, world = dist_info()
    metrics: dict[str, Any] = {f"data/{k}": v for k, v in data.stats.items()}
    init_file = cell_dir / "metrics_init.json"
    saved_init = store.read_dict(init_file) if init_file.exists() else None
    if init_file.exists() and saved_init is None and rank == 0:
        log.warning("%s cannot be read; it is recomputed if the cell starts from its beginning", init_file)
    if cfg.eval.at_init and rank == 0 and not eval_only:
        if saved_init is not None:
            metrics.update(saved_init)
        elif (cell_dir / "checkpoints" / "last.pt").exists():
            log.warning("eval.at_init: the cell resumed from a checkpoint without init metrics; skipping them")
        else:
            init = evaluate(model, cfg, datasets, SharedFeatures(disk), prefix="init/")
            store.write_json(init_file, init)
            metrics.update(init)
    if world > 1:
        torch.distributed.barrier()  # the other ranks wait for rank 0's evaluation at init

    if eval_only:
        log.info("eval_only: no pretraining; evaluating %s", cfg.model.get("init") or "the random init")
    else:
        on_bad = "restart" if cfg.get("rerun_corrupt", False) is True else "fail"
        metrics.update(pretrain(model, objective, splits["train"], cfg.train, cell_dir, seed, device,
                                on_bad_checkpoint=on_bad))
    model.eval()
    if rank != 0:
        return metrics  # rank 0 saves, evaluates and writes
    from .models import save_encoder

    if not eval_only:
        # the trained encoder alone (config inside, loads with weights_only=True): bench.models.load_encoder
        save_encoder(model, cell_dir / "checkpoints" / "encoder.pt", cell=cell_dir.name, label=str(cfg.label))
    metrics.update(evaluate(model, cfg, datasets, SharedFeatures(disk), predictions_dir=cell_dir / "predictions"))
    metrics.update(
        {
            "wall_time_s": time.perf_counter() - t0,
            "peak_memory_mb": peak_memory_mb(device, memory_source),
            "peak_memory_source": memory_source,
            "memory_at_start_mb": memory_start,  # what the process held when the cell started (in the peak)
            "seed": seed,
            "device": str(device),
            "world_size": world,
            "n_train": len(splits["train"]),
            # name, options, levels, terms: read by bench.report (eval-only: the objective the weights were trained with)
            "objective": objective_record(cfg, objective, data.levels, eval_only),
            **environment(),
        }
    )
    return metrics


def objective_record(cfg: DictConfig, objective: Any, levels: Any, eval_only: bool) -> dict[str, Any]:
    """What metrics.json records of the cell's objective. A trained cell: its objective's ``describe()``. An
    eval-only cell trained nothing: ``eval_only: true``, ``init`` (the ``model.init`` path) and, when that is a
    cell of this harness (its folder or its ``checkpoints/encoder.pt``), the record of the cell that trained the
    weights (``trained_in``: its folder); other weights are named ``pretrained`` (no objective known)."""
    if not eval_only:
        return objective.describe(levels)
    from .models.init import resolve_init

    init = cfg.model.get("init")
    out: dict[str, Any] = {"name": "pretrained" if init is not None else "random_init", "eval_only": True,
                           "init": None if init is None else str(init)}
    path = resolve_init(init) if init is not None else None
    source = path.parent.parent if path is not None and path.parent.name == "checkpoints" else None
    if source is not None and (source / "metrics.json").is_file():
        try:
            record = store.read_json(source / "metrics.json").get("objective")
        except (OSError, ValueError, AttributeError):
            record = None
        if isinstance(record, dict) and not record.get("eval_only"):
            out.update(record)
            out["trained_in"] = str(source)
    return out


@contextlib.contextmanager
def _cell_log(cell_dir: Path):
    handler = logging.FileHandler(cell_dir / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


#: rank 0's word to the other ranks of a distributed cell before it starts: run it, or the state to return
_RUN = "run"
_VERDICTS = (_RUN, store.DONE, store.FAILED, store.RUNNING, store.PENDING, store.CORRUPT)


def _agree(verdict: str | None) -> str | None:
    """Rank 0's verdict on every rank: a broadcast under torch.distributed, the identity otherwise."""
    if dist_info()[1] == 1:
        return verdict
    nccl = torch.distributed.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    t = torch.tensor([_VERDICTS.index(verdict) if verdict is not None else 0], dtype=torch.int64, device=device)
    torch.distributed.broadcast(t, src=0)
    return _VERDICTS[int(t.item())]


def _flags(cfg: DictConfig) -> dict[str, bool]:
    return {"rerun_failed": cfg.get("rerun_failed", False) is True, "rerun_corrupt": cfg.get("rerun_corrupt", False) is True}


def _claim(cfg: DictConfig, cell_dir: Path) -> tuple[claims.Claim | None, str]:
    """Claim the cell if it is to run (its state read again now, then once more under the claim); a corrupt
    cell is repaired under the claim (``rerun_corrupt=true``). Returns (claim, ``_RUN``) or (None, state)."""
    name = cell_dir.name
    before = store.inspect(cell_dir)
    if before.state == store.RUNNING:
        log.info("cell %s is being run by %s; not run here", name, claims.describe(before.claim))
        return None, store.RUNNING
    if not store.runnable(before.state, **_flags(cfg)):
        log.info("cell %s is %s; not run", name, before.state)
        return None, before.state
    try:
        cell_dir.mkdir(parents=True, exist_ok=True)
        claim = claims.acquire(cell_dir)
        if claim is None:
            log.info("cell %s was claimed by %s; not run here", name, claims.describe(store.read_running(cell_dir)))
            return None, store.RUNNING
        now = store.inspect(cell_dir, claims_too=False)  # what the previous holder left
        if now.state == store.CORRUPT and store.runnable(now.state, **_flags(cfg)):
            for line in store.repair(cell_dir, to_container(cfg)):
                log.warning("cell %s: repair: %s", name, line)
            now = store.inspect(cell_dir, claims_too=False)
    except OSError as e:
        raise store.StoreError(f"cannot claim or repair cell {cell_dir}: {e.strerror or e}") from e
    if not store.runnable(now.state, **_flags(cfg)):
        log.info("cell %s is %s; not run", name, now.state)
        claim.release()
        return None, now.state
    return claim, _RUN


def execute(cfg: DictConfig | dict, cell_dir: str | Path) -> str:
    """Run one cell and record the outcome; returns its state: ``"done"``, ``"failed"``, ``"corrupt"`` (a
    damaged file, e.g. a checkpoint the safe loader refused), or, for a cell not run here, the state it is in
    (``"done"`` already, ``"running"`` in another process, ``"failed"``/``"corrupt"`` without
    ``rerun_failed``/``rerun_corrupt``). Never raises for a failure inside the cell, so one bad cell does not
    stop a grid; a results folder that cannot be written is a :class:`bench.store.StoreError`. A
    ``SystemExit`` (the preemption path: checkpoint saved, job requeued) passes through, leaving the cell
    pending.

    The cell is claimed first (:mod:`bench.claim`): its state is read again, and a cell that another process
    holds, or finished meanwhile, is not run (each cell is trained once, whatever runs beside this one). Under
    torch.distributed, rank 0 claims and records; the other ranks run the cell when rank 0 does and return
    the state they would have recorded."""
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    cell_dir = Path(cell_dir)
    if dist_info()[0] != 0:
        verdict = _agree(None)
        return _execute_follower(cfg, cell_dir) if verdict == _RUN else str(verdict)
    try:
        claim, verdict = _claim(cfg, cell_dir)
    except BaseException:
        _agree(store.FAILED)
        raise
    _agree(verdict)
    if claim is None:
        return verdict
    try:
        with noting_interruptions() as note:
            return _run_claimed(cfg, cell_dir, claim, note)
    finally:
        claim.release()
        sys.stdout.flush()


def _record_failure(cell_dir: Path, e: BaseException, corrupt: list[str] | None = None) -> None:
    info = {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc(), "time": time.time()}
    if corrupt:
        info["corrupt"] = corrupt
    store.record(cell_dir / "error.json", info)


def _run_claimed(cfg: DictConfig, cell_dir: Path, claim: claims.Claim, note: dict) -> str:
    stack = contextlib.ExitStack()
    try:
        store.write_yaml(cell_dir / "config.yaml", to_container(cfg))
        stack.enter_context(_cell_log(cell_dir))
    except OSError as e:
        raise store.StoreError(f"cannot write to cell {cell_dir}: {e.strerror or e}") from e
    with stack:
        log.info("cell %s (%s) starting", cell_dir.name, cfg.label)
        try:
            metrics = run_cell(cfg, cell_dir)
        except Exception as e:
            return _failed(cell_dir, e, note)
        if not claim.held():
            log.error("cell %s: another process took the cell over while this one ran (its heartbeat had lapsed); "
                      "this run's results are not recorded", cell_dir.name)
            return store.RUNNING
        store.record(cell_dir / "metrics.json", metrics)
        try:
            (cell_dir / "error.json").unlink()
        except FileNotFoundError:
            pass
        try:
            store.write_text(cell_dir / "done", time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        except OSError as e:
            raise store.StoreError(f"cannot write {cell_dir / 'done'}: {e.strerror or e}") from e
        log.info("cell %s done in %.1fs", cell_dir.name, metrics["wall_time_s"])
        return store.DONE


def _failed(cell_dir: Path, e: Exception, note: dict) -> str:
    """Record why ``run_cell`` raised, and the state it leaves; raise for what is not the cell's failure."""
    if note["signum"] is not None:  # an interruption that came out of C++ code as another exception
        log.warning("cell %s interrupted (%s); it resumes from its last checkpoint", cell_dir.name,
                    signal.Signals(note["signum"]).name)
        raise interruption(note) from e
    if isinstance(e, CheckpointError):
        log.error("cell %s: %s", cell_dir.name, e)
        _record_failure(cell_dir, e, corrupt=[os.path.relpath(e.path, cell_dir)])
        return store.CORRUPT
    if isinstance(e, OSError) and e.errno in store.DISK_ERRNOS:  # the disk, not the cell: stop the grid
        log.error("cell %s stopped: %s", cell_dir.name, e)
        raise store.StoreError(f"{e}; free space (or make the folder writable) and run the grid again: "
                               f"cell {cell_dir.name} resumes from its last checkpoint") from e
    log.error("cell %s failed: %s: %s", cell_dir.name, type(e).__name__, e)
    _record_failure(cell_dir, e)
    return store.FAILED


def _execute_follower(cfg: DictConfig, cell_dir: Path) -> str:
    """A rank > 0 of a distributed cell: same work, no files (rank 0 logs, checkpoints and evaluates)."""
    rank = dist_info()[0]
    try:
        run_cell(cfg, cell_dir)
    except CheckpointError as e:
        log.error("cell %s, rank %d: %s", cell_dir.name, rank, e)
        return store.CORRUPT
    except Exception as e:
        log.error("cell %s, rank %d failed: %s: %s", cell_dir.name, rank, type(e).__name__, e)
        return store.FAILED
    return store.DONE
