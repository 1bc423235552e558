"""The one-shot GPU check: ``python -m bench.perf gpu [--json PATH]`` (about 3 minutes on one GPU).

In one process, each part timed and reported, whatever the others do:

1. **smoke**: a tiny cell (``fundus_synth``, tiny towers, one epoch, a linear probe) through ``bench.cell.execute``
   on CUDA with the default precision (bf16 autocast): ``done``, its images/s, loss time, peak memory;
2. **sync**: every objective (forward + backward, host labels) and three training steps of the ViT-B/16
   harness (bf16, then fp16 with its gradient scaler) under ``torch.cuda.set_sync_debug_mode("error")``
   (``bench.syncguard``): any host synchronisation fails the part, naming the operation;
3. **throughput**: a ViT-B/16 at 224 px (open_clip towers, random init, batch ``--batch-size``) trained by the
   harness step (``bench.train_step.TrainStep``: bf16, fp32 ``clip`` objective, fused AdamW, clipping, clamp)
   next to **open_clip's own training loop** (``open_clip_train.train.train_one_epoch``, ``amp_bf16``,
   ``ClipLoss``) on the *same* weights (copied) and the *same* device-resident batches; the first step's
   losses must agree. Rows: images/s, step ms, peak memory; plus the harness with ``mgll`` on two text
   levels, with ``model.precision=fp16``, and with ``model.compile=true`` (compile time reported apart;
   skipped when the time budget is spent or with ``--no-compile``);
4. **objectives**: ``clip`` and ``mgll`` (two levels) against open_clip's ``ClipLoss`` on the GPU, fp32, D = 512,
   B = 2048 and 8192, repeated and distinct texts (``bench.perf.measure_objectives``: ratio per interleaved
   round, median [min-max]), and the number of device operations (kernels) per call of each;
5. **nccl**: with two or more GPUs, a two-process cell (``launcher.name=local launcher.tasks_per_node=2``) on
   NCCL: ``done``, ``world_size`` 2.

Without CUDA it prints that it skipped and exits 0. ``--device cpu --tiny`` runs the same script with a tiny
open_clip config on the CPU (the sync part on the meta stand-in): how CI checks the script itself. Exit status 0
when every part that ran passed, 1 otherwise. (One module on purpose, a little over 400 lines: it is the script a
session with a GPU runs in one call, and its parts share the model and batch builders.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch

MODEL = "ViT-B-16"
TINY_IMAGE = {"width": 64, "layers": 2, "head_width": 32, "patch_size": 16, "embed_dim": 32}
TINY_TEXT = {"width": 64, "heads": 2, "layers": 2, "embed_dim": 32}
SMOKE = {
    "data": {"format": "fundus_synth", "size": 320, "test_size": 64, "val_fraction": 0.2, "resolution": 64},
    "image": {"name": "vit_tiny_custom"}, "text": {"name": "tiny_transformer"},
    "objective": {"name": "mgll"}, "train": {"epochs": 1, "batch_size": 64, "log_every": 2},
    "tasks": [{"name": "linear_probe", "target": "disease_multilabel", "c_grid": [1.0]}],
}
SYNC_OBJECTIVES = [("clip", {}), ("siglip", {}), ("clip_multipositive", {}), ("soft_clip", {}), ("mgll", {}),
                   ("mgll", {"chunk_size": 64}), ("mgll", {"target": "jaccard"}), ("medclip", {}),
                   ("mgll_released", {}), ("mgll", {"impl": "reference"})]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak_reset(dev: torch.device) -> None:
    if dev.type == "cuda":
        _sync(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_mib(dev: torch.device) -> float:
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else float("nan")


# ---------------------------------------------------------------------------------------------------------
# the parts
# ---------------------------------------------------------------------------------------------------------
def part_smoke(args, dev: torch.device, tmp: Path) -> dict:
    from bench import store
    from bench.cell import execute
    from bench.config import merge

    cfg = merge(SMOKE, {"train": {"device": str(dev)}, "seed": 0})
    t0 = time.perf_counter()
    state = execute(cfg, tmp / "smoke")
    out = {"state": state, "wall_s": time.perf_counter() - t0, "ok": state == store.DONE}
    if state == store.DONE:
        m = store.read_json(tmp / "smoke" / "metrics.json")
        out.update({k: m.get(k) for k in ("train/images_per_s", "train/objective_forward_s_per_step", "peak_memory_mb",
                                           "peak_memory_source", "linear_probe/disease_multilabel/auc")})
    else:
        out["error"] = store.read_json(tmp / "smoke" / "error.json").get("message")
    return out


def _model(args, dev: torch.device, objective: str = "clip", **model_over):
    """(cfg, TwoTower on ``dev``, objective) for the throughput model (open_clip towers, random init)."""
    from bench.cell import build_objective
    from bench.config import merge
    from bench.models import build_model

    image = {"name": "open_clip", "model": args.model, **({"model_cfg": TINY_IMAGE} if args.tiny else {})}
    text = {"name": "open_clip", "model": args.model, "context_length": 77,
            **({"model_cfg": TINY_TEXT} if args.tiny else {})}
    cfg = merge({"image": image, "text": text, "data": {"resolution": args.resolution},
                 "model": {"embed_dim": 512 if not args.tiny else 32, **model_over},
                 "objective": {"name": objective, **({"levels": ["a", "b"]} if objective == "mgll" else {})},
                 "train": {"device": str(dev)}})
    obj = build_objective(cfg)
    torch.manual_seed(0)
    return cfg, build_model(cfg, obj).to(dev), obj


def _batches(args, dev: torch.device, levels: tuple[str, ...], n: int = 4) -> list[tuple]:
    """``n`` device-resident batches: normalised pixels, token ids (EOT last), host labels."""
    g = torch.Generator().manual_seed(0)
    b, r = args.batch_size, args.resolution
    out = []
    for _ in range(n):
        pixels = torch.randn(b, 3, r, r, generator=g).to(dev)
        tokens = {}
        for lv in levels:
            t = torch.randint(1, 49406, (b, 77), generator=g)
            t[:, -1] = 49407
            tokens[lv] = t.to(dev)
        labels = {lv: torch.randint(0, max(2, b // 8), (b,), generator=g) for lv in levels}
        out.append((pixels, tokens, labels))
    return out


def _stepper(cfg, model, obj, dev):
    from bench.train import make_schedule
    from bench.train_step import TrainStep, make_optimizer

    opt = make_optimizer(model, cfg.train)
    return TrainStep(model, model, obj, opt, make_schedule(opt, 1, 10_000), grad_clip=float(cfg.train.grad_clip),
                     device=dev)


def _time_harness(args, dev, objective="clip", **model_over) -> dict:
    cfg, model, obj = _model(args, dev, objective, **model_over)
    levels = ("a", "b") if objective == "mgll" else ("a",)
    data = _batches(args, dev, levels)
    step = _stepper(cfg, model, obj, dev)
    model.train()
    _peak_reset(dev)
    t0 = time.perf_counter()
    for i in range(args.warmup):
        step(*data[i % len(data)])
    _sync(dev)
    warm = time.perf_counter() - t0
    times = []
    for i in range(args.steps):
        t0 = time.perf_counter()
        step(*data[i % len(data)], timed=i == args.steps - 1)
        _sync(dev)  # per-step timing for the spread (a sync the training loop does not have)
        times.append(time.perf_counter() - t0)
    step.check(args.steps)
    med = statistics.median(times)
    return {"img_s": args.batch_size / med, "step_ms": med * 1e3, "step_ms_min": min(times) * 1e3,
            "peak_mib": _peak_mib(dev), "warmup_s": warm, "ok": True}


def _open_clip_twin(model, dev):
    """open_clip's ``CustomTextCLIP`` holding copies of the harness's towers (same weights)."""
    from open_clip.model import CustomTextCLIP

    if model.visual.proj is not None or model.text.proj is not None:
        raise ValueError("the harness towers carry an extra projection: not comparable with open_clip's model")
    clip = CustomTextCLIP.__new__(CustomTextCLIP)
    torch.nn.Module.__init__(clip)
    import copy

    clip.output_dict = True
    clip.visual = copy.deepcopy(model.visual.net)
    clip.text = copy.deepcopy(model.text.net)
    clip.context_length, clip.vocab_size = clip.text.context_length, clip.text.vocab_size
    clip.logit_scale = torch.nn.Parameter(model.log_logit_scale.detach().clone())
    clip.logit_bias = None
    return clip.to(dev)


def _open_clip_args(args, dev, n_steps: int):
    return SimpleNamespace(device=str(dev), precision="amp_bf16" if dev.type == "cuda" else "fp32", distill=False,
                           accum_freq=1, skip_scheduler=False, grad_clip_norm=10.0, horovod=False,
                           log_every_n_steps=10**9, batch_size=args.batch_size, world_size=1, rank=0, local_rank=0,
                           wandb=False)


def _loader(data, n_batches: int, b: int):
    class Loader:
        num_batches, num_samples = n_batches, n_batches * b

        def __iter__(self):
            for i in range(n_batches):
                pixels, tokens, _ = data[i % len(data)]
                yield pixels, tokens["a"]

    return {"train": SimpleNamespace(dataloader=Loader(), set_epoch=lambda e: None)}


def part_throughput(args, dev: torch.device, budget: Callable[[], float]) -> dict:
    from open_clip.loss import ClipLoss
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch

    rows: dict[str, Any] = {}
    # the same weights and batches for both loops: first-step losses must agree
    cfg, model, obj = _model(args, dev, "clip")
    clip = _open_clip_twin(model, dev)
    data = _batches(args, dev, ("a",))
    step = _stepper(cfg, model, obj, dev)
    ours = float(step(*data[0])["loss"].detach())
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        o = clip(data[0][0], data[0][1]["a"])
        theirs = float(ClipLoss()(o["image_features"], o["text_features"], o["logit_scale"]).detach())
    rows["first_step_loss"] = {"harness": ours, "open_clip": theirs, "ok": math.isclose(ours, theirs, rel_tol=2e-2)}
    del step, model

    # open_clip's loop: AdamW as its main.py builds it (no decay on gains, biases, logit scale)
    decay = [p for n, p in clip.named_parameters() if p.ndim >= 2 and "logit_scale" not in n]
    no_decay = [p for n, p in clip.named_parameters() if not (p.ndim >= 2 and "logit_scale" not in n)]
    opt = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.05}],
                            lr=float(cfg.train.lr), betas=(0.9, 0.98), eps=1e-6)
    sched = cosine_lr(opt, float(cfg.train.lr), 1, 10_000)
    oargs = _open_clip_args(args, dev, args.steps)
    _peak_reset(dev)
    train_one_epoch(clip, _loader(data, args.warmup, args.batch_size), ClipLoss(), 0, opt, None, sched, None, oargs)
    _sync(dev)
    t0 = time.perf_counter()
    train_one_epoch(clip, _loader(data, args.steps, args.batch_size), ClipLoss(), 1, opt, None, sched, None, oargs)
    _sync(dev)
    dt = (time.perf_counter() - t0) / args.steps
    ref_label = f"open_clip train_one_epoch ({oargs.precision})"
    rows[ref_label] = {"img_s": args.batch_size / dt, "step_ms": dt * 1e3,
                                                    "peak_mib": _peak_mib(dev), "ok": True}
    del clip, opt

    prec = "bf16" if dev.type == "cuda" else "fp32"  # model.precision=auto
    variants = [(f"harness clip ({prec})", "clip", {}), (f"harness mgll, 2 levels ({prec})", "mgll", {})]
    if dev.type == "cuda":
        variants.append(("harness clip (fp16 + scaler)", "clip", {"precision": "fp16"}))
    if not args.no_compile:
        variants.append((f"harness clip ({prec}, model.compile=true)", "clip", {"compile": True}))
    for label, objective, over in variants:
        if budget() < (90 if over.get("compile") else 20):
            rows[label] = {"ok": True, "skipped": "time budget spent"}
            continue
        try:
            rows[label] = _time_harness(args, dev, objective, **over)
        except Exception as e:  # noqa: BLE001 - reported, the other rows still run
            rows[label] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    ref = rows[ref_label]["img_s"]
    for label, r in rows.items():
        if "img_s" in r:
            r["x_open_clip"] = r["img_s"] / ref
    return rows


def part_sync(args, dev: torch.device) -> dict:
    import objectives
    from bench.syncguard import no_host_sync

    guard_dev = dev if dev.type == "cuda" else torch.device("meta")
    out: dict[str, Any] = {}
    b, d = 64, 32
    for name, opts in SYNC_OBJECTIVES:
        key = f"objective {name} {opts}" if opts else f"objective {name}"
        try:
            x = torch.randn(b, d, device=guard_dev, requires_grad=True)
            texts = {lv: torch.randn(b, d, device=guard_dev, requires_grad=True) for lv in ("a", "b")}
            labels = {lv: torch.randint(0, 6, (b,)) for lv in ("a", "b")}
            if name == "medclip" or opts.get("target") == "jaccard":
                labels = {lv: (torch.rand(b, 5) > 0.5).long() for lv in ("a", "b")}
            s = torch.full((), 10.0, device=guard_dev, requires_grad=True)
            obj = objectives.build(name, **opts)
            obj.check_finite = False
            bias = torch.full((), -1.0, device=guard_dev) if obj.needs_logit_bias else None
            if guard_dev.type == "cuda":  # lazy initialisations (library handles) happen once, outside the guard
                obj(x, texts, labels, s, bias)["loss"].backward()
                _sync(guard_dev)
            with no_host_sync(guard_dev):
                for _ in range(2):
                    obj(x, texts, labels, s, bias)["loss"].backward()
            out[key] = {"ok": True}
        except Exception as e:  # noqa: BLE001
            out[key] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    steps = [("train step (bf16)", {})] + ([("train step (fp16 + scaler)", {"precision": "fp16"})]
                                          if dev.type == "cuda" else [])
    for label, over in steps:
        try:
            cfg, model, obj = _model(args, dev, "mgll", **over)
            model.to(guard_dev)
            data = _batches(args, guard_dev if guard_dev.type == "cuda" else torch.device("cpu"), ("a", "b"), n=1)
            pixels, tokens, labels = data[0]
            if guard_dev.type == "meta":
                pixels, tokens = pixels.to(guard_dev), {k: v.to(guard_dev) for k, v in tokens.items()}
            step = _stepper(cfg, model, obj, guard_dev)
            if guard_dev.type == "cuda":
                step(pixels, tokens, labels)  # warm-up: lazy initialisations (cuBLAS handles, scaler state)
                _sync(guard_dev)
            with no_host_sync(guard_dev):
                for _ in range(3):
                    step(pixels, tokens, labels)
            out[label] = {"ok": True}
        except Exception as e:  # noqa: BLE001
            out[label] = {"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
    return out


def _ops_per_call(fn: Callable[[], None], dev: torch.device) -> int:
    """Operations on ``dev`` (on a GPU: kernel launches, roughly) dispatched by one call of ``fn``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    views = {"view", "slice", "select", "t", "transpose", "detach", "alias", "expand", "unsqueeze", "squeeze",
             "as_strided", "unbind", "split", "_reshape_alias", "empty", "empty_like", "lift_fresh"}

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
            if func.__name__.split(".")[0] not in views and any(t.device.type == dev.type for t in tensors):
                Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.n


