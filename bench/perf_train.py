"""Training-step throughput: the harness's step against a bare PyTorch loop over the same tensors.

``python -m bench.perf_train`` (to be hooked as ``python -m bench.perf train``) measures, for each model
configuration, in one process:

- **harness**: a full training step exactly as ``bench/train.py`` runs it: batch indices from a seeded
  permutation, uint8 images gathered and randomly flipped, ``model.preprocess``, the token table indexed per
  level, labels on the host, then ``bench.train_step.TrainStep`` (``model(...)`` under ``model.autocast()``,
  the objective ``objectives.build("clip")``, per-group gradient norms and finiteness flags, clipping at 10,
  fused AdamW on CUDA with weight-decay groups, the per-step LR schedule, the logit-scale clamp) and the
  metric logging with its finiteness check;
- **bare**: a hand-written loop over the *same* model modules and pre-built batches (pixels already
  normalised, token ids already gathered): towers, L2 normalisation, symmetric InfoNCE, AdamW, clipping;
- **batching**: the harness's data batching alone (gather, flip, preprocess, token and label indexing).

Steps of the harness and of the bare loop are interleaved (one of each per round, order alternating) so that a machine
whose load varies affects both alike. Throughput is the batch size over the median step time; the overhead is
the median over rounds of (harness step time / bare step time), which cancels slow drifts of the machine's
load. Every step time is kept in ``--json``. Goals: harness overhead <= 5 % over the bare loop; batching
>= 3x faster than a model step.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

#: name -> (run-config overrides, resolution, default batch size)
CONFIGS: dict[str, tuple[list[str], int, int]] = {
    "tiny_vit_64": (["image.name=vit_tiny_custom"], 64, 128),
    "resnet18_64": (["image.name=resnet18"], 64, 128),
    "open_clip_vit_b32_224": (
        ["image.name=open_clip", "image.model=ViT-B-32", "text.name=open_clip", "text.model=ViT-B-32",
         "model.embed_dim=512"],
        224,
        4,
    ),
}

CAPTIONS = [
    "a fundus photograph with no diabetic retinopathy",
    "a fundus photograph with mild non-proliferative diabetic retinopathy",
    "a fundus photograph with moderate non-proliferative diabetic retinopathy",
    "a fundus photograph with severe non-proliferative diabetic retinopathy",
    "a fundus photograph with proliferative diabetic retinopathy",
    "a fundus photograph showing glaucoma",
    "a fundus photograph showing age-related macular degeneration",
    "a fundus photograph showing a cataract",
]


@dataclass
class Result:
    name: str
    batch_size: int
    resolution: int
    steps: int
    objective: str
    harness_img_s: float = float("nan")
    bare_img_s: float = float("nan")
    batching_img_s: float = float("nan")
    overhead_pct: float = float("nan")
    batching_vs_model: float = float("nan")
    best_harness_img_s: float = float("nan")
    best_bare_img_s: float = float("nan")
    harness_step_s: list[float] = field(default_factory=list)
    bare_step_s: list[float] = field(default_factory=list)
    batching_s: list[float] = field(default_factory=list)

    @property
    def overhead_ok(self) -> bool:
        return self.overhead_pct <= 5.0

    @property
    def batching_ok(self) -> bool:
        return self.batching_vs_model >= 3.0


def synthetic_dataset(n: int, resolution: int, seed: int = 0):
    """``n`` random uint8 images at ``resolution`` with one caption level (8 distinct captions)."""
    from .data.dataset import MultiGranularDataset
    from .data.sample import Sample

    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        k = int(rng.integers(len(CAPTIONS)))
        img = rng.integers(0, 256, size=(resolution, resolution, 3), dtype=np.uint8)
        samples.append(Sample(id=f"s{i}", image=img, texts={"caption": CAPTIONS[k]}, labels={"caption": (f"c{k}",)},
                              split="train"))
    return MultiGranularDataset(samples, ["caption"], name="perf_synth")


def build_objective() -> tuple[torch.nn.Module, str]:
    """``objectives.build("clip")``, or open_clip's ``ClipLoss`` behind the same call signature."""
    try:
        import objectives

        return objectives.build("clip"), "objectives.build('clip')"
    except Exception as e:  # the objectives package is written concurrently
        log.warning("objectives.build('clip') unavailable (%s: %s); falling back to open_clip.loss.ClipLoss", type(e).__name__, e)
        from open_clip.loss import ClipLoss

        class _Fallback(torch.nn.Module):
            wants_multi_hot = False

            def __init__(self):
                super().__init__()
                self.loss = ClipLoss()

            def levels_used(self, levels):
                return list(levels)[:1]

            def forward(self, image, texts, labels, scale, bias=None):
                (level,) = list(texts)
                return {"loss": self.loss(image.float(), texts[level].float(), scale)}

        return _Fallback(), "open_clip.loss.ClipLoss (fallback)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, steps: int = 3, batch_size: int | None = None, device: str = "cpu",
            seed: int = 0) -> Result:
    """Time harness, bare loop and batching for the configuration ``name`` (see ``CONFIGS``)."""
    from .config import merge, parse_overrides
    from .models import build_model
    from .train import load_images, make_optimizer, make_schedule, prepare_levels
    from .train_step import TrainStep

    overrides, resolution, default_bs = CONFIGS[name]
    bs = int(batch_size or default_bs)
    dev = torch.device(device)
    cfg = merge(parse_overrides(overrides + [f"data.resolution={resolution}", f"train.batch_size={bs}"]))
    objective, objective_name = build_objective()
    torch.manual_seed(seed)
    model = build_model(cfg, objective).to(dev)
    objective.to(dev)
    tcfg = cfg.train

    n_batches = max(4, steps)
    data = synthetic_dataset(bs * n_batches, resolution, seed)
    levels = list(objective.levels_used(list(data.levels)))
    batching = prepare_levels(model, data, levels, bool(getattr(objective, "wants_multi_hot", False)))
    images = load_images(data)
    n = len(data)
    steps_per_epoch = n // bs

    # -- the harness step (bench/train.py's loop body, plus the autocast the lead wires in) ---------------
    optimizer = make_optimizer(model, tcfg)
    scheduler = make_schedule(optimizer, 1, 10_000)
    history: list[dict] = []
    state: dict[str, float] = {"step": 0}
    log_every = max(1, int(tcfg.log_every))

    def batch_of(step: int):
        epoch, b = divmod(step, steps_per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000003 + epoch))
        idx = order[b * bs : (b + 1) * bs]
        x = images[idx]
        if tcfg.augment:
            flip = torch.rand(len(idx)) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(2), x)
        pixels = model.preprocess(x)
        tokens = {g: batching[g].batch_tokens(idx).to(dev, non_blocking=True) for g in levels}
        labels = {g: batching[g].labels[idx] for g in levels}  # on the host, as bench/train.py hands them over
        return pixels, tokens, labels

    stepper = TrainStep(model, model, objective, optimizer, scheduler, grad_clip=float(tcfg.grad_clip or 0.0),
                        device=dev)

    def harness_step() -> None:
        step = int(state["step"])
        pixels, tokens, labels = batch_of(step)
        log_now = (step + 1) % log_every == 0 or ((step + 1) % steps_per_epoch) == 0
        out = stepper(pixels, tokens, labels, timed=log_now)
        state["step"] = step = step + 1
        if log_now:
            stepper.check(step)
            last = {k: float(v.detach()) for k, v in out.items() if torch.is_tensor(v) and v.numel() == 1}
            history.append({"step": step, "lr": scheduler.get_last_lr()[0],
                            "logit_scale": float(model.logit_scale().detach()), **last})

    # -- the bare loop: same modules, pre-built batches -------------------------------------------------
    prebuilt = []
    for s in range(n_batches):
        pixels, tokens, _ = batch_of(s)
        prebuilt.append((pixels.detach().clone(), tokens[levels[0]].clone()))
    bare_opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=float(tcfg.lr),
                                 betas=tuple(float(b) for b in tcfg.betas), weight_decay=float(tcfg.weight_decay))
    bare_state = {"step": 0}
    target = torch.arange(bs, device=dev)

    def bare_step() -> None:
        pixels, tokens = prebuilt[bare_state["step"] % n_batches]
        with model.autocast():
            img = F.normalize(model.visual(pixels), dim=-1)
            txt = F.normalize(model.text(tokens), dim=-1)
        logits = model.logit_scale() * img.float() @ txt.float().t()
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
        bare_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(tcfg.grad_clip))
        bare_opt.step()
        bare_state["step"] += 1

    def timed(fn: Callable[[], None]) -> float:
        _sync(dev)
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        return time.perf_counter() - t0

    model.train()
    harness_step()  # warm-up (allocations, lazy init)
    bare_step()
    h_times, b_times = [], []
    for r in range(int(steps)):  # interleaved, order alternating, so both loops see the same machine load
        if r % 2 == 0:
            h_times.append(timed(harness_step))
            b_times.append(timed(bare_step))
        else:
            b_times.append(timed(bare_step))
            h_times.append(timed(harness_step))

    # -- batching alone ---------------------------------------------------------------------------------
    n_batch_runs = max(5, 2 * steps)
    batch_times = []
    for s in range(n_batch_runs):
        batch_times.append(timed(lambda s=s: batch_of(s)))

    res = Result(name, bs, resolution, len(h_times), objective_name, harness_step_s=h_times, bare_step_s=b_times,
                 batching_s=batch_times)
    # medians; the overhead is the median of the per-round ratios harness/bare (adjacent steps share the load)
    h, b, d = statistics.median(h_times), statistics.median(b_times), statistics.median(batch_times)
    res.harness_img_s, res.bare_img_s, res.batching_img_s = bs / h, bs / b, bs / d
    res.overhead_pct = 100.0 * (statistics.median(x / y for x, y in zip(h_times, b_times)) - 1.0)
    res.batching_vs_model = h / d
    res.best_harness_img_s, res.best_bare_img_s = bs / min(h_times), bs / min(b_times)
    prebuilt.clear()  # the batches go now; the model and the optimisers go with this frame
    return res


