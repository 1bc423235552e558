"""The objective base class, the registry and option handling.

- :data:`OBJECTIVES` maps a name (and each alias) to its class; :func:`register` fills it.
- :func:`build` validates the options (unknown keys, bad values: :class:`ObjectiveConfigError` naming the
  objective, the option and what is allowed) and returns the module.
- :class:`Objective` implements the call contract once for every objective:
  ``objective(image, texts, labels, logit_scale, logit_bias=None) -> dict[str, Tensor]`` with ``"loss"`` and
  one scalar per named term. It checks the batch, upcasts (half -> fp32, float64 stays), disables autocast,
  gathers under torch.distributed, calls :meth:`Objective.compute`, makes local-loss values global, raises
  :class:`ObjectiveNumericsError` naming the first non-finite term, and calls :meth:`Objective.combine`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .distributed import DistContext
from .errors import ObjectiveConfigError, ObjectiveInputError, ObjectiveNumericsError
from .plan import LevelRequest, Sums, level_sums
from .targets import LevelTargets

__all__ = ["OBJECTIVES", "Batch", "CommonOptions", "Objective", "build", "register"]

OBJECTIVES: dict[str, type[Objective]] = {}


def register(name: str, *aliases: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: ``@register("soft_clip", "unicl", "flair")`` adds the class under each name."""

    def deco(cls: type[Objective]) -> type[Objective]:
        for key in (name, *aliases):
            if key in OBJECTIVES and OBJECTIVES[key] is not cls:
                raise ValueError(f"objective name {key!r} is already registered by {OBJECTIVES[key].__name__}")
            OBJECTIVES[key] = cls
        cls.name = name
        cls.aliases = tuple(aliases)
        return cls

    return deco


