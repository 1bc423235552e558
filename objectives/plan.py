"""From a batch to similarity matrices: which rows and columns take part, global or local, masks.

:func:`level_sums` turns per-level requests (which slots of ``objectives.engine`` each level needs) into an
engine :class:`~objectives.engine.Plan` and returns the slot sums by name, with the counts the objectives
normalise by.

Rows and columns (see ``objectives/targets.py`` for the missing-text convention):

- a level's terms use only the samples present at that level, as rows *and* as columns (they are selected
  before the product, so an absent sample's text is never read and its gradient is 0); the counts
  ``n[level]`` are the numbers of present samples over the whole (gathered) batch;
- cross-level terms (``skl``, ``rawkl``) use the samples present at every level taking part
  (``n_joint``); when that set equals each level's own set (the usual case), the level matrices are reused;
- without ``local_loss`` (or in one process) each level has one matrix, gathered rows x gathered columns;
  the text -> image direction reads the same matrix by columns;
- with ``local_loss`` under torch.distributed, the image -> text direction uses this rank's rows against the
  gathered texts, and the text -> image direction this rank's texts against the gathered images (two
  products, as open_clip); targets come from the gathered labels at the rows' global indices
  (``rank * local_batch + i``).

Which samples are present, their indices and counts are host tensors and Python numbers (from the labels,
see ``objectives/targets.py``); index tensors reach the device by ``non_blocking`` copies, so nothing here
waits for the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .distributed import DistContext
from .engine import Group, Plan, View, slot_sums
from .targets import LevelTargets, Pairs, to_device

__all__ = ["LevelRequest", "Sums", "level_sums"]


@dataclass
class LevelRequest:
    """What one level needs: soft-CE in each direction, point-wise BCE (binary or soft target)."""

    targets: LevelTargets
    row_ce: bool = False
    col_ce: bool = False
    pointwise: bool = False
    pointwise_soft: bool = False


@dataclass
class Sums:
    """Slot sums: ``values[(level, slot)]`` for slot in ``row_ce``, ``col_ce``, ``pw``; ``values[name]`` for the
    cross-level slot; ``n[level]`` present samples per level, ``n_joint`` present at every cross level."""

    values: dict = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    n_joint: int = 0

    def get(self, key) -> Tensor:
        return self.values[key]


class _Features:
    """The distinct feature tensors handed to the engine (row selections are shared when equal)."""

    def __init__(self) -> None:
        self.tensors: list[Tensor] = []
        self._index: dict[int, int] = {}
        self._selected: dict[int, list[tuple[Tensor | None, Tensor]]] = {}
        self._alive: list[Tensor] = []  # keeps the keys of _index / _selected (ids) valid

    def index(self, t: Tensor) -> int:
        key = id(t)
        if key not in self._index:
            self._alive.append(t)
            self._index[key] = len(self.tensors)
            self.tensors.append(t)
        return self._index[key]

    def select(self, t: Tensor, idx: Tensor | None) -> Tensor:
        """``t[idx]`` (``t`` itself when idx is None; ``idx`` a host index tensor), reusing an earlier equal
        selection."""
        if idx is None:
            return t
        self._alive.append(t)
        seen = self._selected.setdefault(id(t), [])
        for prev_idx, prev in seen:
            if prev_idx is not None and prev_idx.shape == idx.shape and torch.equal(prev_idx, idx):
                return prev
        out = t.index_select(0, to_device(idx, t.device))
        seen.append((idx, out))
        return out


def level_sums(
    image: Tensor,
    texts: dict[str, Tensor],
    image_all: Tensor,
    texts_all: dict[str, Tensor],
    requests: dict[str, LevelRequest],
    scale: Tensor,
    bias: Tensor | None,
    dist: DistContext,
    *,
    chunk_size: int = 0,
    cross: str | None = None,
    cross_levels: tuple[str, ...] = (),
    cross_targets: dict[str, LevelTargets] | None = None,
) -> Sums:
    """Evaluate the requested slots. ``cross`` (``"skl"`` or ``"rawkl"``) over ``cross_levels`` uses
    ``cross_targets[level].present`` (or the request's targets) for the masks."""
    feats = _Features()
    slots: dict = {}
    groups: list[Group] = []
    row_views: dict[str, View] = {}
    local = dist.local
    b_local = image.shape[0]
    offset = dist.offset(b_local)
    n_total = image_all.shape[0]
    sums = Sums()

    def slot(key) -> int:
        slots[key] = len(slots)
        return slots[key]

    def present_index(t: LevelTargets) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """(global present indices or None, local present indices or None, rows' global indices): host."""
        if t.all_present:
            rows = torch.arange(offset, offset + b_local) if local else None
            return None, None, rows
        gidx = t.present.nonzero().squeeze(1)
        lidx = t.present[offset : offset + b_local].nonzero().squeeze(1) if local else None
        return gidx, lidx, (lidx + offset if local else gidx)

    def make_view(a: int, b: int, pairs: Pairs, **kw) -> View:
        return View(a, b, pairs, **kw)

    for level, req in requests.items():
        t = req.targets
        sums.n[level] = t.n_present
        if not (req.row_ce or req.col_ce or req.pointwise):
            continue
        gidx, lidx, ridx = present_index(t)
        pw_slot = slot((level, "pw")) if req.pointwise else -1
        if local:
            a = feats.index(feats.select(image, lidx))
            b = feats.index(feats.select(texts_all[level], gidx))
            row_views[level] = make_view(
                a,
                b,
                t.pairs(ridx, gidx),
                row_ce=slot((level, "row_ce")) if req.row_ce else -1,
                pw=pw_slot,
                pw_soft=req.pointwise_soft,
            )
            if req.col_ce:
                a2 = feats.index(feats.select(texts[level], lidx))
                b2 = feats.index(feats.select(image_all, gidx))
                groups.append(Group([make_view(a2, b2, t.pairs(ridx, gidx), row_ce=slot((level, "col_ce")))]))
        else:
            a = feats.index(feats.select(image_all, gidx))
            b = feats.index(feats.select(texts_all[level], gidx))
            row_views[level] = make_view(
                a,
                b,
                t.pairs(gidx, gidx),
                row_ce=slot((level, "row_ce")) if req.row_ce else -1,
                col_ce=slot((level, "col_ce")) if req.col_ce else -1,
                pw=pw_slot,
                pw_soft=req.pointwise_soft,
            )

    grouped: set[str] = set()
    if cross is not None and cross_levels:
        ct = {g: (cross_targets or {}).get(g) or requests[g].targets for g in cross_levels}
        joint = ct[cross_levels[0]].present.clone()
        for g in cross_levels[1:]:
            joint &= ct[g].present
        n_joint = int(joint.sum())
        all_joint = n_joint == n_total
        sums.n_joint = n_joint
        reuse = all(g in row_views for g in cross_levels) and all(
            (ct[g].all_present and all_joint) or torch.equal(ct[g].present, joint) for g in cross_levels
        )
        # reused row views must also share their row features (same selection) - true by construction
        if reuse and len({row_views[g].a for g in cross_levels}) != 1:
            reuse = False
        if reuse:
            views = [row_views[g] for g in cross_levels]
            grouped.update(cross_levels)
        else:
            jg = None if all_joint else joint.nonzero().squeeze(1)
            if local:
                jl = None if all_joint else joint[offset : offset + b_local].nonzero().squeeze(1)
                a = feats.index(feats.select(image, jl))
            else:
                a = feats.index(feats.select(image_all, jg))
            views = [View(a, feats.index(feats.select(texts_all[g], jg))) for g in cross_levels]
        grp = Group(views)
        if cross == "skl":
            grp.skl = slot("skl")
        elif cross == "rawkl":
            if len(views) != 2:
                raise ValueError("rawkl needs exactly two levels")
            grp.rawkl = slot("rawkl")
        else:
            raise ValueError(f"unknown cross-level slot {cross!r}")
        groups.append(grp)
    for level, rv in row_views.items():
        if level not in grouped:
            groups.append(Group([rv]))

    plan = Plan(groups, n_slots=len(slots), chunk_size=chunk_size)
    if feats.tensors and slots:
        out = slot_sums(plan, feats.tensors, scale, bias).unbind(0)
        for key, i in slots.items():
            sums.values[key] = out[i]
    else:
        for key in slots:
            sums.values[key] = scale.new_zeros(())
    return sums
