"""The token table of a level's distinct texts, cached on disk: tokenising 100k distinct texts (open_clip's
BPE tokenizer with ftfy cleaning) costs tens of seconds per start, more than building the dataset.

:func:`token_table` returns what :func:`bench.train.prepare_levels` keeps per level: the tokens of the unique
texts as a compact table (int32 when the ids fit, trailing all-zero token positions cut; :func:`expand`
restores the tower's exact input per batch, a small host op without a device sync). The table is cached
in ``$CONTRASTIVE_BENCH_CACHE/tokens`` (default ``~/.cache/contrastive-bench/tokens``), one ``.npy`` per
(tokenizer, texts), keyed by a hash of the texts in order and of the tokenizer's identity (its class, the
context length and its output on a fixed probe text), so a changed text or tokenizer tokenises again. A
cache file that cannot be read is tokenised again and rewritten, with a warning. ``CONTRASTIVE_BENCH_CACHE``
set to ``off`` disables the cache (as the tests of other modules may want).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

VERSION = 1
PROBE = ["a probe text, 0123: Ünïcödé & punctuation!", "x"]
MIN_CACHED = 2000  # fewer distinct texts tokenise faster than a cache file is hashed, written and read


def cache_dir() -> Path | None:
    env = os.environ.get("CONTRASTIVE_BENCH_CACHE")
    if env and env.strip().lower() == "off":
        return None
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "contrastive-bench"
    return root / "tokens"


def compact(tokens: torch.Tensor) -> torch.Tensor:
    """int32 when every id fits, the last dimension cut after its last non-zero position (at least 1)."""
    if tokens.dtype in (torch.int64, torch.int32) and tokens.numel():
        if int(tokens.max()) < 2**31 and int(tokens.min()) >= -(2**31):
            tokens = tokens.to(torch.int32)
        used = (tokens != 0).reshape(-1, tokens.shape[-1]).any(0).nonzero()
        keep = int(used.max()) + 1 if len(used) else 1
        tokens = tokens[..., :keep].contiguous()
    return tokens


def expand(table: torch.Tensor, rows: torch.Tensor, length: int, dtype: torch.dtype) -> torch.Tensor:
    """``table[rows]`` padded with zeros back to ``length`` positions, as ``dtype``: the tower's input."""
    out = table[rows].to(dtype)
    if out.shape[-1] < length:
        out = torch.nn.functional.pad(out, (0, length - out.shape[-1]))
    return out


def _key(texts: Sequence[str], tokenize: Callable[[list[str]], torch.Tensor], owner: object) -> tuple[str, torch.Tensor]:
    probe = tokenize(list(PROBE))
    h = hashlib.sha256(f"v{VERSION}|{type(owner).__module__}.{type(owner).__qualname__}|{tuple(probe.shape)}|"
                       f"{probe.dtype}|".encode())
    h.update(probe.numpy().tobytes())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:24], probe


def token_table(texts: Sequence[str], tokenize: Callable[[list[str]], torch.Tensor], owner: object = None,
                folder: Path | None | bool = True) -> tuple[torch.Tensor, tuple[int, ...], torch.dtype]:
    """The compact token table of ``texts`` (:func:`compact`), the full shape of one row and the tower's
    dtype; from the cache when it holds it (``folder``: ``True`` = :func:`cache_dir`, ``None``/``False`` = none)."""
    folder = cache_dir() if folder is True else (folder or None)
    if folder is None or len(texts) < MIN_CACHED:
        full = tokenize(list(texts))
        return compact(full), tuple(full.shape[1:]), full.dtype
    key, probe = _key(texts, tokenize, owner)
    f = Path(folder) / f"{key}.npy"
    row, dtype = tuple(probe.shape[1:]), probe.dtype
    if f.is_file():
        try:
            arr = np.load(f, allow_pickle=False)
            if arr.shape[0] != len(texts) or arr.ndim != 1 + len(row):
                raise ValueError(f"shape {arr.shape} for {len(texts)} texts")
            log.info("tokens: %d texts from the cache %s", len(texts), f)
            return torch.from_numpy(arr), row, dtype
        except (OSError, ValueError, EOFError) as e:
            log.warning("tokens: the cached table %s is unreadable (%s); tokenising again", f, e)
    full = tokenize(list(texts))
    table = compact(full)
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=".tokens-", suffix=".npy")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, table.numpy(), allow_pickle=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, f)
    except OSError as e:
        log.warning("tokens: cannot cache the token table in %s (%s)", f.parent, e)
    return table, tuple(full.shape[1:]), full.dtype
