"""Variants of ``fundus_synth`` (``data.variant``): the pretraining corpus and the downstream datasets, each
drawn through its own camera (:class:`Camera`), with its own prevalences, seed streams, label space and
split sizes (:class:`Variant`).

The shifts, the prevalences, the sizes and the statistical-power reasoning behind the test sizes are in
the package docstring (``Downstream variants``); this module holds the numbers.
"""

from __future__ import annotations

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


# -- the variants ------------------------------------------------------------------------------------------
PRETRAIN = Variant(
    "pretrain", "MGLL-Fundus (the pretraining corpus)", 0, None, dict(DEFAULT_PREVALENCE),
    ("disease_multilabel", "dr_grade", "glaucoma"), size=2500, val_fraction=0.2, test_size=500,
)
VARIANTS: dict[str, Variant] = {v.name: v for v in (PRETRAIN,)}
DEFAULT_VARIANT = "pretrain"
DOWNSTREAM = tuple(n for n in VARIANTS if n != DEFAULT_VARIANT)