def part_objectives(args, dev: torch.device) -> dict:
    from . import perf

    out: dict[str, Any] = {}
    sizes = (2048, 8192) if dev.type == "cuda" else (args.batch_size * 8,)
    for b in sizes:
        times, labels = perf.measure_objectives(b, 512, str(dev), 20 if dev.type == "cuda" else 2,
                                                rows=[perf.CLIP_ROW, perf.MGLL_ROW])
        ref = (perf.REFERENCE, "repeated")
        for lab in [perf.REFERENCE] + labels:
            row: dict[str, Any] = {"ok": True}
            for t in perf.TEXTS:
                if (lab, t) in times:
                    rs = perf.ratios(times, (lab, t), ref)
                    row[f"{t} ms"] = statistics.median(times[(lab, t)]) * 1e3
                    row[f"{t} x ClipLoss"] = f"{statistics.median(rs):.2f} [{min(rs):.2f}-{max(rs):.2f}]"
            row["ops/call"] = _ops_per_call(perf.step_fn(lab, perf.make_inputs(b, 512, str(dev))), dev)
            out[f"B={b} {lab}"] = row
    return out


def part_nccl(args, tmp: Path) -> dict:
    import yaml

    from bench import store
    from bench.run import main as run_main

    grid = tmp / "nccl.yaml"
    grid.write_text(yaml.safe_dump({"name": "nccl", "fixed": {**SMOKE, "train": {**SMOKE["train"], "device": "cuda"}}}))
    t0 = time.perf_counter()
    rc = run_main([f"grid={grid}", f"results_dir={tmp / 'nccl'}", "launcher.name=local", "launcher.tasks_per_node=2",
                   "launcher.gpus=2", "launcher.poll_s=0.5", "preflight=false"])
    cells = [p for p in (tmp / "nccl" / "nccl").iterdir() if p.is_dir() and not p.name.startswith(".")]
    done = [p for p in cells if (p / "done").exists()]
    out = {"rc": rc, "wall_s": time.perf_counter() - t0, "ok": rc == 0 and len(done) == 1}
    if done:
        m = store.read_json(done[0] / "metrics.json")
        out.update(world_size=m.get("world_size"), images_per_s=m.get("train/images_per_s"))
        out["ok"] = out["ok"] and m.get("world_size") == 2
    return out


