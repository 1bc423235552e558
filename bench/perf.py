"""Performance benchmarks (not timed tests).

    python -m bench.perf objectives [--batch-sizes 256 1024 2048 4096] [--dim 512] [--threads 2] [--repeats 5]
    python -m bench.perf objectives --big [--chunk-size 1024] [--big-batch 16384]
    python -m bench.perf train [--models ...] [--steps N]   (the training-step benchmark, bench/perf_train.py)
    python -m bench.perf claims [--dir results/]   (what holding a cell's claim costs, bench/perf_claims.py)
    python -m bench.perf gpu [--json PATH]                   (the one-shot GPU check, bench/perf_gpu.py)

``objectives`` prints, for each batch size B, the forward+backward time of every objective next to
open_clip's ``ClipLoss`` measured in the same run, for two label patterns: **repeated** texts (ids with B/16
and B/4 distinct values on the two levels) and **distinct** texts (every id different). Rounds are
interleaved (every function once per round, in a shuffled order); the ratio to ``ClipLoss`` is computed per
round (so a machine whose load drifts affects both alike) and shown as the median with the spread over rounds
``[min - max]``. Also shown: the "floor" (the same matrix products with a trivial loss: one product, what
``clip`` needs; two, what ``ClipLoss`` and a two-level ``mgll`` need), the reference implementations
(``impl=reference``) and the goals at B = 2048 (``clip`` <= 0.6x, ``mgll`` <= 1.5x, both label patterns).
Labels are handed over on the host, as the training loop does. A second table compares target building with
the released MGLL code's Python double loop over strings. Memory (``peak MiB``): ``bench/perf_memory.py``.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import time
from typing import Any
from collections.abc import Callable

from .perf_memory import cmd_big, cmd_probe, probe_subprocess

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
    ("clip [impl=reference]", "clip", {"impl": "reference"}, "ids"),
    ("mgll [impl=reference]", "mgll", {"impl": "reference"}, "ids"),
]
REFERENCE = "open_clip ClipLoss"
FLOOR1 = "floor: 1 product + sum"
FLOOR2 = "floor: 2 products + sum"
CLIP_ROW, MGLL_ROW = "clip", "mgll (2 levels, all terms)"
#: row -> the largest ratio to ClipLoss allowed at B = GOAL_B (both label patterns)
GOALS = {CLIP_ROW: 0.6, MGLL_ROW: 1.5}
GOAL_B = 2048
TEXTS = ("repeated", "distinct")


# ---------------------------------------------------------------------------------------------------------
# inputs and the functions measured
# ---------------------------------------------------------------------------------------------------------
def make_inputs(b: int, d: int, device: str, seed: int = 0, texts: str = "repeated") -> dict[str, Any]:
    """Unit features on ``device`` (image + two levels), labels on the host: ids (``repeated``: B/16 and B/4
    distinct values; ``distinct``: all different) and multi-hot labels."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def feat():
        return torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1).to(device).requires_grad_()

    image, t1, t2 = feat(), feat(), feat()
    if texts == "distinct":
        ids1, ids2 = torch.randperm(b, generator=g), torch.randperm(b, generator=g)
    else:
        ids1 = torch.randint(0, max(1, b // 16), (b,), generator=g)  # coarse level: many duplicates
        ids2 = torch.randint(0, max(1, b // 4), (b,), generator=g)
    mh1 = (torch.rand(b, 8, generator=g) > 0.7).long()
    mh2 = (torch.rand(b, 12, generator=g) > 0.8).long()
    scale = torch.tensor(1 / 0.07).to(device).requires_grad_()
    bias = torch.tensor(-10.0).to(device).requires_grad_()
    return dict(image=image, texts={"disease": t1, "description": t2}, ids={"disease": ids1, "description": ids2},
                mh={"disease": mh1, "description": mh2}, scale=scale, bias=bias)


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
            obj.check_finite = False  # as in training: no host synchronisation per call
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


def time_interleaved(fns: dict[Any, Callable[[], None]], repeats: int, device: str, seed: int = 0) -> dict[Any, list[float]]:
    """Every function once (warm-up), then ``repeats`` rounds of all of them in a shuffled order; seconds per
    run, index r = round r."""
    times: dict[Any, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()
    _sync(device)
    rnd = random.Random(seed)
    keys = list(fns)
    for _ in range(repeats):
        rnd.shuffle(keys)
        for k in keys:
            _sync(device)
            t0 = time.perf_counter()
            fns[k]()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return times


def ratios(times: dict[Any, list[float]], key: Any, ref: Any) -> list[float]:
    """Per-round ratios ``times[key][r] / times[ref][r]``."""
    return [a / r for a, r in zip(times[key], times[ref])]


def _spread(rs: list[float]) -> str:
    return f"{statistics.median(rs):.2f} [{min(rs):.2f}-{max(rs):.2f}]"


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
    ids1 = torch.tensor([table1.setdefault(t, len(table1)) for t in t1])  # on the host, as in training
    ids2 = torch.tensor([table2.setdefault(t, len(table2)) for t in t2])

    def ours():  # what mgll does per step, from ids (computed once per dataset): counts and positive pairs
        for ids in (ids1, ids2):
            LevelTargets.build("exact", ids, b, device=device).pairs(None, None)

    def dense():  # W and Y materialised as B x B matrices (on the device)
        for ids in (ids1, ids2):
            c = cooccurrence(ids.to(device), "exact")
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
def measure_objectives(b: int, d: int, device: str, repeats: int, only: list[str] | None = None,
                       seed: int = 0, rows: list[str] | None = None) -> tuple[dict, list[str]]:
    """Times of every entry (``only``: those whose label contains one of these; ``rows``: exactly these) for
    both label patterns at batch size ``b``: ``{(label, texts): [s per round]}`` (the floors and ClipLoss under
    ``texts="repeated"``; multi-hot entries only there) and the entry labels."""
    labels = [e[0] for e in ENTRIES if (not only or any(o in e[0] for o in only)) and (rows is None or e[0] in rows)]
    inputs = {t: make_inputs(b, d, device, seed=seed, texts=t) for t in TEXTS}
    fns: dict[tuple[str, str], Callable[[], None]] = {
        (lab, "repeated"): step_fn(lab, inputs["repeated"]) for lab in [REFERENCE, FLOOR1, FLOOR2]}
    for lab in labels:
        form = next(e[3] for e in ENTRIES if e[0] == lab)
        for t in TEXTS if form == "ids" else ("repeated",):
            fns[(lab, t)] = step_fn(lab, inputs[t])
    return time_interleaved(fns, repeats, device, seed), labels


def cmd_objectives(args: argparse.Namespace) -> int:
    import torch
    from tabulate import tabulate

    torch.set_num_threads(args.threads)
    device = args.device
    if args.big:
        return cmd_big(args)
    print(f"# objectives: forward+backward, D={args.dim}, fp32, threads={args.threads}, device={device}, "
          f"repeats={args.repeats} (interleaved rounds; ratio to {REFERENCE} per round: median [min-max]); "
          f"torch {torch.__version__}")
    ref = (REFERENCE, "repeated")
    goals: list[str] = []
    for b in args.batch_sizes:
        reps = args.repeats if b < 4096 else max(3, args.repeats // 2)
        log.info("B=%d: timing (%d rounds)", b, reps)
        times, labels = measure_objectives(b, args.dim, device, reps, args.only)
        rows = []
        for lab in [REFERENCE, FLOOR1, FLOOR2] + labels:
            row = [lab]
            for t in TEXTS:
                if (lab, t) in times:
                    row += [f"{statistics.median(times[(lab, t)]) * 1e3:.2f}", _spread(ratios(times, (lab, t), ref))]
                else:
                    row += ["", ""]
            mem = None if args.no_memory else probe_subprocess(lab, b, args.dim, args.threads, 0, device)
            rows.append(row + [f"{mem['peak_mib']:.0f}" if mem else "n/a"])
            if b == GOAL_B and lab in GOALS:
                for t in TEXTS:
                    med = statistics.median(ratios(times, (lab, t), ref))
                    goals.append(f"{lab}, {t} texts, B={b}: {med:.2f}x ClipLoss (goal <= {GOALS[lab]}x): "
                                 f"{'met' if med <= GOALS[lab] else 'NOT met'}")
        print(f"\n## B = {b}\n")
        print(tabulate(rows, tablefmt="github", headers=[
            "objective", "repeated: median ms", "repeated: x ClipLoss", "distinct: median ms", "distinct: x ClipLoss",
            "peak MiB"]))
        mgll_t = statistics.median(times[(MGLL_ROW, "repeated")]) if (MGLL_ROW, "repeated") in times else None
        tg = time_targets(b, device, args.repeats)
        trows = [
            ["ours: per-step target preparation from ids (2 levels)", f"{tg['ours'] * 1e3:.3f}",
             f"{tg['loop'] / tg['ours']:.0f}x", f"{100 * tg['ours'] / mgll_t:.2f} %" if mgll_t else "n/a"],
            ["dense W and Y as B x B tensors (2 levels)", f"{tg['dense'] * 1e3:.3f}", f"{tg['loop'] / tg['dense']:.0f}x",
             f"{100 * tg['dense'] / mgll_t:.2f} %" if mgll_t else "n/a"],
            ["released code: Python double loop over strings (2 levels)"
             + (f" [estimated from {tg['loop_rows']} rows x B/{tg['loop_rows']}]" if tg["loop_estimated"] else ""),
             f"{tg['loop'] * 1e3:.1f}", "1x", f"{100 * tg['loop'] / mgll_t:.0f} %" if mgll_t else "n/a"],
        ]
        print()
        print(tabulate(trows, headers=["target building", "ms", "speed-up vs loop", "% of mgll step"], tablefmt="github"))
    if goals:
        print("\n## goals\n")
        print("\n".join(f"- {g}" for g in goals))
    return 0


#: the other benchmarks, each a module with its own ``main(argv)``: name -> (module, help)
SUBCOMMANDS = {
    "train": ("perf_train", "images/s of a full training step through the harness vs a bare loop (python -m bench.perf train --help)"),
    "claims": ("perf_claims", "what holding a cell's claim costs a training loop (python -m bench.perf claims --help)"),
    "data": ("perf_data", "the data path: loader img/s vs open_clip's pipeline, memory and start-up at 10k/100k samples, data-wait share (python -m bench.perf data --help)"),
    "gpu": ("perf_gpu", "the one-shot GPU check: smoke cell, sync guard, ViT-B/16 throughput vs open_clip (python -m bench.perf gpu --help)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(["objectives", *SUBCOMMANDS]) + "}")
    p = sub.add_parser("objectives", help="time and memory of every objective next to open_clip's ClipLoss")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 2048, 4096])
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
    q.add_argument("--texts", default="repeated", choices=TEXTS)
    q.set_defaults(func=cmd_probe)
    for name, (_, text) in SUBCOMMANDS.items():
        sub.add_parser(name, add_help=False, help=text)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module = importlib.import_module(f".{SUBCOMMANDS[argv[0]][0]}", __package__)
        return module.main(argv[1:])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
