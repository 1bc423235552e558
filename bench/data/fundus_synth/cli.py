"""``python -m bench.data.fundus_synth``: preview and benchmark the generator.

    python -m bench.data.fundus_synth --preview grid.png [--variant dr]   # 64 examples + their texts
    python -m bench.data.fundus_synth --benchmark [-n 1000] [--resolution 64]   # images/s, one process
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from ...errors import ConfigError
from . import __doc__ as PACKAGE_DOC
from .dataset import draw_options
from .draw import render
from .options import check_options


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.data.fundus_synth", description=PACKAGE_DOC.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", action="store_true", help="print the drawing speed (images/s, one process)")
    ap.add_argument("--preview", metavar="PNG", help="write a grid of 8 x 8 example images and print their texts")
    ap.add_argument("-n", type=int, default=1000, help="images to draw for --benchmark (default 1000)")
    ap.add_argument("--resolution", type=int, default=64, help="image side in pixels (default 64)")
    ap.add_argument("--supersample", type=int, default=1, help="supersampling factor 1-4 (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    return ap


def _render_options(args: argparse.Namespace) -> dict:
    o = check_options({"resolution": args.resolution, "supersample": args.supersample, "seed": args.seed,
                       "cache_dir": False})
    return draw_options(o)


def _run(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
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
        imgs, truths = render(k * k, seed=args.seed, **_render_options(args))
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
