"""``python -m bench.perf data``: the data path at corpus scale, in one run.

- **throughput**: images/s of :func:`bench.data.loader.train_batches` (decode + ``train.augment=open_clip``
  + resize to ``--resolution``) with 0, 1, 2 workers, from JPEG, PNG and npz files drawn by
  ``python -m bench.data.fundus_synth draw`` at ``--source-resolution`` px; next to open_clip's own
  training pipeline (``open_clip_train.data.get_csv_dataset`` with ``open_clip.image_transform(is_train=True)``:
  the same RandomResizedCrop 0.9-1 bicubic, then ToTensor + Normalize) on the same files, same batch size
  and workers (npz: open_clip cannot read it). Timed from the second batch (worker start-up excluded).
  Format ``wds``: the JPEG files exported as WebDataset shards, read with ``data.format=wds``, next to the
  stages of open_clip's webdataset pipeline (:mod:`bench.perf_wds`).
- **memory / start-up**: a fresh process per corpus size (``--sizes``, default 10k and 100k samples) and
  format (``--memory-formats``: ``jsonl``, and ``wds``, the same corpus exported as shards of 1000) builds
  the dataset (``data.check_images=auto``), the tiny model at the resolution, and runs ``--steps``
  pretraining steps with 2 workers; reported: the RSS once the dataset is built, the peak RSS of the main
  process and of the largest worker, and the seconds from the command to the end of the first training
  step. The manifests
  of these corpora reuse the drawn image files cyclically (distinct ids and texts per sample): the data
  path's memory depends on the number of samples, not of distinct files.
- **wait share**: the share of the loop's time spent waiting for a batch, with 2 workers, the tiny ViT at
  64 px (after the first step).

Goals (issue 12): loader >= 1.0x open_clip at equal workers; >= 400 img/s per worker for 224 px JPEG; peak
RSS within 10 % between 10k and 100k; start-up <= 15 s at 100k; wait share < 5 %. The drawn files are cached
in ``--dir`` (default ``~/.cache/contrastive-bench/perf-data``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("bench.perf")

DEFAULT_DIR = Path("~/.cache/contrastive-bench/perf-data").expanduser()
FORMATS = ("jpg", "png", "npz", "wds")  # wds: the jpg files as WebDataset shards (bench/perf_wds.py)


def draw(folder: Path, fmt: str, n: int, resolution: int) -> Path:
    """``n`` fundus_synth images as ``fmt`` files under ``folder`` (cached); the manifest path."""
    out = folder / f"{fmt}_{resolution}px_{n}"
    manifest = out / "manifest.jsonl"
    if not manifest.exists():
        cmd = [sys.executable, "-m", "bench.data.fundus_synth", "draw", "--out", str(out), "--size", str(n),
               "--test-size", "0", "--resolution", str(resolution), "--image-format", fmt,
               "--workers", str(max(1, min(8, (os.cpu_count() or 2)))), "--no-progress", "--overwrite"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return manifest


def corpus_manifest(source: Path, n: int) -> Path:
    """A manifest of ``n`` samples reusing the images of ``source`` cyclically (ids and texts distinct)."""
    out = source.parent / f"{source.parent.name}_x{n}.jsonl"
    if out.exists():
        return out
    records = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    base = source.parent
    with open(out.with_suffix(".tmp"), "w") as f:
        for i in range(n):
            r = dict(records[i % len(records)])
            r["id"] = f"p{i}"
            r["image"] = str(base / r["image"])
            r["split"] = "train"
            r.pop("targets", None)
            r["texts"] = {k: (f"{v} ({i})" if v else v) for k, v in r.get("texts", {}).items()}
            f.write(json.dumps(r) + "\n")
    os.replace(out.with_suffix(".tmp"), out)
    return out


def ours(manifest: Path, workers: int, n_images: int, batch: int, resolution: int, fmt: str = "jsonl") -> float:
    """img/s of the harness's loader (``train.augment=open_clip``) over ``data.format=fmt`` at ``manifest``."""
    from .data import build_dataset
    from .data.loader import train_batches

    data = build_dataset({"format": fmt, "path": str(manifest), "check_images": "none"})
    steps = max(2, n_images // batch + 1)
    it = iter(train_batches(data, resolution, "open_clip", 0, batch, steps, workers=workers))
    next(it)  # worker start-up
    t0 = time.perf_counter()
    seen = sum(len(i) for i, _ in it)
    return seen / (time.perf_counter() - t0)


def open_clip_pipeline(manifest: Path, workers: int, n_images: int, batch: int, resolution: int) -> float | None:
    try:
        from open_clip import image_transform
        from open_clip_train.data import get_csv_dataset
    except ImportError:
        return None
    import torch

    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    if str(rows[0]["image"]).endswith(".npz"):
        return None
    csv = manifest.with_suffix(".openclip.tsv")
    base = manifest.parent
    with open(csv, "w") as f:
        f.write("filepath\ttitle\n")
        for r in rows[: max(n_images + batch, batch * 2)]:
            f.write(f"{base / r['image']}\tx\n")
    args = argparse.Namespace(train_data=str(csv), val_data=None, csv_img_key="filepath", csv_caption_key="title",
                              csv_separator="\t", batch_size=batch, workers=workers, distributed=False)
    info = get_csv_dataset(args, image_transform(resolution, is_train=True), is_train=True,
                           tokenizer=lambda texts: torch.zeros(len(texts), 1, dtype=torch.long))
    it = iter(info.dataloader)
    next(it)
    t0 = time.perf_counter()
    seen = 0
    for images, _ in it:
        seen += len(images)
        if seen >= n_images:
            break
    return seen / (time.perf_counter() - t0)


def probe(manifest: str, resolution: int, steps: int, workers: int, batch: int, launched: float,
          fmt: str = "jsonl") -> dict:
    """In a fresh process: dataset (``data.format=fmt`` at ``manifest``), tiny model, ``steps`` pretraining
    steps through the loader."""
    import torch

    from .cell import build_objective
    from .config import merge, parse_overrides
    from .data import build_dataset
    from .data.loader import train_batches
    from .models import build_model
    from .train import make_optimizer, make_schedule, prepare_levels
    from .train_step import TrainStep

    torch.set_num_threads(1)
    cfg = merge(parse_overrides([f"data.resolution={resolution}", f"train.batch_size={batch}",
                                 "image.patch_size=16" if resolution >= 128 else "image.patch_size=8"]))
    data = build_dataset({"format": fmt, "path": manifest, "workers": workers})
    rss_data = _rss_mib()
    objective = build_objective(merge(parse_overrides(["objective.name=clip", "objective.level=disease"])))
    model = build_model(cfg, objective)
    batching = prepare_levels(model, data, ["disease"], False)
    optimizer = make_optimizer(model, cfg.train)
    stepper = TrainStep(model, model, objective, optimizer, make_schedule(optimizer, 1, 1000), grad_clip=10.0,
                        device=torch.device("cpu"))
    batches = train_batches(data, resolution, "flip", 0, batch, steps, workers=workers)
    t_first = t_loop = None
    for step, (idx, x) in enumerate(batches):
        if step == 1:
            t_loop, wait0 = time.perf_counter(), batches.wait_s
        tokens = {"disease": batching["disease"].batch_tokens(idx)}
        stepper(model.preprocess(x), tokens, {"disease": batching["disease"].labels[idx]}, timed=False)
        if t_first is None:
            t_first = time.time() - launched
    loop = time.perf_counter() - t_loop if t_loop else float("nan")
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"format": fmt, "samples": len(data), "startup_s": t_first, "rss_after_data_mib": rss_data,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_rss_mib": kids, "wait_share": (batches.wait_s - wait0) / loop if t_loop else float("nan"),
            "steps": steps, "workers": workers, "resolution": resolution}


