"""The objective base class: the call contract, implemented once for every objective.

``objective(image, texts, labels, logit_scale, logit_bias=None) -> dict[str, Tensor]`` with ``"loss"`` and one
scalar per named term. :class:`Objective` checks the call (``objectives/batch.py``), upcasts (half -> fp32,
float64 stays), switches autocast off, gathers under torch.distributed, runs the objective's implementation
(option ``impl``: ``fast`` = :meth:`Objective.compute`, the fused engine; ``reference`` =
:meth:`Objective.reference`, the formula in plain torch), makes local-loss values global and calls
:meth:`Objective.combine` for the total.

Numerics. With ``check_finite`` true (the default, for direct calls) a non-finite term or total raises
:class:`~objectives.errors.ObjectiveNumericsError` naming the first such term; that reads the values on the
host (one synchronisation per call). The training step sets ``check_finite = False`` and checks device-side
flags at logging intervals instead (``bench/train_step.py``); nothing else in a call synchronises with the
device when the labels are on the host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .batch import Batch, as_scalar, check_inputs, no_autocast
from .distributed import DistContext
from .errors import ObjectiveInputError, ObjectiveNumericsError
from .options import CommonOptions, parse
from .registry import OBJECTIVES, build, register

__all__ = ["OBJECTIVES", "Batch", "CommonOptions", "Objective", "build", "register", "safe_div", "weighted"]


def safe_div(x: Tensor, n: int | float) -> Tensor:
    """x / n, and x * 0 (still on the graph) when n == 0."""
    return x / n if n else x * 0.0


def weighted(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """sum_k weights[k] * terms[k] over the keys of ``weights`` present in ``terms``."""
    parts = [terms[k] * w for k, w in weights.items() if k in terms]
    return torch.stack(parts).sum()


class Objective(nn.Module):
    """Base class of every objective (see the module docstring for the call contract).

    Subclasses set :attr:`Options` (a frozen dataclass extending :class:`CommonOptions`), implement
    :meth:`compute` (the fast path: named terms from the engine, each normalised so that under ``local_loss``
    they add up over ranks), :meth:`reference` (the same terms, written as the formula) and, when the total
    is not the plain sum, :meth:`combine`; they override the class attributes below when needed."""

    name: ClassVar[str] = "objective"
    aliases: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type] = CommonOptions
    #: the model must provide a learnable logit bias (SigLIP)
    needs_logit_bias: ClassVar[bool] = False
    #: preferred initial logit scale s (None: the model's default 1/0.07)
    init_logit_scale: ClassVar[float | None] = None
    #: preferred initial logit bias (None: no preference)
    init_logit_bias: ClassVar[float | None] = None
    #: terms allowed to be non-finite (reported, never part of the loss when non-finite)
    unchecked_terms: ClassVar[tuple[str, ...]] = ()

    def __init__(self, _name: str | None = None, **options: Any):
        super().__init__()
        self.called_as = _name or self.name
        label = self.name if self.called_as == self.name else f"{self.called_as} (alias of {self.name})"
        self.opt = parse(label, self.Options, options)
        #: raise ObjectiveNumericsError at once for a non-finite term (a host synchronisation per call)
        self.check_finite = True

    # -- what the training loop reads --------------------------------------------------------------------
    @property
    def wants_multi_hot(self) -> bool:
        """True when the labels must be multi-hot [B, C] (ids raise an error)."""
        return False

    @property
    def label(self) -> str:
        return self.called_as

    def levels_used(self, available_levels: Sequence[str]) -> list[str]:
        """The levels this objective reads, given the batch's levels (in order)."""
        available = list(available_levels)
        if not available:
            raise ObjectiveInputError(f"objective {self.called_as!r}: the batch has no text level")
        return available[:1]

    def terms_used(self) -> list[str]:
        """The names of the loss terms this objective computes: each output is ``<term>/<level>`` or ``<term>``
        (default: one term named after the objective)."""
        return [self.name]

    def describe(self, available_levels: Sequence[str]) -> dict[str, Any]:
        """What a cell records about its objective (``metrics.json`` key ``objective``, read by the report):
        ``name``, ``called_as``, ``options`` (JSON values), ``levels`` (given the data's levels) and ``terms``."""
        options = {f.name: getattr(self.opt, f.name) for f in dataclasses.fields(self.opt)}
        return {
            "name": self.name,
            "called_as": self.called_as,
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
            "levels": [str(g) for g in self.levels_used(list(available_levels))],
            "terms": list(self.terms_used()),
        }

    def needs_labels(self, level: str) -> bool:
        """Whether labels are required at ``level`` (objectives with instance targets can do without)."""
        return True

    def extra_repr(self) -> str:
        return ", ".join(f"{f.name}={getattr(self.opt, f.name)!r}" for f in dataclasses.fields(self.opt))

    # -- the call ----------------------------------------------------------------------------------------
    def forward(
        self,
        image: Tensor,
        texts: Mapping[str, Tensor],
        labels: Mapping[str, Tensor] | None = None,
        logit_scale: Tensor | float | None = None,
        logit_bias: Tensor | float | None = None,
    ) -> dict[str, Tensor]:
        """The call contract.

        ``image`` [B, D]; ``texts`` level -> [B, D]; ``labels`` level -> ids [B] (negative = missing text) or
        multi-hot [B, C] (a row with a negative entry = missing text), may be None/absent for objectives with
        instance targets, best on the host (targets are built there; labels on a device are copied to the
        host); ``logit_scale`` the positive multiplier s (already exponentiated by the model; gradients flow
        to it); ``logit_bias`` b or None. Features are used as given (never normalised). Returns
        ``{"loss": total, "<term>/<level>": ..., ...}`` (scalars, fp32 or float64)."""
        if logit_scale is None:
            raise ObjectiveInputError(f"objective {self.called_as!r}: logit_scale is required")
        if not isinstance(texts, Mapping):
            raise ObjectiveInputError(f"objective {self.called_as!r}: texts must be a dict level -> [B, D] tensor")
        levels = list(self.levels_used(list(texts)))
        labels = dict(labels or {})
        check_inputs(self, image, texts, labels, levels)
        wide = image.dtype == torch.float64 or any(texts[g].dtype == torch.float64 for g in levels)
        dtype = torch.float64 if wide else torch.float32
        device = image.device
        who = f"objective {self.called_as!r}"
        fast = self.opt.impl == "fast"
        with no_autocast(device):
            img = image.to(dtype)
            txt = {g: texts[g].to(dtype) for g in levels}
            scale = as_scalar(who, logit_scale, dtype, device, "logit_scale")
            bias = as_scalar(who, logit_bias, dtype, device, "logit_bias") if logit_bias is not None else None
            # the reference computes the global matrices on every rank (its values and gradients equal the
            # fast path's global ones; local_loss only changes how the fast path splits the work)
            dist = DistContext.current(self.opt.local_loss and fast, self.opt.gather_with_grad)
            batch = Batch(self, levels, img, txt, {g: labels.get(g) for g in levels}, scale, bias, dist)
            terms = dist.globalise(self.compute(batch)) if fast else self.reference(batch)
            if self.check_finite:
                self._check_finite(terms)
            loss = self.combine(terms, batch)
            if self.check_finite and not bool(torch.isfinite(loss)):
                raise ObjectiveNumericsError(self.called_as, "loss", f"is not finite ({float(loss.detach())})")
        return {"loss": loss, **terms}

    def compute(self, batch: Batch) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """The named terms, fast (the engine)."""
        raise NotImplementedError

    def reference(self, batch: Batch) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """The named terms, as the formula (plain torch, dense matrices, autograd)."""
        raise NotImplementedError

    def combine(self, terms: dict[str, Tensor], batch: Batch) -> Tensor:
        """The total loss from the named terms (default: their sum)."""
        return torch.stack([v.reshape(()) for v in terms.values()]).sum()

    # -- helpers -----------------------------------------------------------------------------------------
    def finite_terms(self, terms: dict[str, Tensor]) -> list[str]:
        """The names of the terms that must be finite."""
        return [k for k in terms if k not in self.unchecked_terms]

    def _check_finite(self, terms: dict[str, Tensor]) -> None:
        names = self.finite_terms(terms)
        if not names:
            return
        ok = torch.isfinite(torch.stack([terms[k].detach().reshape(()) for k in names]))
        if bool(ok.all()):
            return
        bad = names[int((~ok).nonzero()[0, 0])]
        raise ObjectiveNumericsError(
            self.called_as,
            bad,
            f"is not finite ({float(terms[bad].detach())}); the inputs (features, logit_scale, logit_bias) may "
            "hold NaN/inf or the logits overflowed",
        )
