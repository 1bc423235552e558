"""Memory of one objective forward+backward, measured in a fresh process (``python -m bench.perf``'s
``peak MiB`` column and ``objectives --big``).

- on CUDA: ``torch.cuda.max_memory_allocated()`` during one forward+backward minus the memory allocated
  before it (inputs included in the baseline);
- on CPU: a fresh subprocess builds the inputs, runs a tiny warm-up (library workspaces), resets the kernel's
  peak-RSS counter (``/proc/self/clear_refs``), runs one forward+backward and reports the peak resident set
  size (``VmHWM``) minus the resident size just before the call: the extra memory the process really touched,
  allocator overheads included (Linux only; "n/a" elsewhere).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time

log = logging.getLogger("bench.perf")


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{key}:\s+(\d+)\s+kB", f.read(), re.M)
    return int(m.group(1)) if m else -1


def probe(label: str, b: int, d: int, threads: int, chunk_size: int, device: str, texts: str = "repeated") -> dict:
    """One forward+backward in this (fresh) process; peak extra memory in MiB and the time."""
    import torch

    from .perf import make_inputs, step_fn

    torch.set_num_threads(threads)
    step_fn(label, make_inputs(8, d, device, texts=texts))()  # library workspaces, lazy imports
    fn = step_fn(label, make_inputs(b, d, device, texts=texts), chunk_size)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        return {"peak_mib": (torch.cuda.max_memory_allocated() - before) / 2**20, "time_s": dt}
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return {"peak_mib": (_status_kib("VmHWM") - before) / 1024, "time_s": dt}


def probe_subprocess(label: str, b: int, d: int, threads: int, chunk_size: int, device: str,
                     texts: str = "repeated") -> dict | None:
    """Run :func:`probe` in a fresh interpreter (CPU memory needs a clean process)."""
    if not device.startswith("cuda") and not os.path.exists("/proc/self/clear_refs"):
        return None
    cmd = [sys.executable, "-m", "bench.perf", "_probe", "--label", label, "--batch", str(b), "--dim", str(d),
           "--threads", str(threads), "--chunk-size", str(chunk_size), "--device", device, "--texts", texts]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        log.warning("memory probe %s B=%d failed: %s", label, b, proc.stderr.strip().splitlines()[-1:] or proc.returncode)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cmd_probe(args: argparse.Namespace) -> int:
    print(json.dumps(probe(args.label, args.batch, args.dim, args.threads, args.chunk_size, args.device, args.texts)))
    return 0


def cmd_big(args: argparse.Namespace) -> int:
    """``mgll`` (two levels, all terms) at B = ``--big-batch`` with ``chunk_size``: peak memory above the inputs."""
    from tabulate import tabulate

    from .perf import MGLL_ROW

    b, d = args.big_batch, args.dim
    inputs_mib = 3 * b * d * 4 / 2**20
    print(f"# big: mgll (2 levels, all terms), B={b}, D={d}, chunk_size={args.chunk_size}, threads={args.threads}, "
          f"device={args.device}; inputs (3 x B x D fp32) = {inputs_mib:.0f} MiB")
    res = probe_subprocess(MGLL_ROW, b, d, args.threads, args.chunk_size, args.device)
    if res is None:
        print("memory measurement not available on this platform")
        return 1
    rows = [[f"mgll chunk_size={args.chunk_size}", f"{res['time_s']:.1f}", f"{res['peak_mib']:.0f}",
             f"{res['peak_mib'] / 1024:.2f}", "yes" if res["peak_mib"] <= 2048 else "NO"]]
    print(tabulate(rows, headers=["run", "fwd+bwd s", "peak MiB above inputs", "GiB", "<= 2 GiB"], tablefmt="github"))
    return 0