def _proc_mib(path: str, key: str) -> float:
    """A ``kB`` line of a /proc file (``VmRSS:`` of status, ``Private_Dirty:`` of smaps_rollup) in MiB."""
    with open(path) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mib() -> float:
    return _proc_mib("/proc/self/status", "VmRSS:")


def _private_dirty_mib() -> float:
    return _proc_mib("/proc/self/smaps_rollup", "Private_Dirty:")


def cow_growth(manifest: Path) -> dict:
    """MiB a forked process dirties by reading every sample's path: through the loader's numpy tables
    (``ImageSource``) and through ``dataset.samples[i]`` (a ``Sample`` built from the dataset's columns)."""
    from .data import build_dataset
    from .data.images import ImageSource

    data = build_dataset({"format": "jsonl", "path": str(manifest), "check_images": "none"})
    source = ImageSource(data)
    out = {"samples": len(data)}
    for name, read in (("numpy_tables", lambda i: source.paths[i]), ("sample_objects", lambda i: data.samples[i].image)):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: what a DataLoader worker does, then report its dirtied memory
            os.close(r)
            before = _private_dirty_mib()
            for i in range(len(data)):
                read(i)
            os.write(w, f"{_private_dirty_mib() - before}".encode())
            os._exit(0)
        os.close(w)
        out[name + "_mib"] = float(os.read(r, 64).decode())
        os.close(r)
        os.waitpid(pid, 0)
    return out


