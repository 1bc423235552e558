"""One optimiser step of ``bench.train.pretrain``, with no host synchronisation outside logging intervals.

:class:`TrainStep` runs forward (under the model's autocast: bf16 by default on CUDA), the objective (in fp32),
backward (through a ``GradScaler`` when ``model.precision=fp16`` on CUDA), gradient norms per parameter group,
clipping, the optimiser and LR-schedule steps, and the in-place clamp of the logit scale
(``TwoTower.clamp_logit_scale_``, as open_clip does). Everything it does per step is queued on the device:

- finiteness: each step ORs "this loss term / this group's gradient norm is not finite" into small device
  tensors (with the step and the value where it first happened). :meth:`TrainStep.check` reads them (one
  synchronisation) and raises naming the first non-finite term (``sclip/disease``, ...:
  :class:`objectives.ObjectiveNumericsError`) or parameter group (``image tower``, ``text tower``,
  ``logit scale``, ``logit bias``: :class:`NonFiniteGradientError`). The training loop calls it at logging
  steps (the last step and every epoch end are logging steps) and before every checkpoint, so a checkpoint
  never carries NaN weights. Under ``fp16`` the scaler owns gradient overflow (it skips the step and lowers
  the scale), so gradient norms are not checked there; loss terms are. The objective's own per-call check
  (``objective.check_finite``, a synchronisation) is switched off while it trains here;
- timing: the objective's forward is timed only on the steps the caller marks (its logging steps), with CUDA
  events on a GPU (read at the next :meth:`objective_seconds`, i.e. after the logging step's own
  synchronisation) and ``time.perf_counter`` on the CPU, where the clock is the work;
- optimiser: AdamW is ``fused`` on CUDA, so even the fp16 scaler's inf-check stays on the device
  (``GradScaler.step`` otherwise reads ``found_inf`` on the host).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
from torch import Tensor

__all__ = ["NonFiniteGradientError", "TrainStep", "make_optimizer"]


class NonFiniteGradientError(FloatingPointError):
    """The gradient norm of a parameter group is NaN or infinite; ``group`` names it, ``step`` says when."""

    def __init__(self, group: str, step: int, value: float):
        self.group, self.step, self.value = group, step, value
        super().__init__(
            f"the gradient of the {group} is not finite (norm {value}) at step {step}: the loss or the logits "
            "overflowed (model.logit_scale_init / logit_scale_max too large? lr too high? model.precision=fp16 "
            "without loss scaling?); the cell stops here so that no checkpoint keeps these weights"
        )


def make_optimizer(model: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """AdamW, weight decay on >= 2-D parameters only (biases, norms and the logit scale/bias are not decayed);
    ``fused`` when every trainable parameter is on a CUDA device (no host synchronisation under the fp16
    scaler, and the fastest CUDA AdamW)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": float(cfg.weight_decay)}, {"params": no_decay, "weight_decay": 0.0}]
    params = decay + no_decay
    fused = bool(params) and all(p.device.type == "cuda" and p.dtype.is_floating_point for p in params)
    return torch.optim.AdamW(groups, lr=float(cfg.lr), betas=tuple(float(b) for b in cfg.betas),
                             **({"fused": True} if fused else {}))


