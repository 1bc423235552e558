"""Variants of ``fundus_synth`` (``data.variant``): the pretraining corpus and the downstream datasets, each
drawn through its own camera (:class:`Camera`), with its own prevalences, seed streams, label space and
split sizes (:class:`Variant`).

The shifts, the prevalences, the sizes and the statistical-power reasoning behind the test sizes are in
the package docstring (``Downstream variants``); this module holds the numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..sample import TaskSpec
from .anatomy import DEFAULT_FOV
from .diseases import DEFAULT_PREVALENCE
from .text import DME, DR_GRADES, GLAUCOMA, GLAUCOMA_CLASSES, AMD, MULTILABEL_CLASSES

#: every downstream task a variant can provide: name -> kind and classes (the order of the targets)
TASK_SPECS_ALL: dict[str, TaskSpec] = {
    "disease_multilabel": TaskSpec("multilabel", MULTILABEL_CLASSES),
    "dr_grade": TaskSpec("multiclass", DR_GRADES),
    "glaucoma": TaskSpec("multiclass", GLAUCOMA_CLASSES),
    "amd": TaskSpec("multiclass", ("no AMD", "AMD")),
    "dme": TaskSpec("multiclass", ("no DME", "DME")),
}


def targets_of(tasks: tuple[str, ...], grade: int, diseases: list[str]) -> dict[str, int | tuple[int, ...]]:
    """The targets of ``tasks`` for an image with DR grade ``grade`` and disease names ``diseases``."""
    out: dict[str, int | tuple[int, ...]] = {}
    for t in tasks:
        if t == "disease_multilabel":
            out[t] = (int(grade > 0), *(int(c in diseases) for c in MULTILABEL_CLASSES[1:]))
        elif t == "dr_grade":
            out[t] = grade
        elif t == "glaucoma":
            out[t] = int(GLAUCOMA in diseases)
        elif t == "amd":
            out[t] = int(AMD in diseases)
        elif t == "dme":
            out[t] = int(DME in diseases)
        else:  # pragma: no cover - TASK_SPECS_ALL and this function list the same tasks
            raise KeyError(t)
    return out


@dataclass(frozen=True)
class Camera:
    """How a camera changes the picture (all relative to the pretraining camera, whose values these defaults
    are). ``fov``: field-of-view radius range (normalised units; above 1 the circle is cut by the image
    edges); ``colour``: per-channel (R, G, B) gain of the final image (white balance and brightness);
    ``vignetting``: multiplies the radial illumination fall-off; ``gamma``: multiplies the image gamma;
    ``noise``, ``blur``, ``lesion_contrast``, ``artifacts``: multiply the ``data.*`` options of the same
    name; ``native``: the sensor's resolution relative to ``data.resolution`` (below 1 the image is drawn
    at ``round(native x resolution)`` px and upsampled bilinearly)."""

    name: str
    fov: tuple[float, float] = DEFAULT_FOV
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    vignetting: float = 1.0
    gamma: float = 1.0
    noise: float = 1.0
    blur: float = 1.0
    lesion_contrast: float = 1.0
    artifacts: float = 1.0
    native: float = 1.0


@dataclass(frozen=True)
class Variant:
    """One dataset ``fundus_synth`` can draw. ``code`` fixes its seed streams: pool (train + val) image ``i``
    is ``default_rng([seed, 10*code, i])``, test image ``i`` ``default_rng([seed, 10*code + 1, i])``, the
    val permutation ``default_rng([seed, 10*code + 2])`` (code 0, the pretraining corpus: streams 0, 1, 2).
    ``cameras``: None = the pretraining camera; several = one drawn per image (uniformly)."""

    name: str
    like: str
    code: int
    cameras: tuple[Camera, ...] | None
    prevalence: dict[str, float]
    tasks: tuple[str, ...]
    size: int
    val_fraction: float
    test_size: int

    @property
    def streams(self) -> tuple[int, int, int]:
        """(pool stream, test stream, permutation stream)."""
        return 10 * self.code, 10 * self.code + 1, 10 * self.code + 2

    @property
    def id_prefix(self) -> str:
        """Sample ids and patient ids start with this (``fundus_synth-`` or ``fundus_synth-<variant>-``)."""
        return "fundus_synth-" if self.code == 0 else f"fundus_synth-{self.name}-"

    @property
    def task_specs(self) -> dict[str, TaskSpec]:
        return {t: TASK_SPECS_ALL[t] for t in self.tasks}

    def key(self) -> dict:
        """What of the variant changes the content (for the cache key)."""
        return {"name": self.name, "code": self.code, "prevalence": sorted(self.prevalence.items()),
                "cameras": None if self.cameras is None else [asdict(c) for c in self.cameras]}


def _prev(**kw: float) -> dict[str, float]:
    """A variant's full prevalence table (every key of the pretraining table)."""
    if set(kw) != set(DEFAULT_PREVALENCE):
        raise ValueError(f"a variant's prevalence needs exactly the keys {list(DEFAULT_PREVALENCE)}, got {sorted(kw)}")
    return kw