def run_probe(manifest: Path, resolution: int, steps: int, workers: int, batch: int, fmt: str = "jsonl") -> dict:
    cmd = [sys.executable, "-m", "bench.perf_data", "_probe", str(manifest), str(resolution), str(steps), str(workers),
           str(batch), repr(time.time()), fmt]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_probe"]:
        m, r, s, w, b, t, f = argv[1:8]
        print(json.dumps(probe(m, int(r), int(s), int(w), int(b), float(t), f)))
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.perf data", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"cache of drawn files (default {DEFAULT_DIR})")
    ap.add_argument("--files", type=int, default=512, help="distinct drawn images per format (default 512)")
    ap.add_argument("--source-resolution", type=int, default=256, help="drawn image side (default 256)")
    ap.add_argument("--resolution", type=int, default=224, help="loader output side (default 224)")
    ap.add_argument("--images", type=int, default=384, help="images timed per throughput cell (default 384)")
    ap.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="default 0 1 2")
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                    help="corpus sizes of the memory / start-up probe (default 10000 100000)")
    ap.add_argument("--memory-formats", nargs="+", default=["jsonl", "wds"], choices=["jsonl", "wds"],
                    help="data formats of the memory / start-up probe (default jsonl wds; wds: the corpus as shards)")
    ap.add_argument("--steps", type=int, default=30, help="training steps per probe (default 30)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "memory", "wait"],
                    help="parts to leave out (memory includes the copy-on-write measurement)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.dir.mkdir(parents=True, exist_ok=True)
    res: dict = {"cpus": len(os.sched_getaffinity(0)), "throughput": [], "memory": [], "wait": None, "cow": None}
    if "throughput" not in args.skip:
        for fmt in args.formats:
            m = draw(args.dir, "jpg" if fmt == "wds" else fmt, args.files, args.source_resolution)
            for w in args.workers:
                if fmt == "wds":  # the same JPEG bytes in shards; open_clip's webdataset pipeline next to ours
                    from . import perf_wds

                    shards = perf_wds.make_shards(m)
                    a = perf_wds.ours(shards, w, args.images, args.batch, args.resolution)
                    b = perf_wds.open_clip_pipeline(shards, w, args.images, args.batch, args.resolution)
                else:
                    a = ours(m, w, args.images, args.batch, args.resolution)
                    b = open_clip_pipeline(m, w, args.images, args.batch, args.resolution)
                res["throughput"].append({"format": fmt, "workers": w, "ours_img_s": a, "open_clip_img_s": b})
    if "memory" not in args.skip:
        m = draw(args.dir, "jpg", args.files, args.source_resolution)
        for fmt in args.memory_formats:
            for n in args.sizes:
                path = corpus_manifest(m, n)
                if fmt == "wds":  # the same corpus as shards (the JPEG bytes copied)
                    from . import perf_wds

                    path = perf_wds.make_shards(path, path.parent.with_name(f"{path.stem}_wds"), shard_size=1000)
                res["memory"].append(run_probe(path, args.resolution, args.steps, 2, args.batch, fmt))
        res["cow"] = cow_growth(corpus_manifest(m, max(args.sizes)))
    if "wait" not in args.skip:
        m = draw(args.dir, "png", args.files, 64)
        res["wait"] = run_probe(m, 64, max(args.steps, 20), 2, 128 if args.files >= 256 else 32)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"CPUs available: {res['cpus']}")
    if res["throughput"]:
        print(f"\nthroughput, {args.source_resolution} px files -> {args.resolution} px, open_clip transform, "
              f"batch {args.batch} (img/s)")
        print(f"{'format':>6} {'workers':>7} {'ours':>8} {'open_clip':>10} {'ratio':>6}")
        for r in res["throughput"]:
            oc, mine = r["open_clip_img_s"], r["ours_img_s"]
            ocs = f"{oc:.1f}" if oc else "n/a"
            ratio = f"{mine / oc:.2f}" if oc else "n/a"
            print(f"{r['format']:>6} {r['workers']:>7} {mine:8.1f} {ocs:>10} {ratio:>6}")
    if res["memory"]:
        print(f"\npretraining probe ({args.steps} steps, 2 workers, tiny ViT at {args.resolution} px)")
        print(f"{'format':>6} {'samples':>8} {'RSS after data MiB':>19} {'peak RSS MiB':>13} {'worker MiB':>11} "
              f"{'startup s':>10}")
        for r in res["memory"]:
            print(f"{r['format']:>6} {r['samples']:>8} {r['rss_after_data_mib']:19.0f} {r['peak_rss_mib']:13.0f} "
                  f"{r['worker_peak_rss_mib']:11.0f} {r['startup_s']:10.1f}")
        for fmt in args.memory_formats:
            rows = sorted((r for r in res["memory"] if r["format"] == fmt), key=lambda r: r["samples"])
            if len(rows) > 1:
                a, b = rows[0], rows[-1]
                print(f"{fmt}: peak RSS at {b['samples']} vs {a['samples']} samples: "
                      f"{100 * (b['peak_rss_mib'] / a['peak_rss_mib'] - 1):+.1f} % (goal: within 10 %)")
    if res["cow"]:
        c = res["cow"]
        print(f"\nmemory a forked worker dirties reading all {c['samples']} paths: {c['numpy_tables_mib']:.1f} MiB "
              f"(numpy tables, the loader) vs {c['sample_objects_mib']:.1f} MiB (dataset.samples[i], built from its columns)")
    if res["wait"]:
        w = res["wait"]
        print(f"\ndata-wait share, tiny ViT at 64 px, 2 workers: {100 * w['wait_share']:.1f} % of the loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