def format_table(results: list[Result]) -> str:
    head = ("| model | batch | px | steps | harness img/s | bare img/s | overhead | best harness / bare img/s | "
            "batching img/s | batching / step |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for r in results:
        rows.append(
            f"| {r.name} | {r.batch_size} | {r.resolution} | {r.steps} | {r.harness_img_s:.2f} | {r.bare_img_s:.2f} | "
            f"{r.overhead_pct:+.1f} % {'ok' if r.overhead_ok else 'OVER 5 %'} | "
            f"{r.best_harness_img_s:.2f} / {r.best_bare_img_s:.2f} | "
            f"{r.batching_img_s:.0f} | {r.batching_vs_model:.0f}x {'ok' if r.batching_ok else 'UNDER 3x'} |"
        )
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bench.perf_train [--models ...] [--steps N] [--json PATH]``; exit status 0
    when every goal is met, 1 otherwise."""
    p = argparse.ArgumentParser(prog="python -m bench.perf_train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(CONFIGS), help=f"comma-separated subset of {list(CONFIGS)}")
    p.add_argument("--steps", type=int, default=6, help="timed steps per loop and model (default 6)")
    p.add_argument("--batch-size", type=int, default=None, help="override every model's batch size")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    names = [s.strip() for s in args.models.split(",") if s.strip()]
    unknown = [s for s in names if s not in CONFIGS]
    if unknown:
        p.error(f"unknown model(s) {unknown}; known: {list(CONFIGS)}")
    results = []
    for name in names:
        t0 = time.perf_counter()
        res = measure(name, steps=args.steps, batch_size=args.batch_size, device=args.device)
        results.append(res)
        print(f"{name}: done in {time.perf_counter() - t0:.0f}s (objective: {res.objective})", file=sys.stderr, flush=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), "overhead_ok": r.overhead_ok, "batching_ok": r.batching_ok}
                                         for r in results], indent=2))
    return 0 if all(r.overhead_ok and r.batching_ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
