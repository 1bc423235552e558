"""The objective registry.

``objectives.build(name, **options)`` returns a ``torch.nn.Module``; calling it as
``objective(image, texts, labels, logit_scale, logit_bias=None)`` returns a dict of scalar tensors:
``"loss"`` and one entry per named term (e.g. ``"sclip/disease"``, ``"pointwise/description"``, ``"skl"``).
``OBJECTIVES`` maps every name (and alias) to its class. Names: ``clip``, ``siglip``, ``clip_multipositive``,
``soft_clip`` (aliases ``unicl``, ``flair``), ``medclip``, ``mgll``, ``mgll_released``.

Every objective has two implementations, chosen by the option ``impl``: ``reference`` (its formula in plain
torch, dense matrices and autograd, in the objective's own file on top of ``functional.py``) and ``fast``
(the default: the fused engine of ``engine.py``/``plan.py``/``targets.py``, measured faster; no B x B
temporaries, ``chunk_size`` for large batches, no host synchronisation when the labels are on the host). The
tests hold the fast path to the reference, and the reference to slow loops written from the specification.

Layout: ``registry.py`` (names, ``build``), ``options.py`` (option dataclasses checked by
``bench.options``), ``batch.py`` (the checked, gathered batch), ``base.py`` (the call contract),
``functional.py`` (the formulas), ``targets.py``/``plan.py``/``engine.py``/``blocks.py`` (the fast path),
``distributed.py`` (gathering). ``bench/syncguard.py`` checks that a call never waits for the device.

Adding an objective: one file with a class decorated ``@register("name")`` (options as a frozen dataclass
extending ``CommonOptions``; ``reference`` returning the named terms as the formula; ``compute`` returning
them from the engine's slots), one import line below, one test against the slow loops.

See docs/objectives/ (one page per objective; the overview holds the missing-text convention and the
distributed and chunking guarantees).
"""

from __future__ import annotations

from .base import OBJECTIVES, CommonOptions, Objective, build, register
from .errors import ObjectiveConfigError, ObjectiveInputError, ObjectiveNumericsError

# the families (importing a module registers its objectives)
from . import clip, medclip, mgll, mgll_released, siglip, soft  # noqa: E402  isort: skip

#: the modules that register the built-in objectives (imported above for that)
FAMILIES = (clip, medclip, mgll, mgll_released, siglip, soft)

__all__ = [
    "OBJECTIVES",
    "CommonOptions",
    "Objective",
    "ObjectiveConfigError",
    "ObjectiveInputError",
    "ObjectiveNumericsError",
    "build",
    "register",
]
