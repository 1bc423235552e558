"""``python -m bench.data.wds_index PATH``: index WebDataset shards once (``data.format=wds``; e.g. on a login
node before a multi-GPU job, so that ranks find the index cached) and print what they hold."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import ConfigError
from .wds import build


def main(argv: list[str] | None = None) -> int:
    """Index the shards and print a summary; exit status 2 on a configuration or data error."""
    ap = argparse.ArgumentParser(prog="python -m bench.data.wds_index", description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="the shards: a brace pattern, a folder or a .tar file (as data.path)")
    ap.add_argument("--index-cache", default=None, help="as data.index_cache (default: the default folder)")
    ap.add_argument("--workers", type=int, default=0, help="indexing processes (default 0: one per CPU, at most 8)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        ds = build(path=args.path, index_cache=args.index_cache, index_workers=args.workers)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names = ds.split_names()
    splits = {k: names.count(k) for k in ("train", "val", "test", None)}
    print(f"{ds.name}: {len(ds)} samples; levels {list(ds.levels)}; tasks {sorted(ds.task_specs)}; splits "
          + ", ".join(f"{k or 'none'} {n}" for k, n in splits.items() if n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