class _ObjectiveTimer:
    """Forward time of the objective on marked steps: CUDA events (read later) or the CPU clock."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.total, self.count = 0.0, 0
        self._pending: list[tuple[Any, Any]] = []

    @contextlib.contextmanager
    def measure(self, on: bool):
        if not on:
            yield
            return
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._pending.append((start, end))
        else:
            t0 = time.perf_counter()
            yield
            self.total += time.perf_counter() - t0
            self.count += 1

    def resolve(self) -> None:
        """Read the finished CUDA events (waits for the last one: call it where the host syncs anyway)."""
        for start, end in self._pending:
            end.synchronize()
            self.total += start.elapsed_time(end) / 1000.0
            self.count += 1
        self._pending.clear()


class TrainStep:
    """``step(pixels, tokens, labels, timed=False) -> objective outputs`` (device tensors; see the module
    docstring). ``labels`` may stay on the host: the objectives build their targets there."""

    def __init__(self, model: torch.nn.Module, net: torch.nn.Module, objective: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler: Any, *, grad_clip: float, device: torch.device,
                 world: int = 1):
        self.model, self.net, self.objective = model, net, objective
        self.optimizer, self.scheduler = optimizer, scheduler
        self.grad_clip = float(grad_clip or 0.0)
        self.device, self.world = device, world
        # fp16 needs loss scaling (bf16 and fp32 do not); the scale is not checkpointed: a resumed fp16 run
        # starts again from the initial scale
        self.scaler = torch.amp.GradScaler(device.type, enabled=bool(getattr(model, "needs_grad_scaler", False)))
        groups_fn = getattr(model, "parameter_groups", None)
        groups = groups_fn() if callable(groups_fn) else {
            "parameters": [p for p in model.parameters() if p.requires_grad]}
        self.group_names = list(groups)
        self.group_params = [list(ps) for ps in groups.values()]
        self.params = [p for ps in self.group_params for p in ps]
        if hasattr(objective, "check_finite"):
            objective.check_finite = False  # checked here, on the device, at logging steps
        self.unchecked = tuple(getattr(objective, "unchecked_terms", ()))
        self.timer = _ObjectiveTimer(device)
        self.term_names: list[str] | None = None
        self._step = torch.zeros((), dtype=torch.int64, device=device)
        self._first: Tensor | None = None  # [terms + groups] step at which each first went non-finite (0: never)
        self._value: Tensor | None = None  # its value then
        self._step_offset = 0

    # -- the step ---------------------------------------------------------------------------------------
    def __call__(self, pixels: Tensor, tokens: dict[str, Tensor], labels: dict[str, Tensor], *,
                 timed: bool = False) -> dict[str, Tensor]:
        autocast = getattr(self.model, "autocast", contextlib.nullcontext)
        with autocast():
            img, txt, scale, bias = self.net(pixels, tokens)
        with self.timer.measure(timed):
            out = self.objective(img, txt, labels, scale, bias)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out["loss"]).backward()  # a pass-through unless precision=fp16 on CUDA
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        norms = self._group_norms()
        if self.grad_clip > 0:
            total = torch.linalg.vector_norm(norms)
            torch.nn.utils.clip_grads_with_norm_(self.params, self.grad_clip, total)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        clamp = getattr(self.model, "clamp_logit_scale_", None)
        if callable(clamp):
            clamp()
        self._record(out, norms)
        return out

    def _group_norms(self) -> Tensor:
        norms = []
        for ps in self.group_params:
            grads = [p.grad for p in ps if p.grad is not None]
            norms.append(torch.nn.utils.get_total_norm(grads).to(self.device) if grads
                         else torch.zeros((), device=self.device))
        return torch.stack([n.float() for n in norms]) if norms else torch.zeros(0, device=self.device)

    def _record(self, out: dict[str, Tensor], norms: Tensor) -> None:
        # the named terms first (the error names the first non-finite one), the total last
        names = [k for k, v in out.items() if k not in self.unchecked and k != "loss" and torch.is_tensor(v)
                 and v.numel() == 1] + ["loss"]
        if names != self.term_names:
            if self.term_names is not None:
                self.check(None)  # the objective changed its outputs (rare): settle the old flags first
            self.term_names = names
            n = len(names) + len(self.group_names)
            self._first = torch.zeros(n, dtype=torch.int64, device=self.device)
            self._value = torch.zeros(n, dtype=torch.float32, device=self.device)
        self._step += 1
        values = torch.stack([out[k].detach().reshape(()).float() for k in names])
        if self.scaler.is_enabled():
            norms = torch.zeros_like(norms)  # the scaler handles gradient overflow under fp16
        values = torch.cat([values, norms.detach().float()])
        new = ~torch.isfinite(values) & (self._first == 0)
        self._first = torch.where(new, self._step, self._first)
        self._value = torch.where(new, values, self._value)

    # -- at logging intervals -------------------------------------------------------------------------------
    def check(self, step: int | None) -> None:
        """Raise if a loss term or a gradient norm has been non-finite at any step so far (one host
        synchronisation; under torch.distributed also one small all-reduce, so that every rank stops)."""
        if self._first is None:
            return
        first = self._first
        if self.world > 1:
            flag = (first > 0).to(torch.int32)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            first = torch.where((flag > 0) & (first == 0), self._step, first)
        steps, values = first.tolist(), self._value.tolist()
        bad = [(s, i) for i, s in enumerate(steps) if s > 0]
        if not bad:
            return
        s, i = min(bad)
        s_global = s + self._step_offset
        names = self.term_names or []
        if i < len(names):
            from objectives.errors import ObjectiveNumericsError

            label = getattr(self.objective, "label", type(self.objective).__name__)
            raise ObjectiveNumericsError(
                str(label), names[i],
                f"is not finite ({values[i]}) at step {s_global}; the inputs (features, logit_scale, logit_bias) may "
                "hold NaN/inf or the logits overflowed; the cell stops here so that no checkpoint keeps these weights")
        raise NonFiniteGradientError(self.group_names[i - len(names)], s_global, values[i])

    def start_at(self, step: int) -> None:
        """The step count this object starts from (a resumed run), for messages."""
        self._step_offset = int(step)

    def objective_seconds(self) -> tuple[float, int]:
        """(total forward seconds of the objective over the timed steps, number of timed steps)."""
        self.timer.resolve()
        return self.timer.total, self.timer.count