# -- cameras ---------------------------------------------------------------------------------------------
KOWA = Camera("kowa", fov=(1.02, 1.10), colour=(1.10, 0.97, 0.70), vignetting=0.6, gamma=0.9, noise=1.5,
              lesion_contrast=0.85)
CANON = Camera("canon", fov=(0.76, 0.84), colour=(0.95, 0.78, 0.85), vignetting=1.4, gamma=1.1, blur=1.5)
ZEISS = Camera("zeiss", fov=(0.82, 0.88), colour=(0.85, 1.10, 1.35), vignetting=1.25, noise=2.0, blur=0.5,
               lesion_contrast=0.9, native=0.6)
TOPCON = Camera("topcon", fov=(0.93, 0.99), colour=(1.04, 0.90, 1.15), vignetting=1.3, noise=1.3)
TOPCON_LOWRES = Camera("topcon_lowres", fov=(0.86, 0.92), colour=(0.92, 1.00, 0.88), noise=2.5, blur=1.3,
                       native=0.5)

# -- the variants ------------------------------------------------------------------------------------------
PRETRAIN = Variant(
    "pretrain", "MGLL-Fundus (the pretraining corpus)", 0, None, dict(DEFAULT_PREVALENCE),
    ("disease_multilabel", "dr_grade", "glaucoma"), size=2500, val_fraction=0.2, test_size=500,
)
DR = Variant(
    "dr", "IDRiD / OIA-DDR (DR grading, DME)", 1, (KOWA,),
    _prev(mild_npdr=0.10, moderate_npdr=0.25, severe_npdr=0.12, pdr=0.13, dme=0.25, glaucoma=0.05, amd=0.05,
          myopia=0.02, hypertensive=0.05),
    ("dr_grade", "dme"), size=2500, val_fraction=0.2, test_size=5000,
)
GLAUCOMA_VARIANT = Variant(
    "glaucoma", "REFUGE / RIM-ONE (glaucoma)", 2, (CANON,),
    _prev(mild_npdr=0.04, moderate_npdr=0.03, severe_npdr=0.01, pdr=0.01, dme=0.01, glaucoma=0.30, amd=0.08,
          myopia=0.05, hypertensive=0.04),
    ("glaucoma",), size=2500, val_fraction=0.2, test_size=5000,
)
AMD_VARIANT = Variant(
    "amd", "ADAM (AMD)", 3, (ZEISS,),
    _prev(mild_npdr=0.05, moderate_npdr=0.04, severe_npdr=0.01, pdr=0.01, dme=0.02, glaucoma=0.06, amd=0.30,
          myopia=0.04, hypertensive=0.05),
    ("amd",), size=2500, val_fraction=0.2, test_size=5000,
)
MULTIDISEASE = Variant(
    "multidisease", "RFMiD (multi-disease, multi-label, three cameras)", 4, (TOPCON, KOWA, TOPCON_LOWRES),
    _prev(mild_npdr=0.12, moderate_npdr=0.14, severe_npdr=0.06, pdr=0.06, dme=0.15, glaucoma=0.20, amd=0.22,
          myopia=0.12, hypertensive=0.15),
    ("disease_multilabel",), size=2500, val_fraction=0.2, test_size=5000,
)

VARIANTS: dict[str, Variant] = {v.name: v for v in (PRETRAIN, DR, GLAUCOMA_VARIANT, AMD_VARIANT, MULTIDISEASE)}
DEFAULT_VARIANT = "pretrain"
DOWNSTREAM = tuple(n for n in VARIANTS if n != DEFAULT_VARIANT)


# -- statistical power of the test splits --------------------------------------------------------------------
def auc_variance(n_pos: int, n_neg: int, auc: float) -> float:
    """Variance of an empirical AUC with ``n_pos`` positives and ``n_neg`` negatives (Hanley & McNeil, 1982)."""
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    return (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)


def detectable_auc_difference(class_counts: list[tuple[int, int]], auc: float = 0.85, rho: float = 0.6,
                              z_alpha: float = 1.959964, z_power: float = 0.841621) -> float:
    """The smallest difference of (macro-averaged) AUC between two encoders scored on the same test images
    that a paired two-sided test at alpha = 0.05 detects with power 0.8.

    ``class_counts``: (positives, negatives) per class (one-vs-rest; one entry for a binary task). The two
    encoders' AUC estimates correlate with ``rho`` (paired design); the classes' estimates are taken as
    independent, so the macro average has variance ``sum(var_k) / K^2``."""
    k = len(class_counts)
    var = sum(auc_variance(p, n, auc) for p, n in class_counts) / (k * k)
    return (z_alpha + z_power) * math.sqrt(2.0 * var * (1.0 - rho))
