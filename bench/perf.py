"""Performance benchmarks (not timed tests).

    python -m bench.perf objectives [--batch-sizes 256 1024 4096] [--dim 512] [--threads 2] [--repeats 5]
    python -m bench.perf objectives --big [--chunk-size 1024] [--big-batch 16384]
    python -m bench.perf train [--models ...] [--steps N]   (the training-step benchmark, bench/perf_train.py)
    python -m bench.perf claims [--dir results/]   (what holding a cell's claim costs, bench/perf_claims.py)

``objectives`` prints, for each batch size B, the forward+backward time of every objective next to
open_clip's ``ClipLoss`` measured in the same run (interleaved repeats, median), their ratio, and the
"floor": the same matrix products with a trivial loss (``sum``) - one product (what ``clip`` needs) and two
products (what ``ClipLoss`` and a two-level ``mgll`` need). A second table compares target building with
the released MGLL code's Python double loop over strings.

Memory (column ``peak MiB``):
- on CUDA: ``torch.cuda.max_memory_allocated()`` during one forward+backward minus the memory allocated
  before it (inputs included in the baseline);
- on CPU: a fresh subprocess per measurement builds the inputs, runs a tiny warm-up (library workspaces),
  resets the kernel's peak-RSS counter (``/proc/self/clear_refs``), runs one forward+backward and reports
  the peak resident set size (``VmHWM``) minus the resident size just before the call: the extra memory
  the process really touched, allocator overheads included (Linux only; "n/a" elsewhere).

``--big`` measures ``mgll`` (two levels, all terms) at B = 16384, D = 512 with ``chunk_size`` the same way
(peak memory above the inputs; target: at most 2 GiB).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import statistics
import subprocess
import sys
import time
from typing import Any
from collections.abc import Callable

log = logging.getLogger("bench.perf")

#: (row label, objective name, options, label form) measured by ``objectives``
ENTRIES: list[tuple[str, str, dict, str]] = [
    ("clip", "clip", {}, "ids"),
    ("siglip", "siglip", {}, "ids"),
    ("clip_multipositive", "clip_multipositive", {}, "ids"),
    ("soft_clip (2 levels)", "soft_clip", {}, "ids"),
    ("medclip", "medclip", {}, "mh"),
    ("mgll (2 levels, all terms)", "mgll", {}, "ids"),
    ("mgll jaccard", "mgll", {"target": "jaccard"}, "mh"),
    ("mgll_released", "mgll_released", {}, "ids"),
]
REFERENCE = "open_clip ClipLoss"
FLOOR1 = "floor: 1 product + sum"
FLOOR2 = "floor: 2 products + sum"


# ---------------------------------------------------------------------------------------------------------
# inputs and the functions measured
# ---------------------------------------------------------------------------------------------------------
def make_inputs(b: int, d: int, device: str, seed: int = 0) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)

    def feat():
        return torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1).to(device).requires_grad_()

    image, t1, t2 = feat(), feat(), feat()
    ids1 = torch.randint(0, max(1, b // 16), (b,), generator=g).to(device)  # coarse level: many duplicates
    ids2 = torch.randint(0, max(1, b // 4), (b,), generator=g).to(device)
    mh1 = (torch.rand(b, 8, generator=g) > 0.7).long().to(device)
    mh2 = (torch.rand(b, 12, generator=g) > 0.8).long().to(device)
    scale = torch.tensor(1 / 0.07, device=device, requires_grad=True)
    bias = torch.tensor(-10.0, device=device, requires_grad=True)
    return dict(
        image=image,
        texts={"disease": t1, "description": t2},
        ids={"disease": ids1, "description": ids2},
        mh={"disease": mh1, "description": mh2},
        scale=scale,
        bias=bias,
    )


def _zero(inp: dict) -> None:
    for t in (inp["image"], *inp["texts"].values(), inp["scale"], inp["bias"]):
        t.grad = None


def step_fn(label: str, inp: dict, chunk_size: int = 0) -> Callable[[], None]:
    """A closure running one forward+backward of ``label`` on ``inp``."""
    x, y, y2, s, b = inp["image"], inp["texts"]["disease"], inp["texts"]["description"], inp["scale"], inp["bias"]
    if label == REFERENCE:
        from open_clip.loss import ClipLoss

        loss_fn = ClipLoss()

        def run():
            _zero(inp)
            loss_fn(x, y, s).backward()

        return run
    if label == FLOOR1:

        def run():
            _zero(inp)
            (s * x @ y.T).sum().backward()

        return run
    if label == FLOOR2:

        def run():
            _zero(inp)
            ((s * x @ y.T).sum() + (s * x @ y2.T).sum()).backward()

        return run
    import objectives

    for row, name, opts, form in ENTRIES:
        if row == label:
            options = dict(opts)
            if chunk_size:
                options["chunk_size"] = chunk_size
            obj = objectives.build(name, **options)
            labels = inp["mh"] if form == "mh" else inp["ids"]
            bias = b if obj.needs_logit_bias else None

            def run(obj=obj, labels=labels, bias=bias):
                _zero(inp)
                obj(x, inp["texts"], labels, s, bias)["loss"].backward()

            return run
    raise KeyError(label)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_interleaved(fns: dict[str, Callable[[], None]], repeats: int, device: str) -> dict[str, list[float]]:
    """Run every function once (warm-up), then ``repeats`` rounds of all of them; seconds per run."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()
    _sync(device)
    for _ in range(repeats):
        for k, f in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            f()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------------------
