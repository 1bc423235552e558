"""The on-disk cache of parsed indexes: one JSON entry per source file (a tar shard, a ``jsonl`` manifest),
keyed by the file's absolute path and checked against its size, modification time and a caller's key (e.g. a
hash of the metadata); files not yet cached are indexed in parallel processes (:func:`iter_index`). Used by
``data.format=wds`` (:mod:`bench.data.shards`: the member index of a shard) and ``data.format=jsonl`` (the
parsed manifest); ``data.index_cache`` chooses the folder (:func:`cache_option`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .shards import index_shard

log = logging.getLogger(__name__)

INDEX_VERSION = 1
PARALLEL_MIN_SHARDS = 4  # index fewer files than this in this process (a pool costs more than it saves)


def _stamp(path: str, key: str) -> dict:
    st = os.stat(path)
    return {"version": INDEX_VERSION, "shard": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "key": key}


def default_index_dir() -> Path:
    env = os.environ.get("CONTRASTIVE_BENCH_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "contrastive-bench"
    return root / "wds-index"


def _cache_file(index_dir: Path, stamp: dict) -> Path:
    """``<shard name>-<hash of its path>-<hash of its stamp>.json``: a current entry is a file that exists."""
    path = stamp["shard"]
    digest = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]
    return index_dir / f"{Path(path).name}-{hashlib.sha256(path.encode()).hexdigest()[:12]}-{digest}.json"


def _write_cached(index_dir: Path | None, stamp: dict, index: dict) -> None:
    """Write one shard's entry atomically; entries of earlier versions of that shard are removed."""
    if index_dir is None:
        return
    target = _cache_file(index_dir, stamp)
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=index_dir, prefix=".index-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(index, fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        for old in index_dir.glob(target.name.rsplit("-", 1)[0] + "-*.json"):
            if old != target:
                old.unlink(missing_ok=True)
    except OSError as e:
        log.warning("index cache: cannot cache the index of %s in %s (%s); it will be read again next time", stamp["shard"],
                    index_dir, e)


def _read(f: Path) -> dict | None:
    try:
        entry = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) else None


def _index_job(job: Callable[[str], dict], key: str, path: str) -> tuple[dict, dict]:
    stamp = _stamp(path, key)  # taken before reading: a shard changed meanwhile is indexed again next time
    return stamp, job(path)


def iter_index(shards: Sequence[str], index_dir: Path | None, job: Callable[[str], dict] = index_shard, key: str = "",
               workers: int = 0, progress: bool = True, valid: Callable[[dict], bool] | None = None) -> Iterator[dict]:
    """``job(shard)`` (a JSON-serialisable dict; default :func:`index_shard`) of every shard, in order. Shards
    without a current cache entry (same path, size, mtime and ``key``, e.g. a hash of what ``job`` depends
    on) are computed first, in ``workers`` processes (0: up to 8, one per CPU), and cached; cached entries are
    read one at a time as the caller consumes them, so at most one shard's raw entry is alive beside what the
    caller keeps. ``job`` must be picklable (a module-level function or a ``functools.partial`` of one).
    A cache entry that cannot be read, is not a JSON object or fails ``valid`` is computed again and
    rewritten, with a warning."""
    files = [_cache_file(index_dir, _stamp(s, key)) if index_dir is not None else None for s in shards]
    todo = [i for i, f in enumerate(files) if f is None or not f.is_file()]
    done: dict[int, dict] = {}
    if todo:
        from tqdm.auto import tqdm

        n = workers or max(1, min(8, os.cpu_count() or 1, len(todo)))
        bar = tqdm(total=len(todo), desc="indexing", unit="file", disable=not progress or len(todo) < 8)
        run = functools.partial(_index_job, job, key)
        if n <= 1 or len(todo) < PARALLEL_MIN_SHARDS:
            results = (run(shards[i]) for i in todo)
            pool = None
        else:
            # fork where the platform has it (as DataLoader workers do): the job is plain tarfile/json work
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context(method))
            results = pool.map(run, [shards[i] for i in todo], chunksize=1)
        try:
            for i, (stamp, index) in zip(todo, results):
                _write_cached(index_dir, stamp, index)
                done[i] = index
                bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    log.info("index of %d file(s) (shards or manifests): %d from the cache%s, %d read", len(shards), len(shards) - len(todo),
             f" ({index_dir})" if index_dir else "", len(todo))
    for i, shard in enumerate(shards):
        entry = done.pop(i, None)
        if entry is None:
            entry = _read(files[i])
            if entry is not None and valid is not None and not valid(entry):
                entry = None
            if entry is None:
                log.warning("index cache: the entry %s of %s is missing or damaged; reading %s again", files[i],
                            shard, Path(shard).name)
        if entry is None:  # the cache file vanished or is damaged: index the shard again, here
            stamp, entry = _index_job(job, key, shard)
            _write_cached(index_dir, stamp, entry)
        yield entry


def load_index(shards: Sequence[str], index_dir: Path | None, job: Callable[[str], dict] = index_shard, key: str = "",
               workers: int = 0, progress: bool = True) -> list[dict]:
    """:func:`iter_index` as a list."""
    return list(iter_index(shards, index_dir, job, key, workers, progress))


def check_index_cache(key: str, value: Any) -> Any:
    """The ``check`` of a ``data.index_cache`` option: a folder path or false."""
    if value is False or (isinstance(value, str) and value.strip().lower() == "false"):
        return False
    if isinstance(value, (str, os.PathLike)) and str(value).strip():
        return str(value)
    from .registry import DataConfigError

    raise DataConfigError(f"{key}={value!r} must be a folder path, or false (no index cache)", key=key, value=value,
                          allowed="null (the default folder), false or a folder path")


def cache_option(value: Any) -> Path | None:
    """``data.index_cache``: ``None`` = the default folder, ``False`` = no cache, else a folder."""
    if value is False:
        return None
    return default_index_dir() if value is None else Path(str(value)).expanduser()
