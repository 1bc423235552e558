"""The objective registry.

``objectives.build(name, **options)`` returns a ``torch.nn.Module``; calling it as
``objective(image, texts, labels, logit_scale, logit_bias=None)`` returns a dict of scalar tensors:
``"loss"`` and one entry per named term (e.g. ``"sclip/disease"``, ``"pointwise/description"``, ``"skl"``).
``OBJECTIVES`` maps every name (and alias) to its class. Names: ``clip``, ``siglip``, ``clip_multipositive``,
``soft_clip`` (aliases ``unicl``, ``flair``), ``medclip``, ``mgll``, ``mgll_released``.

Adding an objective: one file with a class decorated ``@register("name")`` (options as a frozen dataclass
extending ``CommonOptions``, ``compute`` returning named terms built from the shared pieces in
``targets``/``plan``/``engine``), one import line below, one test file against a slow reference.

See the README section "Objectives" for the table of objectives, the missing-text convention and the
distributed and chunking guarantees.
"""

from __future__ import annotations

from .base import OBJECTIVES, CommonOptions, Objective, build, register
from .errors import ObjectiveConfigError, ObjectiveInputError, ObjectiveNumericsError

# the families (importing a module registers its objectives)
from . import clip, medclip, mgll, mgll_released, siglip, soft  # noqa: E402,F401  isort: skip

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