def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{key}:\s+(\d+)\s+kB", f.read(), re.M)
    return int(m.group(1)) if m else -1


def probe(label: str, b: int, d: int, threads: int, chunk_size: int, device: str) -> dict[str, float]:
    """One forward+backward in this (fresh) process; peak extra memory in MiB and the time."""
    import torch

    torch.set_num_threads(threads)
    small = make_inputs(8, d, device)
    step_fn(label, small)()  # library workspaces, lazy imports
    inp = make_inputs(b, d, device)
    fn = step_fn(label, inp, chunk_size)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
        return {"peak_mib": peak, "time_s": dt}
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    peak = (_status_kib("VmHWM") - before) / 1024
    return {"peak_mib": peak, "time_s": dt}


def probe_subprocess(label: str, b: int, d: int, threads: int, chunk_size: int, device: str) -> dict[str, float] | None:
    """Run :func:`probe` in a fresh interpreter (CPU memory needs a clean process)."""
    if not device.startswith("cuda") and not os.path.exists("/proc/self/clear_refs"):
        return None
    cmd = [
        sys.executable,
        "-m",
        "bench.perf",
        "_probe",
        "--label",
        label,
        "--batch",
        str(b),
        "--dim",
        str(d),
        "--threads",
        str(threads),
        "--chunk-size",
        str(chunk_size),
        "--device",
        device,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        log.warning(
            "memory probe %s B=%d failed: %s", label, b, proc.stderr.strip().splitlines()[-1:] or proc.returncode
        )
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------
# target building
# ---------------------------------------------------------------------------------------------------------
def _strings(b: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rnd = random.Random(seed)
    diseases = [f"This is a fundus image of Abnormal, disease {k}" for k in range(max(1, b // 16))]
    descr = [f"Description {k}: the optic disc shows finding {k % 7} with grade {k % 5}" for k in range(max(1, b // 4))]
    return [rnd.choice(diseases) for _ in range(b)], [rnd.choice(descr) for _ in range(b)]


def loop_targets(texts: list[str], rows: int | None = None) -> list[list[float]]:
    """The released code's way: a Python double loop over strings, then row normalisation."""
    n = len(texts)
    out = []
    for i in range(n if rows is None else rows):
        row = [1.0 if texts[i] == texts[j] else 0.0 for j in range(n)]
        s = sum(row)
        out.append([v / s for v in row])
    return out


def time_targets(b: int, device: str, repeats: int) -> dict[str, Any]:
    import torch

    from objectives.targets import LevelTargets, binary_targets, cooccurrence, soft_targets

    t1, t2 = _strings(b)
    table1, table2 = {}, {}
    ids1 = torch.tensor([table1.setdefault(t, len(table1)) for t in t1], device=device)
    ids2 = torch.tensor([table2.setdefault(t, len(table2)) for t in t2], device=device)

    def ours():  # what mgll does per step, from ids (computed once per dataset): counts and positive pairs
        for ids in (ids1, ids2):
            LevelTargets.build("exact", ids, b, device=device).pairs(None, None)

    def dense():  # W and Y materialised as B x B matrices
        for ids in (ids1, ids2):
            c = cooccurrence(ids, "exact")
            soft_targets(c), binary_targets(c)

    res = {}
    for key, fn in (("ours", ours), ("dense", dense)):
        ts = time_interleaved({key: fn}, repeats, device)[key]
        res[key] = statistics.median(ts)
    rows = b if b <= 1024 else 256
    t0 = time.perf_counter()
    loop_targets(t1, rows)
    loop_targets(t2, rows)
    res["loop"] = (time.perf_counter() - t0) * b / rows
    res["loop_estimated"] = rows < b
    res["loop_rows"] = rows
    return res


# ---------------------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------------------
def cmd_objectives(args: argparse.Namespace) -> int:
    import torch
    from tabulate import tabulate

    torch.set_num_threads(args.threads)
    device = args.device
    if args.big:
        return cmd_big(args)
    labels = [REFERENCE, FLOOR1, FLOOR2] + [e[0] for e in ENTRIES if not args.only or any(o in e[0] for o in args.only)]
    print(
        f"# objectives: forward+backward, D={args.dim}, threads={args.threads}, device={device}, "
        f"repeats={args.repeats} (interleaved with {REFERENCE}; on a shared machine trust min over median); "
        f"torch {torch.__version__}"
    )
    for b in args.batch_sizes:
        log.info("B=%d: timing %d entries", b, len(labels))
        inp = make_inputs(b, args.dim, device)
        fns = {lab: step_fn(lab, inp) for lab in labels}
        times = time_interleaved(fns, args.repeats if b < 4096 else max(2, args.repeats // 2), device)
        ref = statistics.median(times[REFERENCE])
        ref_min = min(times[REFERENCE])
        mgll_t = statistics.median(times[ENTRIES[5][0]]) if ENTRIES[5][0] in times else None
        rows = []
        for lab in labels:
            med = statistics.median(times[lab])
            mem = None if args.no_memory else probe_subprocess(lab, b, args.dim, args.threads, 0, device)
            rows.append(
                [
                    lab,
                    f"{med * 1e3:.2f}",
                    f"{min(times[lab]) * 1e3:.2f}",
                    f"{med / ref:.2f}",
                    f"{min(times[lab]) / ref_min:.2f}",
                    f"{mem['peak_mib']:.0f}" if mem else "n/a",
                ]
            )
        print(f"\n## B = {b}\n")
        print(
            tabulate(
                rows,
                headers=["objective", "median ms", "min ms", "x ClipLoss (median)", "x ClipLoss (min)", "peak MiB"],
                tablefmt="github",
            )
        )
        tg = time_targets(b, device, args.repeats)
        trows = [
            [
                "ours: per-step target preparation from ids (2 levels)",
                f"{tg['ours'] * 1e3:.3f}",
                f"{tg['loop'] / tg['ours']:.0f}x",
                f"{100 * tg['ours'] / mgll_t:.2f} %" if mgll_t else "n/a",
            ],
            [
                "dense W and Y as B x B tensors (2 levels)",
                f"{tg['dense'] * 1e3:.3f}",
                f"{tg['loop'] / tg['dense']:.0f}x",
                f"{100 * tg['dense'] / mgll_t:.2f} %" if mgll_t else "n/a",
            ],
            [
                "released code: Python double loop over strings (2 levels)"
                + (f" [estimated from {tg['loop_rows']} rows x B/{tg['loop_rows']}]" if tg["loop_estimated"] else ""),
                f"{tg['loop'] * 1e3:.1f}",
                "1x",
                f"{100 * tg['loop'] / mgll_t:.0f} %" if mgll_t else "n/a",
            ],
        ]
        print()
        print(
            tabulate(trows, headers=["target building", "ms", "speed-up vs loop", "% of mgll step"], tablefmt="github")
        )
    return 0


def cmd_big(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    b, d = args.big_batch, args.dim
    inputs_mib = 3 * b * d * 4 / 2**20
    print(
        f"# big: mgll (2 levels, all terms), B={b}, D={d}, chunk_size={args.chunk_size}, threads={args.threads}, "
        f"device={args.device}; inputs (3 x B x D fp32) = {inputs_mib:.0f} MiB"
    )
    res = probe_subprocess(ENTRIES[5][0], b, d, args.threads, args.chunk_size, args.device)
    if res is None:
        print("memory measurement not available on this platform")
        return 1
    rows = [
        [
            f"mgll chunk_size={args.chunk_size}",
            f"{res['time_s']:.1f}",
            f"{res['peak_mib']:.0f}",
            f"{res['peak_mib'] / 1024:.2f}",
            "yes" if res["peak_mib"] <= 2048 else "NO",
        ]
    ]
    print(tabulate(rows, headers=["run", "fwd+bwd s", "peak MiB above inputs", "GiB", "<= 2 GiB"], tablefmt="github"))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    print(json.dumps(probe(args.label, args.batch, args.dim, args.threads, args.chunk_size, args.device)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.perf",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{objectives,train,claims}")
    p = sub.add_parser("objectives", help="time and memory of every objective next to open_clip's ClipLoss")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", nargs="*", help="only the objective rows whose label contains one of these")
    p.add_argument("--no-memory", action="store_true", help="skip the (slow, one process each) memory probes")
    p.add_argument("--big", action="store_true", help="measure B=--big-batch mgll with --chunk-size instead")
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--big-batch", type=int, default=16384)
    p.set_defaults(func=cmd_objectives)
    q = sub.add_parser("_probe")  # internal: one measurement in a fresh process
    q.add_argument("--label", required=True)
    q.add_argument("--batch", type=int, required=True)
    q.add_argument("--dim", type=int, default=512)
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--chunk-size", type=int, default=0)
    q.add_argument("--device", default="cpu")
    q.set_defaults(func=cmd_probe)
    t = sub.add_parser(
        "train",
        help="images/s of a full training step through the harness vs a bare loop (see python -m bench.perf_train --help)",
        add_help=False,
    )
    t.set_defaults(func=None)
    c = sub.add_parser("claims", help="what holding a cell's claim costs a training loop (see bench/perf_claims.py)",
                       add_help=False)
    c.set_defaults(func=None)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from .perf_train import main as train_main

        return train_main(argv[1:])
    if argv and argv[0] == "claims":
        from .perf_claims import main as claims_main

        return claims_main(argv[1:])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
