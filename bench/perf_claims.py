"""``python -m bench.perf claims``: what holding a cell's claim (``bench.claim``) costs a training loop.

Prints the time of one heartbeat (read the claim, check its token, touch it) in the folder given, and the
median time of a CPU training loop (a small MLP, forward + backward + AdamW step) with no claim, with a
claim at the default heartbeat (every 30 s), and with a heartbeat every ``--interval`` seconds (default
10 ms: 3000 times the default rate, an upper bound), measured interleaved in one process.

    python -m bench.perf claims [--dir results/] [--steps 300] [--repeats 7] [--interval 0.01]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _loop(steps: int):
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 256))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(64, 256)

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = net(x).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf claims", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=None, help="folder to hold the claims in (default: a temporary folder)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--interval", type=float, default=0.01, help="the fast heartbeat, seconds")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from . import claim

    torch.set_num_threads(args.threads)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="claims-perf-"))
    cell = base / f".claims-perf-{os.getpid()}"
    cell.mkdir(parents=True, exist_ok=True)
    try:
        held = claim.acquire(cell, heartbeat_s=3600)
        assert held is not None
        ticks = []
        for _ in range(1000):
            t0 = time.perf_counter()
            held.held()
            os.utime(held.path)
            ticks.append(time.perf_counter() - t0)
        held.release()
        print(f"one heartbeat (read + token check + utime) in {cell.parent}: median {statistics.median(ticks) * 1e6:.1f} us "
              f"(every {claim.HEARTBEAT_S:.0f} s by default: {statistics.median(ticks) / claim.HEARTBEAT_S * 100:.6f}% of a core)")

        run = _loop(args.steps)
        run()  # warm-up
        times: dict[str, list[float]] = {"no claim": [], f"claim, heartbeat {claim.HEARTBEAT_S:.0f} s": [],
                                         f"claim, heartbeat {args.interval * 1000:.0f} ms": []}
        for _ in range(args.repeats):
            times["no claim"].append(run())
            for label, every in ((f"claim, heartbeat {claim.HEARTBEAT_S:.0f} s", claim.HEARTBEAT_S),
                                 (f"claim, heartbeat {args.interval * 1000:.0f} ms", args.interval)):
                c = claim.acquire(cell, heartbeat_s=every)
                assert c is not None
                try:
                    times[label].append(run())
                finally:
                    c.release()
        ref = statistics.median(times["no claim"])
        print(f"\ntraining loop, {args.steps} steps (MLP 256-512-256, batch 64, {args.threads} thread(s)), "
              f"median of {args.repeats} interleaved repeats:")
        for label, ts in times.items():
            med = statistics.median(ts)
            print(f"  {label:<28} {med * 1000:8.1f} ms  ({med / args.steps * 1e3:.3f} ms/step)  ratio {med / ref:.3f}")
    finally:
        for p in cell.iterdir():
            p.unlink()
        cell.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