def build(name: str, **options: Any) -> Objective:
    """The objective registered as ``name``, built with ``options`` (validated now, not at the first step)."""
    if name not in OBJECTIVES:
        close = difflib.get_close_matches(str(name), list(OBJECTIVES), n=3, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else ""
        raise ObjectiveConfigError(str(name), None, f"unknown objective{hint}", allowed=sorted(OBJECTIVES))
    return OBJECTIVES[name](_name=name, **options)


# ---------------------------------------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommonOptions:
    """Options every objective accepts.

    - ``local_loss``: under torch.distributed, each rank computes its own rows against the gathered columns
      (open_clip's ``--local-loss``); returned values are still the global ones (see ``distributed.py``);
    - ``gather_with_grad``: gather features through an autograd all-gather (exact gradients);
    - ``chunk_size``: 0 = off; c > 0 = compute in blocks of c rows without storing any B x B matrix (the
      backward recomputes the blocks)."""

    local_loss: bool = False
    gather_with_grad: bool = True
    chunk_size: int = 0

    def check(self, objective: str) -> None:
        """Raise :class:`ObjectiveConfigError` for a bad value (subclasses extend it)."""


def _is_seq(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, (str, bytes))


def _coerce(objective: str, key: str, annotation: str, value: Any) -> Any:
    """Plain Python values from YAML/OmegaConf: lists (ListConfig) -> tuples, numbers checked by type."""
    ann = str(annotation)
    if value is None:
        if "None" in ann:
            return None
        raise ObjectiveConfigError(objective, key, "must not be None")
    if ann.startswith("tuple") or ann.startswith("tuple[") or "tuple[" in ann:
        if isinstance(value, str):
            value = (value,)
        elif _is_seq(value):
            value = tuple(value)
        else:
            raise ObjectiveConfigError(objective, key, f"expected a list, got {value!r}")
        if "tuple[str" in ann:
            bad = [x for x in value if not isinstance(x, str)]
            if bad:
                raise ObjectiveConfigError(objective, key, f"expected names (strings), got {bad}")
        if "tuple[float" in ann:
            bad = [x for x in value if isinstance(x, bool) or not isinstance(x, numbers.Real)]
            if bad:
                raise ObjectiveConfigError(objective, key, f"expected numbers, got {bad}")
            value = tuple(float(x) for x in value)
        return value
    if ann == "bool":
        if not isinstance(value, bool):
            raise ObjectiveConfigError(objective, key, f"expected true or false, got {value!r}", allowed=[True, False])
        return value
    if ann == "int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ObjectiveConfigError(objective, key, f"expected an integer, got {value!r}")
        return int(value)
    if ann == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ObjectiveConfigError(objective, key, f"expected a number, got {value!r}")
        return float(value)
    if ann.startswith("str"):
        if not isinstance(value, str):
            raise ObjectiveConfigError(objective, key, f"expected a name (string), got {value!r}")
        return value
    return value


def parse_options(objective: str, cls: type, raw: Mapping[str, Any]) -> Any:
    """Validate ``raw`` against the dataclass ``cls``: unknown keys, types, then ``cls.check``."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=3, cutoff=0.5)
            hint = f"; did you mean {close}?" if close else ""
            raise ObjectiveConfigError(objective, str(key), f"unknown option{hint}", allowed=sorted(fields))
    values = {k: _coerce(objective, k, fields[k].type, v) for k, v in raw.items()}
    opts = cls(**values)
    if opts.chunk_size < 0:
        raise ObjectiveConfigError(
            objective, "chunk_size", f"must be >= 0, got {opts.chunk_size}", allowed="0 (off) or a positive row count"
        )
    opts.check(objective)
    return opts


def check_choice(objective: str, key: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ObjectiveConfigError(objective, key, f"got {value!r}", allowed=list(allowed))


def check_levels(
    objective: str, key: str, levels: tuple[str, ...] | None, minimum: int = 1, exact: int | None = None
) -> None:
    if levels is None:
        return
    if len(set(levels)) != len(levels):
        raise ObjectiveConfigError(objective, key, f"repeats a level: {list(levels)}")
    if exact is not None and len(levels) != exact:
        raise ObjectiveConfigError(objective, key, f"needs exactly {exact} levels, got {list(levels)}")
    if len(levels) < minimum:
        raise ObjectiveConfigError(objective, key, f"needs at least {minimum} level(s), got {list(levels)}")


# ---------------------------------------------------------------------------------------------------------
# the batch as the objectives see it
# ---------------------------------------------------------------------------------------------------------
class Batch:
    """A checked, upcast and (under torch.distributed) gathered batch.

    ``image``/``texts``: this rank's features; ``image_all``/``texts_all``: gathered (the same tensors in one
    process); ``labels``: gathered labels per used level (None when the caller gave none); ``scale``,
    ``bias``: 0-dim tensors in the compute dtype."""

    def __init__(
        self,
        objective: Objective,
        levels: list[str],
        image: Tensor,
        texts: dict[str, Tensor],
        labels: dict[str, Tensor | None],
        scale: Tensor,
        bias: Tensor | None,
        dist: DistContext,
    ):
        self.objective = objective
        self.levels = levels
        self.image, self.texts = image, texts
        self.scale, self.bias = scale, bias
        self.dist = dist
        self.dtype, self.device = image.dtype, image.device
        self.image_all = dist.gather_features(image)
        self.texts_all = {g: dist.gather_features(t) for g, t in texts.items()}
        self.labels = {g: (dist.gather_labels(y) if y is not None else None) for g, y in labels.items()}
        self.n_total = self.image_all.shape[0]
        self._targets: dict[tuple, LevelTargets] = {}

    def targets(self, level: str, kind: str, normalise: bool = True) -> LevelTargets:
        """Targets of ``kind`` at ``level`` over the gathered batch (cached per call)."""
        key = (level, kind, normalise)
        if key not in self._targets:
            labels = self.labels.get(level)
            self._targets[key] = LevelTargets.build(
                kind, labels, self.n_total, normalise=normalise, dtype=self.dtype, device=self.device
            )
        return self._targets[key]

    def sums(
        self,
        requests: dict[str, LevelRequest],
        *,
        use_bias: bool = False,
        cross: str | None = None,
        cross_levels: tuple[str, ...] = (),
    ) -> Sums:
        return level_sums(
            self.image,
            self.texts,
            self.image_all,
            self.texts_all,
            requests,
            self.scale,
            self.bias if use_bias else None,
            self.dist,
            chunk_size=self.objective.opt.chunk_size,
            cross=cross,
            cross_levels=cross_levels,
        )


def _no_autocast(device: torch.device):
    try:
        if torch.is_autocast_enabled(device.type):
            return torch.autocast(device_type=device.type, enabled=False)
    except (TypeError, RuntimeError):  # pragma: no cover - older torch / exotic devices
        pass
    return contextlib.nullcontext()


def safe_div(x: Tensor, n: int | float) -> Tensor:
    """x / n, and x * 0 (still on the graph) when n == 0."""
    return x / n if n else x * 0.0


# ---------------------------------------------------------------------------------------------------------
# the base class
# ---------------------------------------------------------------------------------------------------------
class Objective(nn.Module):
    """Base class of every objective (see the module docstring for the call contract).

    Subclasses set :attr:`Options` (a frozen dataclass extending :class:`CommonOptions`), implement
    :meth:`compute` (named terms, each normalised so that under ``local_loss`` they add up over ranks) and
    :meth:`combine` (the total), and override the class attributes below when needed."""

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
        self.opt = parse_options(label, self.Options, options)

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
        instance targets; ``logit_scale`` the positive multiplier s (already exponentiated and clamped by the
        model; gradients flow to it); ``logit_bias`` b or None. Features are used as given (never
        normalised). Returns ``{"loss": total, "<term>/<level>": ..., ...}`` (scalars, fp32 or float64)."""
        if logit_scale is None:
            raise ObjectiveInputError(f"objective {self.called_as!r}: logit_scale is required")
        if not isinstance(texts, Mapping):
            raise ObjectiveInputError(f"objective {self.called_as!r}: texts must be a dict level -> [B, D] tensor")
        levels = list(self.levels_used(list(texts)))
        labels = dict(labels or {})
        self._check_inputs(image, texts, labels, levels)
        dtype = (
            torch.float64
            if (image.dtype == torch.float64 or any(texts[g].dtype == torch.float64 for g in levels))
            else torch.float32
        )
        device = image.device
        with _no_autocast(device):
            img = image.to(dtype)
            txt = {g: texts[g].to(dtype) for g in levels}
            scale = self._scalar(logit_scale, dtype, device, "logit_scale")
            bias = self._scalar(logit_bias, dtype, device, "logit_bias") if logit_bias is not None else None
            dist = DistContext.current(self.opt.local_loss, self.opt.gather_with_grad)
            batch = Batch(self, levels, img, txt, {g: labels.get(g) for g in levels}, scale, bias, dist)
            terms = self.compute(batch)
            terms = dist.globalise(terms)
            self._check_finite(terms)
            loss = self.combine(terms, batch)
            if not bool(torch.isfinite(loss)):
                raise ObjectiveNumericsError(self.called_as, "loss", f"is not finite ({float(loss.detach())})")
        return {"loss": loss, **terms}

    def compute(self, batch: Batch) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def combine(self, terms: dict[str, Tensor], batch: Batch) -> Tensor:
        """The total loss from the named terms (default: their sum)."""
        return torch.stack([v.reshape(()) for v in terms.values()]).sum()

    # -- helpers -----------------------------------------------------------------------------------------
    def _scalar(self, x: Tensor | float, dtype: torch.dtype, device: torch.device, what: str) -> Tensor:
        if isinstance(x, Tensor):
            if x.numel() != 1:
                raise ObjectiveInputError(
                    f"objective {self.called_as!r}: {what} must be a scalar, got shape {tuple(x.shape)}"
                )
            return x.reshape(()).to(device=device, dtype=dtype)
        if isinstance(x, numbers.Real) and not isinstance(x, bool):
            return torch.tensor(float(x), dtype=dtype, device=device)
        raise ObjectiveInputError(
            f"objective {self.called_as!r}: {what} must be a scalar tensor or a number, got {type(x).__name__}"
        )

    def _check_inputs(self, image: Tensor, texts: Mapping[str, Tensor], labels: dict, levels: list[str]) -> None:
        who = f"objective {self.called_as!r}"
        if not isinstance(image, Tensor) or image.dim() != 2:
            raise ObjectiveInputError(
                f"{who}: image must be a [B, D] tensor, got {getattr(image, 'shape', type(image))}"
            )
        if not image.dtype.is_floating_point:
            raise ObjectiveInputError(f"{who}: image features must be floating point, got {image.dtype}")
        b, d = image.shape
        for g in levels:
            if g not in texts:
                raise ObjectiveConfigError(
                    self.called_as,
                    "levels",
                    f"level {g!r} is not in the batch (it has {list(texts)})",
                    allowed=list(texts),
                )
            t = texts[g]
            if not isinstance(t, Tensor) or tuple(t.shape) != (b, d):
                got = tuple(getattr(t, "shape", ()))
                raise ObjectiveInputError(f"{who}: texts[{g!r}] must be [{b}, {d}] like the image features, got {got}")
            if not t.dtype.is_floating_point:
                raise ObjectiveInputError(f"{who}: texts[{g!r}] must be floating point, got {t.dtype}")
            y = labels.get(g)
            if y is None:
                if self.needs_labels(g):
                    raise ObjectiveInputError(f"{who}: needs labels for level {g!r}")
                continue
            if not isinstance(y, Tensor) or y.dim() not in (1, 2) or y.shape[0] != b:
                got = tuple(getattr(y, "shape", ()))
                raise ObjectiveInputError(f"{who}: labels[{g!r}] must be ids [{b}] or multi-hot [{b}, C], got {got}")
            if self.wants_multi_hot and y.dim() == 1:
                raise ObjectiveInputError(
                    f"{who}: needs multi-hot labels [B, C] at level {g!r} (options {self.opt}); got ids [B]. "
                    "Give multi-hot labels (the training loop does when objective.wants_multi_hot is true)."
                )

    def needs_labels(self, level: str) -> bool:
        """Whether labels are required at ``level`` (objectives with instance targets can do without)."""
        return True

    def _check_finite(self, terms: dict[str, Tensor]) -> None:
        names = [k for k in terms if k not in self.unchecked_terms]
        if not names:
            return
        vals = torch.stack([terms[k].detach().reshape(()) for k in names])
        ok = torch.isfinite(vals)
        if bool(ok.all()):
            return
        bad = names[int((~ok).nonzero()[0, 0])]
        value = float(terms[bad].detach())
        raise ObjectiveNumericsError(
            self.called_as,
            bad,
            f"is not finite ({value}); the inputs (features, logit_scale, logit_bias) may hold NaN/inf "
            "or the logits overflowed",
        )


def weighted(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """sum_k weights[k] * terms[k] over the keys of ``weights`` present in ``terms``."""
    parts = [terms[k] * w for k, w in weights.items() if k in terms]
    return torch.stack(parts).sum()
