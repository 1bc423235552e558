"""``python -m bench.data.export``: write any dataset the harness reads as WebDataset shards or as image files
with a ``jsonl`` manifest.

    python -m bench.data.export --to wds --out DIR [--shard-size 1000] data.format=fundus_synth data.size=2000
    python -m bench.data.export --to jsonl --out DIR data.format=mgll_json data.path=...

The dataset is built as ``bench.run`` builds it (the same ``data.*`` options, validation included, drawn
splits and missing texts applied), so the export carries exactly the samples, texts, labels, targets,
splits and patients a run would see; read it back with ``data.format=wds data.path=DIR`` or
``data.format=jsonl data.path=DIR/manifest.jsonl``. Images are copied byte for byte where they already are
files (or shard members) in a format the target reads (``--image-format keep``, the default; in-memory
arrays become PNG), or re-encoded (``png``, ``jpg``, ``npz``) by ``--workers`` processes. The output appears
only when complete (see :mod:`bench.data.writers`). Exit status 2 on a configuration or data error.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import multiprocessing
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence


from ..errors import ConfigError, DataConfigError
from ..options import as_int
from .sample import ImageRef
from .writers import FolderOut, ShardOut, meta_of, record_of, sample_key

PROG = "python -m bench.data.export"
TARGETS = ("wds", "jsonl")
IMAGE_FORMATS = ("keep", "png", "jpg", "npz")
KEEP_EXTS = ("png", "jpg", "jpeg", "npz", "webp", "bmp", "tif", "tiff")  # copied as they are with --image-format keep


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                 epilog=__doc__.split("\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--to", required=True, choices=TARGETS, help="wds: tar shards + meta.json; jsonl: images/ + manifest.jsonl")
    ap.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist or be empty, unless --overwrite)")
    ap.add_argument("--shard-size", type=int, default=1000, help="samples per shard for --to wds (default 1000)")
    ap.add_argument("--image-format", choices=IMAGE_FORMATS, default="keep",
                    help="keep (copy image files as they are; arrays become png, default), png, jpg or npz")
    ap.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality 1-95 for --image-format jpg (default 95)")
    ap.add_argument("--caption-level", metavar="LEVEL", default=None,
                    help="--to wds: also write this level's text as a <key>.txt member, the caption open_clip's "
                         "webdataset pipeline reads (samples without that text get none)")
    ap.add_argument("--workers", type=int, default=1, help="encoding processes (default 1: this process)")
    ap.add_argument("--chunk", type=int, default=64, help="samples per task sent to a worker (default 64)")
    ap.add_argument("--overwrite", action="store_true", help="replace --out (only once the new export is complete)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("options", nargs="*", metavar="data.KEY=VALUE",
                    help="the dataset, as for python -m bench.run (data.format=... and its options)")
    return ap


def _data_config(options: Sequence[str]) -> dict:
    from ..config import parse_overrides, to_container

    bad = [o for o in options if not o.startswith("data.") and not o.startswith("data=")]
    if bad:
        raise ConfigError(f"{PROG} takes data.* options only (the dataset to export), got {bad}")
    tree = to_container(parse_overrides(options)) if options else {}
    data = tree.get("data") or {}
    if not isinstance(data, dict) or "format" not in data:
        raise DataConfigError("give the dataset to export, e.g. data.format=fundus_synth (and its data.* options)",
                              key="data.format")
    return data


def _encode(image, image_format: str, jpeg_quality: int) -> tuple[str, bytes]:
    """(extension, bytes) of one image (runs in a worker)."""
    if image_format == "keep":
        if isinstance(image, ImageRef) and hasattr(image, "raw") and image.ext.lower() in KEEP_EXTS:
            return image.ext.lower(), image.raw()
        if isinstance(image, (str, Path)) and Path(image).suffix.lower().lstrip(".") in KEEP_EXTS:
            return Path(image).suffix.lower().lstrip("."), Path(image).read_bytes()
        image_format = "png"
    from .fundus_synth.corpus import encode_image
    from .sample import load_image

    return image_format, encode_image(load_image(image), image_format, jpeg_quality)


def _encode_chunk(images: list, image_format: str, jpeg_quality: int) -> list[tuple[str, bytes]]:
    return [_encode(im, image_format, jpeg_quality) for im in images]


def _encoded(images: list, image_format: str, jpeg_quality: int, workers: int, chunk: int) -> Iterator[tuple[str, bytes]]:
    """The encoded images, in order; ``workers`` > 1 encodes chunks in processes, at most 2 x workers in flight."""
    blocks = (images[i:i + chunk] for i in range(0, len(images), chunk))
    if workers <= 1:
        for b in blocks:
            yield from _encode_chunk(b, image_format, jpeg_quality)
        return
    ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending = deque(ex.submit(_encode_chunk, b, image_format, jpeg_quality) for b in itertools.islice(blocks, 2 * workers))
        while pending:
            done = pending.popleft().result()
            nxt = next(blocks, None)
            if nxt is not None:
                pending.append(ex.submit(_encode_chunk, nxt, image_format, jpeg_quality))
            yield from done
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def export(dataset, out, to: str = "wds", shard_size: int = 1000, image_format: str = "keep", jpeg_quality: int = 95,
           workers: int = 1, chunk: int = 64, overwrite: bool = False, progress: bool = True,
           caption_level: str | None = None) -> dict:
    """Write ``dataset`` (a :class:`~bench.data.sample.MultiGranularDataset`) to ``out``; returns ``samples``,
    ``seconds``, ``bytes`` and ``path`` (what ``data.path`` should be to read it back). ``caption_level``
    (shards only): that level's text also as a ``.txt`` member (open_clip's caption)."""
    if caption_level is not None and caption_level not in dataset.levels:
        raise DataConfigError(f"--caption-level {caption_level!r} is not a level of the data; it has {list(dataset.levels)}",
                              key="--caption-level", value=caption_level, allowed=list(dataset.levels))
    if caption_level is not None and to != "wds":
        raise DataConfigError("--caption-level is for --to wds (a jsonl manifest has every level's text)",
                              key="--caption-level", value=caption_level)
    writer = ShardOut(out, shard_size, overwrite) if to == "wds" else FolderOut(out, overwrite)
    t0 = time.perf_counter()
    levels, tasks = dataset.levels, list(dataset.task_specs)
    writer.open(meta_of(dataset))
    n_bytes = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dataset), desc=f"export to {to}", unit="img", mininterval=1.0)
    complete = False
    try:
        images = [s.image for s in dataset.samples]
        used: set[str] = set()
        for i, (s, (ext, data)) in enumerate(zip(dataset.samples, _encoded(images, image_format, jpeg_quality, workers, chunk))):
            caption = s.texts.get(caption_level) if caption_level is not None else None
            writer.write(sample_key(s.id, i, used), ext, data, record_of(s, levels, tasks), caption)
            n_bytes += len(data)
            if bar is not None:
                bar.update(1)
        complete = True
    finally:
        if bar is not None:
            bar.close()
        writer.close(complete)
    return {"samples": len(dataset), "seconds": time.perf_counter() - t0, "bytes": n_bytes, "path": writer.pattern()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; a configuration or data error prints ``error: ...`` and returns 2."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        as_int("--shard-size", args.shard_size, min=1, error=DataConfigError)
        as_int("--workers", args.workers, min=1, error=DataConfigError)
        as_int("--chunk", args.chunk, min=1, error=DataConfigError)
        as_int("--jpeg-quality", args.jpeg_quality, min=1, max=95, error=DataConfigError)
        data = _data_config(args.options)
        from . import build_dataset

        dataset = build_dataset(data)
        st = export(dataset, args.out, args.to, args.shard_size, args.image_format, args.jpeg_quality, args.workers,
                    args.chunk, args.overwrite, progress=not args.no_progress, caption_level=args.caption_level)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (nothing written)", file=sys.stderr)
        return 130
    fmt = "wds" if args.to == "wds" else "jsonl"
    print(f"export: {st['samples']} samples in {st['seconds']:.1f} s ({st['bytes'] / 2**20:.1f} MiB of images) to {args.out}")
    print(f"read it with: data.format={fmt} data.path={st['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
