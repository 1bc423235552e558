"""Full fine-tuning: the image tower plus a linear head, trained on a copy (the caller's model is never
modified), as in the MGLL downstream code (paper.md section 2.6):

- features: ``model.visual(model.preprocess(images))``, the projected pooled image embedding *before* any
  L2 normalisation (MGLL's ``Linear(768, num_classes)`` on the pooled projection); a model without
  ``visual`` is fine-tuned through ``encode_image`` on a copy of the whole model instead;
- loss: cross-entropy (multi-class, probabilities = softmax) or BCE-with-logits (multi-label, sigmoid);
- AdamW (betas 0.9, 0.95, as MGLL) on every tower and head parameter (whatever the tower's ``freeze``
  setting during pretraining: this is full fine-tuning), per-step schedule: linear warm-up over
  ``warmup_epochs`` then cosine decay to 0; gradient-norm clipping at ``clip_grad`` (0 = off);
- forward passes under the model's own ``autocast()`` (bf16 on CUDA for ``precision=auto``; a GradScaler
  when the model says ``needs_grad_scaler``), losses in fp32;
- augmentation, ``augment=``: ``flip`` (default; ``true``): random horizontal and vertical flips of the
  normalised pixels; ``none`` (``false``); ``mgll``: the MGLL downstream transform
  (``bench.data.transforms`` preset ``mgll_finetune``: flips, rotation 30 degrees, colour jitter 0.6,
  RandomResizedCrop 0.9-1.0 bicubic, drawn per (seed, epoch, sample) in the loader's workers) with
  mean = std = 0.5 normalisation; val and test then use MGLL's eval transform too (preset
  ``mgll_finetune_eval``: resize bicubic, mean = std = 0.5; with the other values, the encoder's own
  resize and statistics);
- model selection: after every epoch, accuracy on val (the metric ``acc`` of :mod:`tasks.metrics`); the
  epoch with the best val accuracy (ties -> the earliest) is restored, then one pass on test.

Runs inside ``torch.random.fork_rng`` seeded by ``seed``: deterministic, and the caller's global RNG state
is left as it was.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .base import Metrics, Task
from .encode import autocast, batches, image_batches, load_batch, model_device, preprocess_images
from .metrics import classification_metrics
from .finetune_presets import PRESETS, preset_options
from .options import check_bool, check_choice, check_float, check_int, check_str
from .registry import register
from .sampling import label_fraction_indices

log = logging.getLogger(__name__)

#: the ``augment`` choices (``true`` / ``false`` = ``flip`` / ``none``)
AUGMENT = ("flip", "none", "mgll")
HALF = (0.5, 0.5, 0.5)  # MGLL's downstream normalisation (mean = std = 0.5)


class _Encoder(nn.Module):
    """The trainable part: ``model.visual`` (or the whole model's ``encode_image`` if it has no ``visual``)."""

    def __init__(self, model: Any):
        super().__init__()
        if isinstance(getattr(model, "visual", None), nn.Module):
            self.net = copy.deepcopy(model.visual)
            self.via_encode_image = False
        elif isinstance(model, nn.Module):
            self.net = copy.deepcopy(model)
            self.via_encode_image = True
        else:
            raise TypeError(f"finetune needs model.visual (an nn.Module) or an nn.Module model; got {type(model).__name__}")

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.encode_image(pixels) if self.via_encode_image else self.net(pixels)


@register("finetune")
class Finetune(Task):
    """Image tower + linear head on a copy of the model; best val accuracy epoch, then one test pass."""

    @dataclass
    class Options:
        target: str
        """Downstream task name in the datasets' ``task_specs``."""
        preset: str = "cpu"
        """cpu (a CPU-sized schedule) or paper (the MGLL protocol); other options given override it
        (:mod:`tasks.finetune_presets`)."""
        epochs: int = 3
        """Training epochs."""
        lr: float = 1e-4
        """Peak learning rate (AdamW, betas 0.9/0.95)."""
        batch_size: int = 32
        """Training and evaluation batch."""
        weight_decay: float = 1e-3
        """AdamW weight decay (MGLL's value)."""
        warmup_epochs: float = 0.0
        """Linear warm-up length in epochs (may be fractional), then per-step cosine decay to 0."""
        clip_grad: float = 10.0
        """Gradient-norm clip (0 = off)."""
        augment: Any = "flip"
        """flip (true): random horizontal and vertical flips; none (false); mgll: the MGLL downstream transform
        (flips, rotation 30, colour jitter 0.6, RandomResizedCrop 0.9-1 bicubic; mean = std = 0.5)."""
        label_fraction: float = 1.0
        """Fraction of the train split used, in (0, 1]; stratified, deterministic given ``seed``."""
        seed: int = 0
        """Seed of the subsample, the head's init, the batch order and the flips."""
        ci: bool = False
        """Add bootstrap 95 % intervals to the test metrics."""
        n_boot: int = 1000
        """Bootstrap resamples (with ``ci``)."""

    def __init__(self, **options: Any):
        super().__init__(**preset_options(options))

    def validate(self) -> None:
        o, t = self.options, self.name
        o.target = check_str(t, "target", o.target)
        o.preset = check_choice(t, "preset", o.preset, sorted(PRESETS))
        o.epochs = check_int(t, "epochs", o.epochs, minimum=1)
        o.lr = check_float(t, "lr", o.lr, low=0.0, low_open=True)
        o.batch_size = check_int(t, "batch_size", o.batch_size, minimum=1)
        o.weight_decay = check_float(t, "weight_decay", o.weight_decay, low=0.0)
        o.warmup_epochs = check_float(t, "warmup_epochs", o.warmup_epochs, low=0.0, high=float(o.epochs))
        o.clip_grad = check_float(t, "clip_grad", o.clip_grad, low=0.0)
        o.augment = {True: "flip", False: "none"}.get(o.augment, o.augment) if isinstance(o.augment, bool) else o.augment
        o.augment = check_choice(t, "augment", o.augment, AUGMENT)
        o.label_fraction = check_float(t, "label_fraction", o.label_fraction, low=0.0, high=1.0, low_open=True)
        o.seed = check_int(t, "seed", o.seed)
        o.ci = check_bool(t, "ci", o.ci)
        o.n_boot = check_int(t, "n_boot", o.n_boot, minimum=1)

    def run(self, model: Any, splits: Mapping[str, Any], cache: Any = None) -> Metrics:
        o = self.options
        train, val, test = self.require_splits(splits, "train", "val", "test")
        spec = self.target_spec(train, o.target)
        for name, ds in (("val", val), ("test", test)):
            if self.target_spec(ds, o.target) != spec:
                raise ValueError(f"task {self.name!r}: split {name!r} declares {o.target!r} differently from train")
        kind, n_out = spec.kind, len(spec.classes)
        sub = label_fraction_indices(train.task_targets(o.target), kind, o.label_fraction, o.seed)
        train_ds = train.subset(sub) if len(sub) < len(train) else train
        y_train, y_val, y_test = (d.task_targets(o.target) for d in (train_ds, val, test))
        device = model_device(model)

        fork_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(o.seed)
            encoder = _Encoder(model).to(device)
            dim = self._feature_dim(model, encoder, train_ds)
            head = nn.Linear(dim, n_out).to(device)
            params = [p for p in encoder.parameters()] + list(head.parameters())
            for p in params:
                p.requires_grad_(True)
            opt = torch.optim.AdamW(params, lr=o.lr, betas=(0.9, 0.95), weight_decay=o.weight_decay)
            scaler = torch.amp.GradScaler(device.type) if getattr(model, "needs_grad_scaler", False) is True else None
            steps_per_epoch = len(_train_batches(len(train_ds), o.batch_size))
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, _warmup_cosine(int(round(o.warmup_epochs * steps_per_epoch)), o.epochs * steps_per_epoch)
            )
            history: list[float] = []
            best_epoch, best_acc, best_state, last_loss = 0, -math.inf, None, float("nan")
            for epoch in range(1, o.epochs + 1):
                last_loss = self._train_epoch(model, encoder, head, train_ds, y_train, kind, opt, sched, epoch, scaler)
                acc = self._selection_score(y_val, self._predict(model, encoder, head, val, kind), kind)
                history.append(acc)
                log.info("finetune %s epoch %d/%d: train loss %.4f, val acc %.4f", o.target, epoch, o.epochs, last_loss, acc)
                if acc > best_acc or best_state is None:
                    best_epoch, best_acc = epoch, acc
                    best_state = _snapshot(encoder, head)
            _restore(encoder, head, best_state)
            scores = self._predict(model, encoder, head, test, kind)

        out: Metrics = dict(classification_metrics(y_test, scores, kind, ci=o.ci, n_boot=o.n_boot, seed=o.seed))
        self.record_predictions(y_test, scores, kind)
        out.update(
            best_epoch=int(best_epoch),
            val_acc=float(best_acc),
            val_acc_per_epoch=",".join(f"{a:.6g}" for a in history),
            train_loss=float(last_loss),
            epochs=int(o.epochs),
            preset=o.preset,
            lr=float(o.lr),
            label_fraction=float(o.label_fraction),
            seed=int(o.seed),
            n_train=int(len(train_ds)),
            n_train_total=int(len(train)),
            n_val=int(len(val)),
            n_test=int(len(test)),
            features_cached=0,
        )
        return out

    # -- pieces (methods so tests can observe them) ---------------------------------------------------------
    @staticmethod
    def _feature_dim(model: Any, encoder: _Encoder, dataset: Any) -> int:
        """The encoder's output size, from one image (``embed_dim`` may not be what ``visual`` returns)."""
        was = encoder.training
        encoder.eval()
        with torch.no_grad():
            z = encoder(preprocess_images(model, load_batch(dataset, [0])))  # the size is all that is read
        encoder.train(was)
        return int(z.shape[-1])

    def _train_epoch(self, model, encoder, head, dataset, targets, kind, opt, sched, epoch: int, scaler=None) -> float:
        o = self.options
        encoder.train()
        head.train()
        order = np.random.default_rng([o.seed, epoch]).permutation(len(dataset))
        total, count = 0.0, 0
        bar = tqdm(total=len(dataset), desc=f"finetune epoch {epoch}", unit="img", disable=None, leave=False)
        for rows, pixels in self._train_pixels(model, dataset, order, epoch):
            with autocast(model):
                logits = head(encoder(pixels))
            logits = logits.float()  # losses in fp32
            y = torch.as_tensor(targets[rows], device=logits.device)
            if kind == "multiclass":
                loss = F.cross_entropy(logits, y.long())
            else:
                loss = F.binary_cross_entropy_with_logits(logits, y.float())
            opt.zero_grad(set_to_none=True)
            params = [p for g in opt.param_groups for p in g["params"]]
            if scaler is not None:  # fp16 autocast: scaled backward, unscale before clipping
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                if o.clip_grad > 0:
                    nn.utils.clip_grad_norm_(params, o.clip_grad)
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                if o.clip_grad > 0:
                    nn.utils.clip_grad_norm_(params, o.clip_grad)
                opt.step()
            sched.step()
            total += float(loss.detach()) * len(rows)
            count += len(rows)
            bar.update(len(rows))
        bar.close()
        return total / max(count, 1)

    def _train_pixels(self, model, dataset, order: np.ndarray, epoch: int):
        """``(rows, pixels)`` of one epoch's batches, augmented as ``augment`` says."""
        o = self.options
        blocks = _train_batches(len(order), o.batch_size)
        if o.augment == "mgll":
            from bench.data.loader import epoch_batches

            device = model_device(model)
            for idx, x in epoch_batches(dataset, int(model.resolution), order, blocks, "mgll_finetune", o.seed,
                                        epoch, device=device):
                yield idx.numpy(), _normalize(x, device, HALF, HALF)
            return
        for idx in blocks:
            rows = order[idx]
            with torch.no_grad():
                pixels = preprocess_images(model, load_batch(dataset, rows))
                if o.augment == "flip":
                    pixels = _random_flips(pixels)
            yield rows, pixels

    def _eval_pixels(self, model, dataset):
        """Pixels of every sample in order (mean = std = 0.5 with ``augment=mgll``, else the model's)."""
        if self.options.augment != "mgll":
            for _, pixels in image_batches(model, dataset, self.options.batch_size):
                yield pixels
            return
        from bench.data.loader import eval_batches

        device = model_device(model)
        for _, x in eval_batches(dataset, int(model.resolution), self.options.batch_size, device=device,
                                 preset="mgll_finetune_eval"):  # MGLL's val/test: Resize bicubic, mean = std = 0.5
            yield _normalize(x, device, HALF, HALF)

    def _predict(self, model, encoder, head, dataset, kind) -> np.ndarray:
        """Probabilities ``[N, C]`` (softmax or sigmoid) in eval mode, no gradients."""
        encoder.eval()
        head.eval()
        out = []
        with torch.no_grad():
            for pixels in self._eval_pixels(model, dataset):
                with autocast(model):
                    logits = head(encoder(pixels))
                logits = logits.float()
                p = logits.softmax(-1) if kind == "multiclass" else logits.sigmoid()
                out.append(p.cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    @staticmethod
    def _selection_score(y_val: np.ndarray, scores: np.ndarray, kind: str) -> float:
        """Val accuracy (top-1 micro for multi-class, macro at 0.5 for multi-label)."""
        return float(classification_metrics(y_val, scores, kind)["acc"])


def _train_batches(n: int, batch_size: int) -> list[np.ndarray]:
    """Index blocks of ``batch_size``; a trailing block of one sample joins the previous block (a batch of
    one breaks BatchNorm in train mode)."""
    blocks = list(batches(n, batch_size))
    if len(blocks) > 1 and len(blocks[-1]) == 1:
        last = blocks.pop()
        blocks[-1] = np.concatenate([blocks[-1], last])
    return blocks


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _normalize(x: torch.Tensor, device: torch.device, mean, std) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, H, W]`` on ``device``, ``(x / 255 - mean) / std``."""
    x = x.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return x.sub_(m).div_(s).contiguous()


def _random_flips(pixels: torch.Tensor) -> torch.Tensor:
    """Flip each image horizontally and vertically with probability 1/2 each (global torch RNG)."""
    b = pixels.shape[0]
    h = (torch.rand(b) < 0.5).to(pixels.device).view(b, 1, 1, 1)
    v = (torch.rand(b) < 0.5).to(pixels.device).view(b, 1, 1, 1)
    pixels = torch.where(h, pixels.flip(-1), pixels)
    return torch.where(v, pixels.flip(-2), pixels)


def _snapshot(encoder: nn.Module, head: nn.Module) -> tuple[dict, dict]:
    return (
        {k: v.detach().clone() for k, v in encoder.state_dict().items()},
        {k: v.detach().clone() for k, v in head.state_dict().items()},
    )


def _restore(encoder: nn.Module, head: nn.Module, state: tuple[dict, dict] | None) -> None:
    if state is not None:
        encoder.load_state_dict(state[0])
        head.load_state_dict(state[1])
