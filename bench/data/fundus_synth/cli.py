"""``python -m bench.data.fundus_synth``: preview, benchmark, and draw a corpus to disk.

    python -m bench.data.fundus_synth --preview grid.png [--variant dr]          # 64 examples + their texts
    python -m bench.data.fundus_synth --benchmark [-n 1000] [--resolution 64]   # images/s, one process
    python -m bench.data.fundus_synth draw --out DIR --size 100000 --resolution 224 --workers 8 \\
        --image-format png|jpg|npz [--to jsonl|wds] [--shard-size 1000] [--variant pretrain] [--test-size 500]
        [--set noise=0.5 ...]
    python -m bench.data.fundus_synth benchmark-draw [--resolutions 64 224] [--workers 1 2] [-n 500]

``draw`` writes ``DIR/images/...`` and ``DIR/manifest.jsonl`` (+ ``.meta.json``): train with
``data.format=jsonl data.path=DIR/manifest.jsonl``; with ``--to wds``, WebDataset shards
``DIR/shard-NNNNNN.tar`` + ``DIR/meta.json`` instead (``data.format=wds data.path=DIR``); the samples are those of ``data.format=fundus_synth``
with the same options (pixels identical for png and npz).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from typing import Any, Sequence

from ...errors import ConfigError, DataConfigError
from ...options import as_int
from . import __doc__ as PACKAGE_DOC
from .corpus import IMAGE_FORMATS, write_corpus
from .dataset import draw_options
from .draw import render
from .options import check_options
from .sinks import MANIFEST, FileSink, WdsSink
from .variants import VARIANTS

PROG = "python -m bench.data.fundus_synth"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description=PACKAGE_DOC.split("\n")[0] + "\n\n" + __doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", action="store_true", help="print the drawing speed (images/s, one process)")
    ap.add_argument("--preview", metavar="PNG", help="write a grid of 8 x 8 example images and print their texts")
    ap.add_argument("-n", type=int, default=1000, help="images to draw for --benchmark (default 1000)")
    ap.add_argument("--resolution", type=int, default=64, help="image side in pixels (default 64)")
    ap.add_argument("--supersample", type=int, default=1, help="supersampling factor 1-4 (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    ap.add_argument("--variant", default="pretrain", help=f"dataset to draw: {', '.join(VARIANTS)} (default pretrain)")
    sub = ap.add_subparsers(dest="command", metavar="{draw,benchmark-draw}")

    d = sub.add_parser("draw", help="draw a corpus to image files + a jsonl manifest, in parallel",
                       description="Draw a fundus_synth corpus to DIR/images/ and DIR/manifest.jsonl (+ .meta.json), "
                                   "readable with data.format=jsonl data.path=DIR/manifest.jsonl. The samples are "
                                   "those of data.format=fundus_synth with the same options; the result does not "
                                   "depend on --workers. Memory stays flat however large the corpus.")
    d.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    d.add_argument("--variant", default="pretrain", help=f"one of {', '.join(VARIANTS)} (default pretrain)")
    d.add_argument("--size", type=int, default=None, help="train + val images (default: the variant's, 2500)")
    d.add_argument("--test-size", type=int, default=None,
                   help="test images (default: the variant's, 500 for pretrain, 5000 downstream)")
    d.add_argument("--val-fraction", type=float, default=None, help="share of --size in val (default 0.2)")
    d.add_argument("--resolution", type=int, default=64, help="image side in pixels (default 64)")
    d.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    d.add_argument("--supersample", type=int, default=1, help="supersampling factor 1-4 (default 1)")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other fundus_synth option (data.KEY), VALUE in YAML, e.g. --set noise=0.5 "
                        "--set 'prevalence={glaucoma: 0.3}'; repeatable")
    _common_draw(d)
    d.add_argument("--to", choices=("jsonl", "wds"), default="jsonl",
                   help="jsonl: image files + manifest.jsonl (default); wds: WebDataset tar shards + meta.json")
    d.add_argument("--shard-size", type=int, default=1000, help="samples per shard with --to wds (default 1000)")
    d.add_argument("--overwrite", action="store_true", help="replace a corpus already in --out")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")

    b = sub.add_parser("benchmark-draw", help="measure draw-to-disk throughput (images/s) per resolution and workers",
                       description="Draw -n pretraining images to a temporary folder for every resolution x workers "
                                   "pair and print images/s (and the peak memory of the main process).")
    b.add_argument("-n", type=int, default=500, help="images per measurement (default 500)")
    b.add_argument("--resolutions", type=int, nargs="+", default=[64, 224], help="default 64 224")
    b.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    b.add_argument("--image-format", choices=IMAGE_FORMATS, default="png", help="default png")
    b.add_argument("--chunk", type=int, default=32, help="images per task sent to a worker (default 32)")
    return ap


def _common_draw(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=1, help="drawing processes (default 1: this process)")
    p.add_argument("--image-format", choices=IMAGE_FORMATS, default="png",
                   help="png (lossless, default), jpg (lossy, see --jpeg-quality) or npz (uncompressed array)")
    p.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality 1-95 (default 95)")
    p.add_argument("--chunk", type=int, default=32, help="images per task sent to a worker (default 32)")


def _render_options(args: argparse.Namespace) -> dict:
    o = check_options({"resolution": args.resolution, "supersample": args.supersample, "seed": args.seed,
                       "variant": args.variant, "cache_dir": False})
    return draw_options(o)


def _parse_set(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DataConfigError(f"--set {item!r} must be KEY=VALUE", key="--set", value=item)
        out[key.strip().removeprefix("data.")] = yaml.safe_load(value)
    return out


def _draw(args: argparse.Namespace) -> int:
    as_int("--workers", args.workers, min=1, error=DataConfigError)
    as_int("--chunk", args.chunk, min=1, error=DataConfigError)
    as_int("--jpeg-quality", args.jpeg_quality, min=1, max=95, error=DataConfigError)
    options = {"variant": args.variant, "resolution": args.resolution, "seed": args.seed,
               "supersample": args.supersample, "cache_dir": False, **_parse_set(args.set)}
    for key in ("size", "test_size", "val_fraction"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    o = check_options(options)
    if args.to == "wds":
        as_int("--shard-size", args.shard_size, min=1, error=DataConfigError)
        sink = WdsSink(args.out, shard_size=args.shard_size, overwrite=args.overwrite)
    else:
        sink = FileSink(args.out, overwrite=args.overwrite)
    stats = write_corpus(o, sink, image_format=args.image_format,
                         workers=args.workers, chunk=args.chunk, jpeg_quality=args.jpeg_quality,
                         progress=not args.no_progress)
    print(f"fundus_synth: drew {stats['images']} images ({o['variant']}, {o['resolution']} px, {args.image_format}) "
          f"in {stats['seconds']:.1f} s: {stats['images_per_s']:.1f} images/s with {args.workers} worker(s); "
          f"{stats['bytes'] / 2**20:.1f} MiB of images; peak memory {_peak_mib()}")
    if args.to == "wds":
        print(f"train on it: data.format=wds data.path={sink.path}")
    else:
        print(f"train on it: data.format=jsonl data.path={args.out}/{MANIFEST}")
    return 0


def _peak_mib() -> str:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return f"{own:.0f} MiB (main process)" + (f", {kids:.0f} MiB (largest worker)" if kids else "")


def _benchmark_draw(args: argparse.Namespace) -> int:
    print(f"fundus_synth draw to disk: {args.n} images per row, {args.image_format}, chunk {args.chunk}")
    print(f"{'resolution':>10} {'workers':>8} {'seconds':>8} {'images/s':>9} {'MiB/image':>10}")
    for res in args.resolutions:
        for w in args.workers:
            with tempfile.TemporaryDirectory(prefix="fundus_synth_bench_") as tmp:
                o = {"size": args.n, "test_size": 0, "resolution": res, "cache_dir": False}
                st = write_corpus(o, FileSink(tmp), image_format=args.image_format, workers=w, chunk=args.chunk,
                                  progress=False)
            print(f"{res:>10} {w:>8} {st['seconds']:>8.2f} {st['images_per_s']:>9.1f} "
                  f"{st['bytes'] / st['images'] / 2**20:>10.4f}", flush=True)
    print(f"peak memory {_peak_mib()}")
    return 0


def _run(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    if args.command == "draw":
        return _draw(args)
    if args.command == "benchmark-draw":
        return _benchmark_draw(args)
    if args.benchmark:
        ro = _render_options(args)
        render(20, seed=args.seed, **ro)  # warm-up
        t0 = time.perf_counter()
        render(args.n, seed=args.seed, stream=7, **ro)
        dt = time.perf_counter() - t0
        print(f"fundus_synth: {args.n / dt:.0f} images/s at {args.resolution} px (supersample {args.supersample}, "
              f"{args.n} images in {dt:.2f} s, one process)")
    if args.preview:
        from PIL import Image

        k = 8
        ro = _render_options(args)
        imgs, truths = render(k * k, seed=args.seed, stream=VARIANTS[args.variant].streams[0], **ro)
        R = args.resolution
        grid = imgs.reshape(k, k, R, R, 3).transpose(0, 2, 1, 3, 4).reshape(k * R, k * R, 3)
        Image.fromarray(grid).save(args.preview)
        for i, t in enumerate(truths):
            print(f"[{i // k},{i % k}] {t['texts']['disease']} | {t['texts']['description']}")
    if not (args.benchmark or args.preview):
        ap.print_help()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; a configuration error prints ``error: ...`` and returns 2."""
    ap = _parser()
    args = ap.parse_args(argv)
    try:
        return _run(args, ap)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