# ---------------------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def report(results: dict) -> str:
    lines = []
    for part, res in results.items():
        lines.append(f"\n## {part}\n")
        if isinstance(res, dict) and res and all(isinstance(v, dict) for v in res.values()):
            keys = sorted({k for v in res.values() for k in v}, key=lambda k: (k != "ok", k))
            lines.append("| check | " + " | ".join(keys) + " |")
            lines.append("| --- " * (len(keys) + 1) + "|")
            for name, v in res.items():
                lines.append(f"| {name} | " + " | ".join(_fmt(v.get(k, "")) for k in keys) + " |")
        else:
            for k, v in (res.items() if isinstance(res, dict) else [("result", res)]):
                lines.append(f"- {k}: {_fmt(v)}")
    return "\n".join(lines)


def _passed(res: Any) -> bool:
    if isinstance(res, dict):
        if "ok" in res and not isinstance(res["ok"], dict):
            return bool(res["ok"]) and all(_passed(v) for k, v in res.items() if isinstance(v, dict))
        return all(_passed(v) for v in res.values())
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf gpu", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run of the script, with --tiny)")
    p.add_argument("--model", default=MODEL, help=f"open_clip model config of the throughput towers (default {MODEL})")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="timed steps per throughput row")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=270.0, help="stop adding optional rows after this many seconds")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    p.add_argument("--tiny", action="store_true", help="a tiny open_clip config (for --device cpu)")
    p.add_argument("--parts", default="smoke,sync,throughput,objectives,nccl",
                   help="comma-separated subset of the parts")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: the GPU check is skipped (use --device cpu --tiny for a dry run of the script)")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()

    def budget() -> float:
        return args.budget_s - (time.perf_counter() - start)

    parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    env = {"torch": torch.__version__, "device": str(dev), "model": args.model, "batch_size": args.batch_size,
           "resolution": args.resolution}
    if dev.type == "cuda":
        env.update(name=torch.cuda.get_device_name(dev), gpus=torch.cuda.device_count(),
                   bf16=torch.cuda.is_bf16_supported(), capability=".".join(map(str, torch.cuda.get_device_capability(dev))))
    results: dict[str, Any] = {"environment": env}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp_s:
        tmp = Path(tmp_s)
        os.environ.setdefault("CONTRASTIVE_BENCH_CACHE", str(tmp / "cache"))
        for part, fn in (("smoke", lambda: part_smoke(args, dev, tmp)), ("sync", lambda: part_sync(args, dev)),
                         ("throughput", lambda: part_throughput(args, dev, budget)),
                         ("objectives", lambda: part_objectives(args, dev)), ("nccl", lambda: part_nccl(args, tmp))):
            if part not in parts:
                continue
            if part == "nccl" and (dev.type != "cuda" or torch.cuda.device_count() < 2):
                results[part] = {"ok": True, "skipped": "needs two GPUs"}
                continue
            t0 = time.perf_counter()
            print(f"[{time.perf_counter() - start:6.1f}s] {part} ...", file=sys.stderr, flush=True)
            try:
                results[part] = fn()
            except Exception as e:  # noqa: BLE001 - a failed part is reported, the next one runs
                results[part] = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            seconds[part] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - start
    results["seconds"] = seconds
    passed = all(_passed(v) for k, v in results.items() if k not in ("environment", "seconds"))
    print(f"# GPU check: {'PASSED' if passed else 'FAILED'} in {seconds['total']:.0f}s")
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
