"""``fundus_synth``: procedurally drawn colour-fundus-like images with multi-label diseases and
multi-granular text (the MGLL paper's three levels), deterministic from a seed, no download.

This docstring is the ground truth of the generator: every rule below is what the code does.

Coordinates
===========
Normalised image coordinates ``(x, y)`` in ``[-1, 1]``, ``x`` to the right, ``y`` *down* (image rows);
one pixel at 64 px is ``2/64 = 0.031`` units. ``DD`` is the disc diameter (0.25-0.30 units, 8-9.6 px at
64 px). The *temporal* direction points from the disc to the fovea, *nasal* the other way; *superior*
is the image-up side of the disc-fovea axis. Quadrants are taken around the fovea: superotemporal,
superonasal, inferotemporal, inferonasal (``(p - fovea)`` projected on the temporal and superior axes).

Anatomy (every image)
=====================
- Field of view: a disc of radius 0.90-0.96 on black, centre shifted by up to 0.04 (translation), soft
  edge. Orange-red background (per-image base colour jitter: lighter/darker pigmentation), low-frequency
  choroidal mottling, radial illumination fall-off (``1 - a r^2``, a in [0.2, 0.5] x ``illumination``)
  plus a random linear illumination gradient (up to 0.15 x ``illumination``).
- Eye: right (OD, disc on the right of the image) or left (OS, disc on the left), 50/50. The disc-fovea
  axis is rotated by up to +-0.15 rad (small rotation).
- Optic disc: pale yellow-pink ellipse (horizontal radius 0.125-0.15, vertical 5-15 % larger, brightness
  x 0.82-1.05) 0.39-0.45 units from the field centre; the cup is a paler, whiter ellipse inside it (blend
  0.4-0.85) with *vertical* cup-to-disc ratio ``cdr`` (healthy: U(0.20, 0.55); glaucoma: U(0.60, 0.85),
  the cup then shifted inferiorly: a thinner inferior rim), horizontal ratio 80-95 % of the vertical.
- Vessels: four arcades leaving the disc (superotemporal and inferotemporal arching around the macula,
  superonasal and inferonasal), each a vein (darker, ~1 px wide at 64 px) and an artery (lighter,
  ~0.75 px), two small macular twigs, and 1-3 branches per main vessel; random-walk curves with a
  relaxing curvature and tapering width. Vessels fade over the cup.
- Macula: a darker vessel-free zone 2.5 DD temporal to the disc (slightly below), with a darker fovea
  and, in half of the images, a tiny foveal reflex (white dot, not a finding).
- Nuisances (all independent of the labels): global brightness gain 0.75-1.2, per-channel gain
  +-10 %, gamma 0.85-1.2 (their spread scales with ``illumination``); blur sigma U(0, 0.9) px at 64 px
  (x ``blur``, skipped below 0.15); uniform sensor noise with standard deviation U(0.004, 0.03) (x
  ``noise``); eyelash shadow (dark soft band at the top or bottom, p = 0.12 x ``artifacts``); lens flare
  (bright haze at the field edge, p = 0.12 x ``artifacts``); dust specks (1-3 soft grey spots anywhere,
  p = 0.15 x ``artifacts``; *not* findings, they look a little like haemorrhages but grey).

Lesions ("findings"): look, place, count
========================================
Sizes are Gaussian sigmas in 64-px pixels (``LESION_LOOK``), multiplied by ``lesion_size``; amplitudes
are multiplied by ``lesion_contrast`` (both default 1).

====================== =========================================== ====================================================
finding                look (sigma at 64 px; amplitude)            place / count
====================== =========================================== ====================================================
microaneurysms         tiny dark-red dot, 0.50-0.70; 0.7-1.0       0.15-2 DD from the fovea (posterior pole); 1-5 (mild
                                                                   NPDR), 2-8 (other grades)
dot-blot haemorrhages  dark-red round spot, 1.3-2.4; 1.1-1.4       in the field (r < 0.88 field radius), > 1.5 disc
                                                                   radii from the disc centre, > 0.25 DD from the
                                                                   fovea, in chosen quadrants (see DR)
flame haemorrhages     red streak along a main vessel,             on a main vessel, 1.3 disc radii - 1.6 units from
                       2.6-4.2 x 0.7-1.0; 1.1-1.4                  the disc; 1-4
hard exudates          sharp yellow dot, 0.7-1.2; 1.05-1.4         a cluster (sigma 0.12 DD) of 3-10; DME: a ring
                                                                   (radius 0.35-0.75 DD, p = 0.5) or cluster around
                                                                   the fovea, all <= 0.95 DD from it; otherwise a
                                                                   cluster centred 1.8-2.9 DD from the fovea, every
                                                                   exudate >= 1.55 DD from it
cotton-wool spots      fluffy pale-white patch (3 blobs),          0.4-2.2 DD from the fovea, off the disc; 1-4
                       1.5-2.6; 1.0-1.4
neovascularisation     tangle of 6-10 thin red wiggly vessels,     on the disc (NVD, p = 0.5) or on a main arcade
                       radius 0.4 DD                               (NVE)
preretinal haemorrhage dark-red boat-shaped smear with a flat top, inferior field (y > field centre + 0.35), > 2 disc
                       4.0-6.0 wide; 1.25-1.4                      radii from the disc; one
hard drusen            tiny faint pale-yellow dot, 0.40-0.55;      < 1 DD from the fovea; 1-4 (benign ageing)
                       0.35-0.55
soft drusen            round pale-yellow deposit, 1.3-2.1;         < 1.5 DD from the fovea; 3-10
                       0.75-1.25
pigment changes        dark-brown spots, 0.8-1.4; 0.85-1.25        < 1.2 DD from the fovea; 2-8
geographic atrophy     sharp-edged pale patch, 3.0-4.5; 1.0-1.3    at the fovea; one
enlarged cup           vertical CDR 0.60-0.85, inferior thinning   disc
tessellation           choroidal stripe/lattice texture (period    whole field, stronger in the periphery; zero-mean
                       ~6 px), amplitude 0.3-0.6                   (a texture, not a colour shift)
peripapillary atrophy  pale crescent with a pigmented border,      temporal side of the disc
                       0.3-0.9 disc radii wide
arteriolar narrowing   arteries at 55 % width and lighter          all arteries
====================== =========================================== ====================================================

Amplitudes above 1 saturate the lesion's core (the layers are clipped to [0, 1] after stamping), which
makes a flat-topped spot with soft shoulders. Microaneurysms and hard drusen are deliberately the
smallest and faintest cues (mild NPDR is the hardest class to see).

Diseases and the rules that define them (``diagnose``)
======================================================
The generator first draws hidden variables and lesions; the labels are then *derived from the drawn
lesions* by these rules (``diagnose``), so labels and pixels agree by construction:

- Diabetic retinopathy, exactly one grade when present (first rule that applies):
  PDR if neovascularisation or a preretinal haemorrhage (the generator draws NV with p = 0.85 and a
  preretinal haemorrhage with p = 0.35, at least one); else severe NPDR if dot-blot haemorrhages lie in
  all four quadrants (the generator draws 2-4 per quadrant); else moderate NPDR if any dot-blot
  haemorrhage or hard exudate (the generator draws haemorrhages with p = 0.75, in one or two quadrants,
  1-5 in all, and exudates with p = 0.5, always when there is no haemorrhage or with DME); else mild NPDR
  if any microaneurysm; else no DR. Microaneurysms are drawn in every DR image; severe NPDR has exudates
  with p = 0.5; PDR images also carry haemorrhages in 2-4 quadrants (1-3 each) and exudates with p = 0.4.
- Diabetic macular edema (DME): a hard exudate within 1 DD of the fovea. Exudates are only drawn in
  moderate/severe/PDR, so DME never occurs without DR (and never with mild NPDR).
- Glaucoma: enlarged cup, i.e. vertical CDR >= 0.6 (healthy cups are drawn at <= 0.55).
- Age-related macular degeneration (AMD): soft drusen, pigment changes or geographic atrophy (early:
  soft drusen only, 60 %; late: pigment changes 25 % or geographic atrophy 15 %, each with soft drusen
  in 70 %). Hard drusen are benign ageing (p = 0.25 in non-AMD eyes over 50) and do *not* make AMD.
- Pathological myopia: tessellation *and* peripapillary atrophy together. Either alone occurs as a
  benign finding (tessellation p = 0.15; PPA p = 0.10, or 0.30 with glaucoma), drawn exactly like the
  myopic one, and never makes the disease; the generator never draws both in a non-myopic eye.
- Hypertensive retinopathy: flame haemorrhages or cotton-wool spots (flame only p = 0.3, both p = 0.45,
  cotton-wool only p = 0.25), always together with arteriolar narrowing. These three findings only occur
  with it.
- Normal: no disease. A normal image can still show benign findings (hard drusen, tessellation alone,
  peripapillary atrophy alone).

Hidden variables, prevalence and co-occurrence
==============================================
Age ~ U(20, 90) (hidden). Default marginal prevalences (option ``prevalence``, keys in parentheses):
mild NPDR 0.15 (``mild_npdr``), moderate NPDR 0.15 (``moderate_npdr``), severe NPDR 0.05
(``severe_npdr``), PDR 0.05 (``pdr``) -- so any DR 0.40 --, DME 0.10 (``dme``), glaucoma 0.17
(``glaucoma``), AMD 0.18 (``amd``), pathological myopia 0.03 (``myopia``), hypertensive retinopathy 0.08
(``hypertensive``). Rare classes: severe NPDR, PDR, myopia (3-5 %). About 38 % of the images are normal
at the defaults.
Co-occurrence: DME only with DR, P(DME | grade) proportional to 1 (moderate) and 1.6 (severe, PDR);
glaucoma probability rises with age (x (0.4 + age/50)) and is x3 with myopia; AMD is driven by age
(weight ``exp((age - 60) / 9)``); hypertensive retinopathy rises with age (x (0.5 + age/60)) and is x2
with DR. The age/co-occurrence weights are normalised so that the marginals above hold (up to clipping
at probability 1). Everything else is independent.

Texts (three levels, coarse to fine)
====================================
- ``category``: ``"Normal"`` or ``"Abnormal"``. Labels: ``("Normal",)`` / ``("Abnormal",)``.
- ``disease``: the category, then the disease names in the fixed clinical order (DR grade, DME,
  glaucoma, AMD, myopia, hypertensive), joined by ``", "``:
  ``"Abnormal, moderate non-proliferative diabetic retinopathy, diabetic macular edema"``;
  normal images: ``"Normal, healthy"``. Labels: the disease names; normal images get ``("healthy",)``
  (so every sample has at least one label at every level; ``"healthy"`` is in the vocabulary).
- ``description``: one sentence per finding present, with count words ("a single", "two", "a few",
  "several", "numerous", ...) and place words (quadrants, "near the macula", "within one disc diameter
  of the fovea", "at the disc", "in the inferior field", ...), each from 2-4 templates chosen by the
  image's seed; sentences in clinical order, occasionally shuffled (p = 0.25). A normal image starts
  with one of several "normal fundus" sentences ("Clear optic disc boundaries, normal fundus colour,
  no apparent retinopathy.") followed by its benign findings if any. Labels: the finding names present
  in canonical order (``FINDINGS``); an image without any finding gets ``("normal fundus",)``.

Downstream tasks (``TaskSpec``)
===============================
- ``disease_multilabel`` (multilabel, RFMiD-like): ``diabetic retinopathy`` (any grade), ``diabetic
  macular edema``, ``glaucoma``, ``age-related macular degeneration``, ``pathological myopia``,
  ``hypertensive retinopathy``.
- ``dr_grade`` (multiclass): ``none``, ``mild``, ``moderate``, ``severe``, ``PDR``.
- ``glaucoma`` (multiclass, binary): ``no glaucoma``, ``glaucoma``.

Splits and seeds
================
Image ``i`` of the development pool (train + val) is drawn from ``np.random.default_rng([seed, 0, i])``,
test image ``i`` from ``np.random.default_rng([seed, 1, i])`` (a different seed range), so the splits are
disjoint by image seed. ``size`` is the pool size; a seeded permutation puts ``round(val_fraction *
size)`` of them in ``val``. Defaults: ``size=2500, val_fraction=0.2, test_size=500`` -> 2000 train /
500 val / 500 test at 64 px.

Caching
=======
Rendered images + the sample metadata (texts, labels, targets, a ground-truth summary) are stored in one
``.npz`` keyed by a hash of every option that changes the content (all but ``cache_dir``, ``levels`` and
``progress``) and ``GENERATOR_VERSION`` (bump it whenever the drawing changes); written to a temporary
file and ``os.replace``-d into place; an unreadable cache file is regenerated. The
directory is ``cache_dir`` if given, else ``$CONTRASTIVE_BENCH_CACHE/fundus_synth`` if that variable is
set, else ``~/.cache/contrastive-bench/fundus_synth``; ``cache_dir=False`` disables caching.

Run ``python -m bench.data.fundus_synth --benchmark`` to measure the drawing speed, ``--preview out.png``
for a grid of examples with their texts on stdout.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from bench.data.options import level_subset
from bench.data.sample import MultiGranularDataset, Sample, TaskSpec

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # 1 = development drafts (caches written while this module was being tuned)
NAME = "fundus_synth"
LEVELS = ("category", "disease", "description")

# -- disease and finding vocabularies ------------------------------------------------------------------
DR_GRADE_DISEASE = {
    1: "mild non-proliferative diabetic retinopathy",
    2: "moderate non-proliferative diabetic retinopathy",
    3: "severe non-proliferative diabetic retinopathy",
    4: "proliferative diabetic retinopathy",
}
DME = "diabetic macular edema"
GLAUCOMA = "glaucoma"
AMD = "age-related macular degeneration"
MYOPIA = "pathological myopia"
HYPERTENSIVE = "hypertensive retinopathy"
HEALTHY = "healthy"
#: every disease-level label in canonical (text) order
DISEASES = (*DR_GRADE_DISEASE.values(), DME, GLAUCOMA, AMD, MYOPIA, HYPERTENSIVE)
DISEASE_VOCAB = (*DISEASES, HEALTHY)

FINDINGS = (
    "microaneurysms",
    "dot-blot haemorrhages",
    "flame haemorrhages",
    "hard exudates",
    "cotton-wool spots",
    "neovascularisation",
    "preretinal haemorrhage",
    "hard drusen",
    "soft drusen",
    "pigment changes",
    "geographic atrophy",
    "enlarged cup",
    "tessellation",
    "peripapillary atrophy",
    "arteriolar narrowing",
)
NO_FINDINGS = "normal fundus"
FINDING_VOCAB = (*FINDINGS, NO_FINDINGS)

MULTILABEL_CLASSES = ("diabetic retinopathy", DME, GLAUCOMA, AMD, MYOPIA, HYPERTENSIVE)
DR_GRADES = ("none", "mild", "moderate", "severe", "PDR")
GLAUCOMA_CLASSES = ("no glaucoma", "glaucoma")
TASK_SPECS = {
    "disease_multilabel": TaskSpec("multilabel", MULTILABEL_CLASSES),
    "dr_grade": TaskSpec("multiclass", DR_GRADES),
    "glaucoma": TaskSpec("multiclass", GLAUCOMA_CLASSES),
}

DEFAULT_PREVALENCE: dict[str, float] = {
    "mild_npdr": 0.15,
    "moderate_npdr": 0.15,
    "severe_npdr": 0.05,
    "pdr": 0.05,
    "dme": 0.10,
    "glaucoma": 0.17,
    "amd": 0.18,
    "myopia": 0.03,
    "hypertensive": 0.08,
}

#: difficulty options: name -> (default, min, max)
DIFFICULTY: dict[str, tuple[float, float, float]] = {
    "lesion_contrast": (1.0, 0.05, 5.0),
    "lesion_size": (1.0, 0.25, 4.0),
    "noise": (1.0, 0.0, 10.0),
    "blur": (1.0, 0.0, 5.0),
    "illumination": (1.0, 0.0, 3.0),
    "artifacts": (1.0, 0.0, 5.0),
}
SUPERSAMPLE_VALUES = (1, 2, 3, 4)

DEFAULTS: dict[str, Any] = {
    "size": 2500,
    "resolution": 64,
    "seed": 0,
    "val_fraction": 0.2,
    "test_size": 500,
    "prevalence": None,
    "cache_dir": None,
    "levels": None,
    "progress": True,
    "supersample": 1,
    **{k: v[0] for k, v in DIFFICULTY.items()},
}

PX = 2.0 / 64.0  # one 64-px pixel in normalised units

# lesion map channels
_RED, _YELLOW, _WHITE, _PALE, _PIGMENT, _DUST, _DRUSEN = range(7)
_N_MAPS = 7


# ======================================================================================================
# option validation
# ======================================================================================================
def _fail(option: str, allowed: str, value: Any) -> None:
    raise ValueError(f"fundus_synth: bad value {value!r} for option {option!r}; allowed: {allowed}")


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    bad_type = isinstance(value, bool) or not isinstance(value, (int, np.integer))
    if bad_type or value < lo or (hi is not None and value > hi):
        _fail(name, f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""), value)
    return int(value)


def _check_float(name: str, value: Any, lo: float, hi: float, hi_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        _fail(name, f"a number in [{lo}, {hi}{')' if hi_open else ']'}", value)
    v = float(value)
    if not (lo <= v <= hi) or (hi_open and v >= hi) or math.isnan(v):
        _fail(name, f"a number in [{lo}, {hi}{')' if hi_open else ']'}", value)
    return v


def check_prevalence(prevalence: dict[str, float] | None) -> dict[str, float]:
    """The full prevalence table: the defaults updated with ``prevalence`` (validated)."""
    prev = dict(DEFAULT_PREVALENCE)
    if prevalence is None:
        return prev
    if not isinstance(prevalence, dict):
        _fail("prevalence", f"None or a dict with keys {sorted(DEFAULT_PREVALENCE)}", prevalence)
    for k, v in prevalence.items():
        if k not in DEFAULT_PREVALENCE:
            raise ValueError(
                f"fundus_synth: unknown key {k!r} in option 'prevalence'; allowed keys: {sorted(DEFAULT_PREVALENCE)}"
            )
        prev[k] = _check_float(f"prevalence[{k!r}]", v, 0.0, 1.0)
    dr = prev["mild_npdr"] + prev["moderate_npdr"] + prev["severe_npdr"] + prev["pdr"]
    if dr > 1.0 + 1e-9:
        _fail("prevalence", "DR grade prevalences (mild_npdr + moderate_npdr + severe_npdr + pdr) summing to <= 1",
              prevalence)
    if prev["dme"] > prev["moderate_npdr"] + prev["severe_npdr"] + prev["pdr"] + 1e-9:
        _fail("prevalence", "'dme' <= moderate_npdr + severe_npdr + pdr (DME needs exudates: moderate DR or worse)",
              prevalence)
    return prev


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validate ``build``'s options; return the full, normalised option dict (defaults filled in)."""
    unknown = [k for k in options if k not in DEFAULTS]
    if unknown:
        raise ValueError(f"fundus_synth: unknown option(s) {unknown}; allowed options: {sorted(DEFAULTS)}")
    o = {**DEFAULTS, **options}
    o["size"] = _check_int("size", o["size"], 0)
    o["resolution"] = _check_int("resolution", o["resolution"], 16, 1024)
    o["seed"] = _check_int("seed", o["seed"], 0)
    o["val_fraction"] = _check_float("val_fraction", o["val_fraction"], 0.0, 1.0, hi_open=True)
    o["test_size"] = _check_int("test_size", o["test_size"], 0)
    if o["size"] + o["test_size"] == 0:
        _fail("size", "size + test_size >= 1", o["size"])
    o["prevalence"] = check_prevalence(o["prevalence"])
    cd = o["cache_dir"]
    if not (cd is None or cd is False or isinstance(cd, (str, os.PathLike))):
        _fail("cache_dir", "None (default location), False (no cache) or a directory path", cd)
    o["levels"] = level_subset("fundus_synth", o["levels"], LEVELS)
    if not isinstance(o["progress"], bool):
        _fail("progress", "True or False", o["progress"])
    if isinstance(o["supersample"], bool) or o["supersample"] not in SUPERSAMPLE_VALUES:
        _fail("supersample", f"one of {list(SUPERSAMPLE_VALUES)}", o["supersample"])
    o["supersample"] = int(o["supersample"])
    for k, (_, lo, hi) in DIFFICULTY.items():
        o[k] = _check_float(k, o[k], lo, hi)
    return o


# ======================================================================================================
# hidden variables -> lesions
# ======================================================================================================
_AGES = np.linspace(20.0, 90.0, 701)


def _age_glaucoma(a):
    return 0.4 + a / 50.0


def _age_amd(a):
    return np.exp((a - 60.0) / 9.0)


def _age_hyper(a):
    return 0.5 + a / 60.0


@functools.lru_cache(maxsize=64)
def _calibration(prev_items: tuple) -> dict[str, float]:
    """Normalising constants so that the age/co-occurrence-weighted probabilities hit the marginals."""
    p = dict(prev_items)
    dr = p["mild_npdr"] + p["moderate_npdr"] + p["severe_npdr"] + p["pdr"]
    c = {}
    c["glaucoma"] = p["glaucoma"] / (float(np.mean(_age_glaucoma(_AGES))) * (1 + 2.0 * p["myopia"]))
    c["amd"] = p["amd"] / float(np.mean(_age_amd(_AGES)))
    c["hypertensive"] = p["hypertensive"] / (float(np.mean(_age_hyper(_AGES))) * (1 + dr))
    w = p["moderate_npdr"] * 1.0 + (p["severe_npdr"] + p["pdr"]) * 1.6
    c["dme"] = p["dme"] / w if w > 0 else 0.0
    c["dr"] = dr
    return c


def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


class _Geom:
    """Per-image anatomy: field, disc, fovea, local axes, and helpers to sample positions."""

    def __init__(self, rng: np.random.Generator):
        self.c0 = rng.uniform(-0.04, 0.04, 2)
        self.rf = rng.uniform(0.90, 0.96)
        self.eye = "OD" if rng.random() < 0.5 else "OS"
        side = 1.0 if self.eye == "OD" else -1.0  # disc on the right for OD
        alpha = rng.uniform(-0.15, 0.15)
        R = _rot(alpha)
        self.rd = rng.uniform(0.125, 0.15)
        self.rdv = self.rd * rng.uniform(1.05, 1.15)
        self.dd = 2.0 * self.rd
        self.disc = self.c0 + R @ np.array([side * rng.uniform(0.39, 0.45), rng.uniform(-0.04, 0.03)])
        self.fovea = self.disc + R @ np.array([-side * 2.5 * self.dd, 0.3 * self.rd])
        et = self.fovea - self.disc
        self.et = et / np.linalg.norm(et)  # temporal unit vector
        es = np.array([self.et[1], -self.et[0]])
        if es[1] > 0:
            es = -es
        self.es = es  # superior unit vector (image up)

    def quadrant(self, p: np.ndarray) -> np.ndarray:
        """Quadrant index per point: 0 superotemporal, 1 superonasal, 2 inferotemporal, 3 inferonasal."""
        d = np.atleast_2d(p) - self.fovea
        sup = d @ self.es > 0
        tem = d @ self.et > 0
        return np.where(sup, np.where(tem, 0, 1), np.where(tem, 2, 3))

    def in_field(self, p: np.ndarray, frac: float = 0.88) -> np.ndarray:
        return np.linalg.norm(p - self.c0, axis=-1) < frac * self.rf

    def off_disc(self, p: np.ndarray, k: float = 1.5) -> np.ndarray:
        return np.linalg.norm(p - self.disc, axis=-1) > k * self.rd

    def sample(self, rng, n: int, ok, around=None, rmax: float = 1.0, rmin: float = 0.0) -> np.ndarray:
        """``n`` points uniformly in the field (or in an annulus ``rmin..rmax`` around ``around``) that pass ``ok``."""
        out = np.zeros((0, 2))
        for _ in range(50):
            if len(out) >= n:
                break
            m = max(4 * n, 16)
            if around is None:
                r = self.rf * np.sqrt(rng.random(m))
                c = self.c0
            else:
                r = np.sqrt(rng.uniform(rmin**2, rmax**2, m))
                c = around
            t = rng.uniform(0, 2 * np.pi, m)
            p = c + np.stack([r * np.cos(t), r * np.sin(t)], 1)
            keep = self.in_field(p) & ok(p)
            out = np.concatenate([out, p[keep]])
        if len(out) < n:  # pragma: no cover - regions are never that small
            raise RuntimeError("fundus_synth: could not place lesions")
        return out[:n]


def _sample_state(rng: np.random.Generator, prev: dict[str, float]) -> dict[str, Any]:
    """Hidden variables and which disease processes are on (before drawing lesions)."""
    cal = _calibration(tuple(sorted(prev.items())))
    age = float(rng.uniform(20.0, 90.0))
    u = rng.random(8)
    myopia = bool(u[0] < prev["myopia"])
    # DR grade
    cum = np.cumsum([prev["mild_npdr"], prev["moderate_npdr"], prev["severe_npdr"], prev["pdr"]])
    grade = int(np.searchsorted(cum, u[1], side="right")) + 1
    grade = grade if grade <= 4 else 0
    dme = False
    if grade >= 2:
        w = 1.0 if grade == 2 else 1.6
        dme = bool(u[2] < min(1.0, cal["dme"] * w))
    glaucoma = bool(u[3] < min(1.0, cal["glaucoma"] * _age_glaucoma(age) * (3.0 if myopia else 1.0)))
    amd = bool(u[4] < min(1.0, cal["amd"] * _age_amd(age)))
    hyper = bool(u[5] < min(1.0, cal["hypertensive"] * _age_hyper(age) * (2.0 if grade else 1.0)))
    return dict(age=age, myopia=myopia, grade=grade, dme=dme, glaucoma=glaucoma, amd=amd, hypertensive=hyper)


#: look of each lesion: (sigma min, sigma max) in 64-px pixels (times ``lesion_size``), (amplitude min, max)
#: (times ``lesion_contrast``; the lesion maps are clipped to [0, 1] after stamping)
LESION_LOOK: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "microaneurysms": ((0.50, 0.70), (0.7, 1.0)),
    "dot-blot haemorrhages": ((1.3, 2.4), (1.1, 1.4)),
    "flame haemorrhages": ((2.6, 4.2), (1.1, 1.4)),
    "flame haemorrhages (width)": ((0.7, 1.0), (1.0, 1.0)),
    "hard exudates": ((0.7, 1.2), (1.05, 1.4)),
    "cotton-wool spots": ((1.5, 2.6), (1.0, 1.4)),
    "preretinal haemorrhage": ((4.0, 6.0), (1.25, 1.4)),
    "hard drusen": ((0.40, 0.55), (0.35, 0.55)),
    "soft drusen": ((1.3, 2.1), (0.75, 1.25)),
    "pigment changes": ((0.8, 1.4), (0.85, 1.25)),
    "geographic atrophy": ((3.0, 4.5), (1.0, 1.3)),
}


def _size(rng, kind: str, scale: float) -> float:
    lo, hi = LESION_LOOK[kind][0]
    return rng.uniform(lo, hi) * PX * scale


def _amp(rng, kind: str, contrast: float) -> float:
    lo, hi = LESION_LOOK[kind][1]
    return rng.uniform(lo, hi) * contrast


def _lesion(kind, p, sx, sy=None, ang=0.0, amp=1.0, chan=_RED, power=2.0):
    return {
        "kind": kind,
        "x": float(p[0]),
        "y": float(p[1]),
        "sx": float(sx),
        "sy": float(sx if sy is None else sy),
        "ang": float(ang),
        "amp": float(amp),
        "chan": int(chan),
        "power": float(power),
    }


def _vessel_paths(rng, g: _Geom):
    """Main vessels and branches as lists of polylines (arrays of points), with kind and weight.

    Returns (points [M,2], weight [M], is_vein [M]) sampled every ``step`` units, and the main-vessel
    polylines (for flame haemorrhages / NVE placement)."""
    step = 0.012
    # main vessels: (theta0, theta_end, decay length, length, weight, vein); theta relaxes from theta0 to
    # theta_end over the decay length (the arcades leave the disc upwards/downwards and turn temporally)
    specs = []
    for sgn in (1.0, -1.0):  # superior / inferior
        th = rng.uniform(1.15, 1.45)
        te = rng.uniform(-0.25, 0.1)
        lam = rng.uniform(0.3, 0.45)
        specs.append((sgn * th, sgn * te, lam, rng.uniform(1.35, 1.6), 1.0, True))
        specs.append((sgn * (th - rng.uniform(0.1, 0.25)), sgn * (te + rng.uniform(-0.1, 0.15)),
                      lam * rng.uniform(0.85, 1.15), rng.uniform(1.3, 1.55), 1.0, False))
        thn = math.pi - rng.uniform(0.7, 1.1)
        ten = thn + rng.uniform(-0.2, 0.4)
        specs.append((sgn * thn, sgn * ten, 0.5, rng.uniform(0.75, 1.0), 0.8, True))
        specs.append((sgn * (thn + rng.uniform(0.1, 0.25)), sgn * (ten + rng.uniform(-0.1, 0.2)), 0.5,
                      rng.uniform(0.7, 0.95), 0.8, False))
        t0 = rng.uniform(0.15, 0.5)
        specs.append((sgn * t0, sgn * (t0 + rng.uniform(-0.3, 0.3)), 0.3, rng.uniform(0.25, 0.4), 0.45,
                      bool(rng.random() < 0.5)))
    th0 = np.array([s[0] for s in specs])
    the = np.array([s[1] for s in specs])
    lam = np.array([s[2] for s in specs])
    L = np.array([s[3] for s in specs])
    w0 = np.array([s[4] for s in specs])
    vein = np.array([s[5] for s in specs])
    d0 = np.cos(th0)[:, None] * g.et + np.sin(th0)[:, None] * g.es
    start = g.disc + d0 * (0.35 * g.rd) + rng.normal(0, 0.1 * g.rd, (len(specs), 2))
    pm, tm, vm = _walk(rng, start, th0, the, lam, L, step, g)
    # branches: 1-3 per main vessel longer than 0.5 units, vectorised
    nb = rng.integers(1, 4, len(L)) * (L > 0.5)
    parent = np.repeat(np.arange(len(L)), nb)
    B = len(parent)
    n_par = np.floor(L[parent] / step).astype(int)
    frac = rng.uniform(0.2, 0.85, B)
    j = (frac * n_par).astype(int)
    tb = tm[parent, j] + np.where(rng.random(B) < 0.5, -1.0, 1.0) * rng.uniform(0.5, 1.0, B)
    the_b = tb + rng.uniform(-0.4, 0.4, B)
    Lb = rng.uniform(0.2, 0.55, B)
    wb = w0[parent] * rng.uniform(0.5, 0.7, B) * (1 - 0.5 * frac)
    pb, _, vb = _walk(rng, pm[parent, j], tb, the_b, np.full(B, 0.3), Lb, step, g)
    taper_m = w0[:, None] * (1.0 - 0.55 * np.arange(pm.shape[1])[None, :] * step / L[:, None])
    taper_b = wb[:, None] * (1.0 - 0.55 * np.arange(pb.shape[1])[None, :] * step / Lb[:, None])
    P = np.concatenate([pm[vm], pb[vb]])
    W = np.concatenate([taper_m[vm], taper_b[vb]])
    V = np.concatenate([np.broadcast_to(vein[:, None], vm.shape)[vm],
                        np.broadcast_to(vein[parent][:, None], vb.shape)[vb]])
    keep = np.linalg.norm(P - g.c0, axis=1) < g.rf
    main_polys = [pm[i, vm[i]] for i in range(len(L)) if L[i] > 0.5]
    return P[keep], W[keep], V[keep], main_polys


def _walk(rng, start, th0, the, lam, L, step, g: _Geom):
    """Random-walk curves, vectorised over curves: direction angle theta (measured from the temporal axis
    toward the superior axis) relaxes from ``th0`` to ``the`` over the length ``lam``, plus a random walk.
    Returns points [V, T, 2], angles [V, T] and the valid mask [V, T] (arc length < L)."""
    V = len(th0)
    T = max(int(np.ceil(L.max() / step)) if V else 1, 2)
    s = np.arange(T) * step
    noise = np.cumsum(rng.normal(0.0, 0.05, (V, T)), axis=1)
    th = the[:, None] + (th0 - the)[:, None] * np.exp(-s[None, :] / lam[:, None]) + noise
    c = np.cos(th)
    sn = np.sin(th)
    dxy = np.stack([c * g.et[0] + sn * g.es[0], c * g.et[1] + sn * g.es[1]], -1)
    pts = start[:, None, :] + np.cumsum(dxy * step, axis=1) - dxy[:, :1] * step
    valid = s[None, :] < L[:, None]
    return pts, th, valid


def _draw_lesions(rng, g: _Geom, st: dict, d: dict, main_polys) -> tuple[list[dict], dict]:
    """All lesion instances for the hidden state ``st`` (sizes/contrasts scaled by difficulty ``d``)."""
    S = d["lesion_size"]
    C = d["lesion_contrast"]
    L: list[dict] = []
    extra: dict[str, Any] = {}
    grade = st["grade"]
    fov, dd = g.fovea, g.dd

    def near_fovea(lo, hi):
        def ok(p):
            r = np.linalg.norm(p - fov, axis=-1)
            return (r >= lo * dd) & (r < hi * dd) & g.off_disc(p)

        return ok

    # --- diabetic retinopathy ---------------------------------------------------------------------------
    if grade:
        n_ma = int(rng.integers(1, 6)) if grade == 1 else int(rng.integers(2, 9))
        for p in g.sample(rng, n_ma, near_fovea(0.15, 2.0)):
            L.append(_lesion("microaneurysms", p, _size(rng, "microaneurysms", S), amp=_amp(rng, "microaneurysms", C)))
        haem_q: list[int] = []
        exudates = False
        if grade == 2:
            has_h = rng.random() < 0.75
            exudates = (not has_h) or rng.random() < 0.5 or st["dme"]
            if has_h:
                nq = int(rng.integers(1, 3))
                qs = rng.choice(4, nq, replace=False)
                total = int(rng.integers(nq, 6))
                haem_q = list(rng.choice(qs, total)) if total > nq else list(qs)
                haem_q = sorted(set(qs.tolist())) + haem_q[: max(0, total - nq)]
        elif grade == 3:
            for q in range(4):
                haem_q += [q] * int(rng.integers(2, 5))
            exudates = rng.random() < 0.5 or st["dme"]
        elif grade == 4:
            nq = int(rng.integers(2, 5))
            for q in rng.choice(4, nq, replace=False):
                haem_q += [int(q)] * int(rng.integers(1, 4))
            exudates = rng.random() < 0.4 or st["dme"]
        for q in haem_q:
            p = g.sample(rng, 1, lambda p, q=q: (g.quadrant(p) == q) & g.off_disc(p)
                         & (np.linalg.norm(p - fov, axis=-1) > 0.25 * dd))[0]
            s = _size(rng, "dot-blot haemorrhages", S)
            L.append(_lesion("dot-blot haemorrhages", p, s, s * rng.uniform(0.8, 1.0), rng.uniform(0, np.pi),
                             _amp(rng, "dot-blot haemorrhages", C)))
        if exudates:
            n_ex = int(rng.integers(3, 11))
            if st["dme"]:
                if rng.random() < 0.5:  # circinate ring around the fovea
                    extra["exudate_ring"] = True
                    r0 = rng.uniform(0.35, 0.75) * dd
                    t = rng.uniform(0, 2 * np.pi) + np.sort(rng.uniform(0, rng.uniform(2.0, 2 * np.pi), n_ex))
                    pts = fov + np.stack([np.cos(t), np.sin(t)], 1) * (r0 + rng.normal(0, 0.05 * dd, n_ex))[:, None]
                else:
                    c = g.sample(rng, 1, near_fovea(0.1, 0.7))[0]
                    pts = c + rng.normal(0, 0.12 * dd, (n_ex, 2))
                # at least one exudate within 1 DD (the rule); keep them all within 1 DD
                dist = np.linalg.norm(pts - fov, axis=1)
                pts = np.where((dist > 0.95 * dd)[:, None], fov + (pts - fov) * (0.9 * dd / dist)[:, None], pts)
            else:
                c = g.sample(rng, 1, near_fovea(1.8, 2.9))[0]
                pts = c + rng.normal(0, 0.12 * dd, (n_ex, 2))
                dist = np.linalg.norm(pts - fov, axis=1)
                pts = np.where((dist < 1.55 * dd)[:, None], fov + (pts - fov) * (1.6 * dd / dist)[:, None], pts)
            for p in pts:
                L.append(_lesion("hard exudates", p, _size(rng, "hard exudates", S), amp=_amp(rng, "hard exudates", C),
                                 chan=_YELLOW, power=3.0))
        if grade == 4:
            nv = rng.random() < 0.85
            pre = (not nv) or rng.random() < 0.35
            if nv:
                at_disc = bool(rng.random() < 0.5) or not main_polys
                if at_disc:
                    c = g.disc + rng.normal(0, 0.3 * g.rd, 2)
                else:
                    poly = main_polys[int(rng.integers(len(main_polys)))]
                    c = poly[int(rng.uniform(0.3, 0.8) * len(poly))]
                extra["nv"] = {"x": float(c[0]), "y": float(c[1]), "at_disc": at_disc}
                L.append(_lesion("neovascularisation", c, 0.4 * dd, amp=C))
            if pre:
                p = g.sample(rng, 1, lambda p: (p[:, 1] - g.c0[1] > 0.35) & g.off_disc(p, 2.0))[0]
                sx = _size(rng, "preretinal haemorrhage", S)
                L.append(_lesion("preretinal haemorrhage", p, sx, sx * rng.uniform(0.55, 0.8), 0.0,
                                 _amp(rng, "preretinal haemorrhage", C)))
    # --- hypertensive retinopathy ---------------------------------------------------------------------
    if st["hypertensive"]:
        u = rng.random()
        n_fl = int(rng.integers(1, 5)) if u < 0.75 else 0
        n_cw = int(rng.integers(1, 5)) if (u > 0.3 or n_fl == 0) else 0
        for _ in range(n_fl):
            poly = main_polys[int(rng.integers(len(main_polys)))]
            dpol = np.linalg.norm(poly - g.disc, axis=1)
            idx = np.flatnonzero((dpol > 1.3 * g.rd) & (dpol < 1.6) & g.in_field(poly, 0.85))
            j = int(rng.choice(idx)) if len(idx) else len(poly) // 3
            j = min(max(j, 1), len(poly) - 2)
            tang = poly[j + 1] - poly[j - 1]
            ang = math.atan2(tang[1], tang[0])
            p = poly[j] + rng.normal(0, 0.3 * PX, 2)
            L.append(_lesion("flame haemorrhages", p, _size(rng, "flame haemorrhages", S),
                             _size(rng, "flame haemorrhages (width)", S), ang, _amp(rng, "flame haemorrhages", C)))
        for p in g.sample(rng, n_cw, near_fovea(0.4, 2.2)):
            L.append(_lesion("cotton-wool spots", p, _size(rng, "cotton-wool spots", S),
                             amp=_amp(rng, "cotton-wool spots", C), chan=_WHITE))
        L.append(_lesion("arteriolar narrowing", g.disc, 0.0, amp=0.0))
    # --- AMD / drusen ---------------------------------------------------------------------------------
    if st["amd"]:
        u = rng.random()
        stage = "early" if u < 0.6 else ("pigment" if u < 0.85 else "ga")
        if stage == "early" or rng.random() < 0.7:
            for p in g.sample(rng, int(rng.integers(3, 11)), near_fovea(0.0, 1.5)):
                L.append(_lesion("soft drusen", p, _size(rng, "soft drusen", S), amp=_amp(rng, "soft drusen", C),
                                 chan=_DRUSEN, power=2.0))
        if stage == "pigment":
            for p in g.sample(rng, int(rng.integers(2, 9)), near_fovea(0.0, 1.2)):
                L.append(_lesion("pigment changes", p, _size(rng, "pigment changes", S),
                                 amp=_amp(rng, "pigment changes", C), chan=_PIGMENT))
        if stage == "ga":
            s = _size(rng, "geographic atrophy", S)
            L.append(_lesion("geographic atrophy", fov + rng.normal(0, 0.1 * dd, 2), s, s * rng.uniform(0.75, 1.0),
                             rng.uniform(0, np.pi), _amp(rng, "geographic atrophy", C), chan=_PALE, power=5.0))
    elif st["age"] > 50 and rng.random() < 0.25:
        for p in g.sample(rng, int(rng.integers(1, 5)), near_fovea(0.0, 1.0)):
            L.append(_lesion("hard drusen", p, _size(rng, "hard drusen", S), amp=_amp(rng, "hard drusen", C),
                             chan=_DRUSEN, power=3.0))
    # --- myopia: tessellation + PPA (benign alone) -----------------------------------------------------
    tess = st["myopia"] or rng.random() < 0.15
    ppa = st["myopia"] or rng.random() < (0.30 if st["glaucoma"] else 0.10)
    if tess and ppa and not st["myopia"]:
        if rng.random() < 0.5:
            tess = False
        else:
            ppa = False
    if tess:
        extra["tess_amp"] = float(C * rng.uniform(0.3, 0.6))
        L.append(_lesion("tessellation", g.c0, 0.0, amp=extra["tess_amp"]))
    if ppa:
        extra["ppa_width"] = float(rng.uniform(0.3, 0.9))
        L.append(_lesion("peripapillary atrophy", g.disc, extra["ppa_width"] * g.rd, amp=C))
    # --- glaucoma ----------------------------------------------------------------------------------------
    if st["glaucoma"]:
        L.append(_lesion("enlarged cup", g.disc, g.rd, amp=1.0))
    return L, extra


# ======================================================================================================
# rules: lesions -> diseases; findings -> text
# ======================================================================================================
def diagnose(lesions: Sequence[dict], cdr: float, fovea: Sequence[float], dd: float,
             quadrants: Sequence[int]) -> tuple[int, list[str]]:
    """Apply the disease rules of the module docstring to the drawn lesions.

    ``quadrants`` is the quadrant index of each lesion (0..3, see :meth:`_Geom.quadrant`).
    Returns ``(dr_grade, disease names in canonical order)``."""
    kinds = [les["kind"] for les in lesions]
    has = set(kinds)
    if "neovascularisation" in has or "preretinal haemorrhage" in has:
        grade = 4
    elif {q for k, q in zip(kinds, quadrants) if k == "dot-blot haemorrhages"} == {0, 1, 2, 3}:
        grade = 3
    elif "dot-blot haemorrhages" in has or "hard exudates" in has:
        grade = 2
    elif "microaneurysms" in has:
        grade = 1
    else:
        grade = 0
    out = [DR_GRADE_DISEASE[grade]] if grade else []
    fov = np.asarray(fovea, dtype=float)
    exudate_dist = [math.hypot(les["x"] - fov[0], les["y"] - fov[1]) for les in lesions if les["kind"] == "hard exudates"]
    if any(dist <= dd for dist in exudate_dist):
        out.append(DME)
    if cdr >= 0.6:
        out.append(GLAUCOMA)
    if has & {"soft drusen", "pigment changes", "geographic atrophy"}:
        out.append(AMD)
    if {"tessellation", "peripapillary atrophy"} <= has:
        out.append(MYOPIA)
    if has & {"flame haemorrhages", "cotton-wool spots"}:
        out.append(HYPERTENSIVE)
    return grade, out


_NUM = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
_QNAME = ("superotemporal", "superonasal", "inferotemporal", "inferonasal")


def _count(n: int, rng) -> str:
    if n == 1:
        opts = ["a single", "one", "an isolated"]
    elif n <= 3:
        opts = [_NUM[n], "a few"]
    elif n <= 7:
        opts = [_NUM[n], "several", "multiple"]
    else:
        opts = ["numerous", "many", "multiple"] + ([_NUM[n]] if n < len(_NUM) else [])
    return opts[int(rng.integers(len(opts)))]


def _pick(rng, opts):
    return opts[int(rng.integers(len(opts)))]


def _quads(qs: Sequence[int], rng) -> str:
    s = sorted(set(int(q) for q in qs))
    if len(s) == 4:
        return _pick(rng, ["in all four quadrants", "throughout all four quadrants", "in every quadrant"])
    names = [_QNAME[q] for q in s]
    if len(names) == 1:
        return f"in the {names[0]} quadrant"
    return "in the " + ", ".join(names[:-1]) + " and " + names[-1] + " quadrants"


def _pl(n: int, sing: str, plur: str) -> str:
    return sing if n == 1 else plur


def _sentence(kind: str, les: list[dict], qs: list[int], info: dict, rng) -> str:
    n = len(les)
    c = _count(n, rng)
    if kind == "microaneurysms":
        noun = _pl(n, "microaneurysm", "microaneurysms")
        where = "near the macula" if info["max_fovea_dist"][kind] < 1.0 else "in the posterior pole"
        return _pick(rng, [
            f"{c} {noun} {where}",
            f"{c} tiny red {_pl(n, 'dot', 'dots')} consistent with {noun} {where}",
            f"{noun.capitalize()} ({c}) {where}",
        ])
    if kind == "dot-blot haemorrhages":
        q = _quads(qs, rng)
        return _pick(rng, [
            f"{c} dot-blot {_pl(n, 'haemorrhage', 'haemorrhages')} {q}",
            f"{c} intraretinal {_pl(n, 'haemorrhage', 'haemorrhages')} {q}",
            f"{_pl(n, 'A blot haemorrhage', 'Blot haemorrhages')} {q} ({c})",
        ])
    if kind == "flame haemorrhages":
        return _pick(rng, [
            f"{c} flame-shaped {_pl(n, 'haemorrhage', 'haemorrhages')} along the vessels",
            f"{c} splinter {_pl(n, 'haemorrhage', 'haemorrhages')} near the arcades",
            f"{c} flame {_pl(n, 'haemorrhage', 'haemorrhages')} in the nerve fibre layer",
        ])
    if kind == "hard exudates":
        if info["dme"]:
            where = _pick(rng, ["within one disc diameter of the fovea", "at the macula",
                                "involving the centre of the macula"])
            if info.get("exudate_ring"):
                return _pick(rng, ["a circinate ring of hard exudates around the fovea",
                                   f"{c} hard exudates arranged in a ring {where}"])
        else:
            where = _pick(rng, ["away from the fovea", "outside the macula"]) + " " + _quads(qs, rng)
        return _pick(rng, [f"{c} hard {_pl(n, 'exudate', 'exudates')} {where}",
                           f"{c} yellow lipid {_pl(n, 'deposit', 'deposits')} {where}"])
    if kind == "cotton-wool spots":
        return _pick(rng, [
            f"{c} cotton-wool {_pl(n, 'spot', 'spots')} in the posterior pole",
            f"{c} fluffy white {_pl(n, 'patch', 'patches')} near the arcades",
            f"{c} soft {_pl(n, 'exudate', 'exudates')} (cotton-wool {_pl(n, 'spot', 'spots')})",
        ])
    if kind == "neovascularisation":
        if info["nv_at_disc"]:
            return _pick(rng, ["neovascularisation at the disc", "new vessels on the optic disc",
                               "a tuft of fine new vessels at the disc"])
        q = _quads(qs, rng)
        return _pick(rng, [f"neovascularisation elsewhere {q}", f"fine new vessels along the arcade {q}"])
    if kind == "preretinal haemorrhage":
        return _pick(rng, ["a boat-shaped preretinal haemorrhage in the inferior field",
                           "a preretinal haemorrhage inferiorly",
                           "a large dark haemorrhage with a fluid level in the lower fundus"])
    if kind == "hard drusen":
        return _pick(rng, [f"{c} small hard {_pl(n, 'druse', 'drusen')} at the macula",
                           f"{c} tiny yellow {_pl(n, 'dot', 'dots')} (hard drusen) near the fovea"])
    if kind == "soft drusen":
        return _pick(rng, [f"{c} soft drusen at the macula",
                           f"{c} pale yellow {_pl(n, 'deposit', 'deposits')} (soft drusen) around the fovea",
                           f"soft drusen ({c}) in the macular area"])
    if kind == "pigment changes":
        return _pick(rng, ["mottled macular pigment changes",
                           f"{c} dark pigment {_pl(n, 'clump', 'clumps')} at the macula",
                           "pigmentary changes in the macula"])
    if kind == "geographic atrophy":
        return _pick(rng, ["a sharply demarcated pale patch of geographic atrophy at the fovea",
                           "central geographic atrophy", "a well-defined atrophic area at the macula"])
    if kind == "enlarged cup":
        cdr = info["cdr"]
        return _pick(rng, [
            f"enlarged optic cup with a cup-to-disc ratio of about {cdr:.1f}",
            f"cup-to-disc ratio {cdr:.1f} with inferior rim thinning",
            f"a large cup (vertical CDR about {cdr:.1f}) and a notched rim",
        ])
    if kind == "tessellation":
        return _pick(rng, ["a tessellated fundus", "visible choroidal vessels (tessellation) across the fundus",
                           "tigroid fundus with a visible choroidal pattern"])
    if kind == "peripapillary atrophy":
        return _pick(rng, ["peripapillary atrophy temporal to the disc",
                           "a pale crescent of peripapillary atrophy beside the disc",
                           "a temporal peripapillary atrophic crescent"])
    if kind == "arteriolar narrowing":
        return _pick(rng, ["generalised arteriolar narrowing", "narrowed, attenuated arterioles",
                           "thin arteries relative to the veins"])
    raise KeyError(kind)  # pragma: no cover


_NORMAL_SENTENCES = (
    "Clear optic disc boundaries, normal fundus colour, no apparent retinopathy.",
    "Healthy optic disc with a normal cup, normal vessels and a clear macula.",
    "No abnormal findings: the disc, the vessels and the macula look normal.",
    "Normal fundus with a well-defined disc and a normal foveal reflex area.",
)


def describe(lesions: Sequence[dict], quadrants: Sequence[int], info: dict, normal: bool,
             rng) -> tuple[str, tuple[str, ...]]:
    """The description text and its finding labels (canonical order)."""
    by_kind: dict[str, list[int]] = {}
    for i, les in enumerate(lesions):
        by_kind.setdefault(les["kind"], []).append(i)
    kinds = [k for k in FINDINGS if k in by_kind]
    sentences = []
    for k in kinds:
        idx = by_kind[k]
        s = _sentence(k, [lesions[i] for i in idx], [quadrants[i] for i in idx], info, rng)
        sentences.append(s[0].upper() + s[1:] + ".")
    if len(sentences) > 1 and rng.random() < 0.25:
        order = rng.permutation(len(sentences))
        sentences = [sentences[i] for i in order]
    if normal:
        sentences.insert(0, _pick(rng, _NORMAL_SENTENCES))
    return " ".join(sentences), (tuple(kinds) if kinds else (NO_FINDINGS,))


# ======================================================================================================
# rendering
# ======================================================================================================
@functools.lru_cache(maxsize=16)
def _grid(S: int):
    c = ((np.arange(S, dtype=np.float32) + 0.5) / S) * 2.0 - 1.0
    return c  # same for x and y


@functools.lru_cache(maxsize=16)
def _interp_matrix(S: int, k: int) -> np.ndarray:
    """(S, k) bilinear interpolation matrix from a k-point coarse grid to S pixels."""
    pos = (np.arange(S) + 0.5) / S * (k - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, k - 2)
    f = pos - i0
    M = np.zeros((S, k), dtype=np.float32)
    M[np.arange(S), i0] = 1 - f
    M[np.arange(S), i0 + 1] = f
    return M


def _coarse_noise(rng, S: int, k: int) -> np.ndarray:
    M = _interp_matrix(S, k)
    return M @ rng.standard_normal((k, k)).astype(np.float32) @ M.T


def _to_px(v, S):
    return (np.asarray(v) + 1.0) * 0.5 * S - 0.5


def _stamp(maps: np.ndarray, S: int, les: list[dict]) -> None:
    """Add rotated (super-)Gaussian blobs to ``maps`` (n_maps, S, S), batched by window size."""
    if not les:
        return
    cx = _to_px(np.array([l_["x"] for l_ in les]), S)
    cy = _to_px(np.array([l_["y"] for l_ in les]), S)
    sx = np.maximum(np.array([l_["sx"] for l_ in les]) * S / 2, 0.3)
    sy = np.maximum(np.array([l_["sy"] for l_ in les]) * S / 2, 0.3)
    ang = np.array([l_["ang"] for l_ in les])
    amp = np.array([l_["amp"] for l_ in les])
    chan = np.array([l_["chan"] for l_ in les])
    pw = np.array([l_["power"] for l_ in les])
    ext = np.ceil(3.0 * np.maximum(sx, sy)).astype(int)
    flat = maps.reshape(-1)
    for W in np.unique(np.minimum(2 ** np.ceil(np.log2(np.maximum(ext, 1))).astype(int), S)):
        sel = np.flatnonzero(np.minimum(2 ** np.ceil(np.log2(np.maximum(ext, 1))).astype(int), S) == W)
        o = np.arange(-W, W + 1)
        X = np.floor(cx[sel]).astype(int)[:, None, None] + o[None, None, :]
        Y = np.floor(cy[sel]).astype(int)[:, None, None] + o[None, :, None]
        dx = X - cx[sel, None, None]
        dy = Y - cy[sel, None, None]
        c = np.cos(ang[sel])[:, None, None]
        s = np.sin(ang[sel])[:, None, None]
        a = (dx * c + dy * s) / sx[sel, None, None]
        b = (-dx * s + dy * c) / sy[sel, None, None]
        r2 = a * a + b * b
        g = amp[sel, None, None] * np.exp(-0.5 * r2 ** (pw[sel, None, None] / 2.0))
        valid = (X >= 0) & (X < S) & (Y >= 0) & (Y < S)
        idx = chan[sel, None, None] * (S * S) + np.clip(Y, 0, S - 1) * S + np.clip(X, 0, S - 1)
        flat += np.bincount(idx[valid], g[valid], minlength=flat.size).astype(np.float32)


def _splat(S: int, pts: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bilinear splat of weighted points into an S x S map."""
    px = _to_px(pts[:, 0], S)
    py = _to_px(pts[:, 1], S)
    x0 = np.floor(px).astype(int)
    y0 = np.floor(py).astype(int)
    fx = px - x0
    fy = py - y0
    out = np.zeros(S * S, dtype=np.float64)
    for ddx, ddy, ww in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xx = x0 + ddx
        yy = y0 + ddy
        ok = (xx >= 0) & (xx < S) & (yy >= 0) & (yy < S)
        out += np.bincount(yy[ok] * S + xx[ok], (w * ww)[ok], minlength=S * S)
    return out.reshape(S, S).astype(np.float32)


def _tangle(rng, c: np.ndarray, radius: float, n: int) -> np.ndarray:
    """Points of ``n`` short wiggly segments around ``c`` (neovascularisation)."""
    T = 24
    th = rng.uniform(0, 2 * np.pi, (n, 1)) + np.cumsum(rng.normal(0, 0.6, (n, T)), axis=1)
    step = radius / 10
    start = c + rng.normal(0, 0.35 * radius, (n, 2))
    pts = start[:, None, :] + np.cumsum(np.stack([np.cos(th), np.sin(th)], -1) * step, axis=1)
    d = pts - c
    r = np.linalg.norm(d, axis=-1, keepdims=True)
    pts = np.where(r > radius, c + d * (radius / np.maximum(r, 1e-9)), pts)  # keep inside the tuft
    return pts.reshape(-1, 2)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the last two axes (zero outside), a few shifted adds (cheaper than
    scipy at these sizes)."""
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    out = a * k[r]
    for t in range(1, r + 1):
        out[..., t:, :] += a[..., :-t, :] * k[r - t]
        out[..., :-t, :] += a[..., t:, :] * k[r + t]
    a = out
    out = a * k[r]
    for t in range(1, r + 1):
        out[..., :, t:] += a[..., :, :-t] * k[r - t]
        out[..., :, :-t] += a[..., :, t:] * k[r + t]
    return out


def _c(*rgb) -> np.ndarray:
    return np.array(rgb, dtype=np.float32)[:, None, None]


_COL = {
    "tess": _c(0.35, 0.6, 0.55),
    "macula": _c(0.55, 0.75, 0.7),
    "ppa": _c(0.92, 0.78, 0.58),
    "disc": _c(1.0, 0.80, 0.55),
    "cup": _c(1.0, 0.95, 0.86),
    "vein": _c(0.55, 0.85, 0.8),
    "artery": _c(0.3, 0.7, 0.65),
    _RED: _c(0.45, 0.85, 0.8),
    _YELLOW: _c(1.0, 0.88, 0.42),
    _DRUSEN: _c(0.95, 0.76, 0.45),
    _WHITE: _c(0.96, 0.92, 0.84),
    _PALE: _c(0.95, 0.78, 0.6),
    _PIGMENT: _c(0.75, 0.75, 0.65),
    _DUST: _c(1.0, 1.0, 1.0),
    "flare": _c(0.7, 0.6, 0.45),
}
_DARKEN = (_RED, _PIGMENT, _DUST)  # maps that darken (multiply); the others mix toward their colour
# findings drawn by dedicated code (texture, disc, vessels), not stamped as blobs
_NOT_STAMPED = ("neovascularisation", "tessellation", "peripapillary atrophy", "enlarged cup", "arteriolar narrowing")


def _sig(z):
    """1 / (1 + exp(z)), overflow-safe."""
    return 1.0 / (1.0 + np.exp(np.clip(z, -30.0, 30.0)))


def _render(rng, g: _Geom, st: dict, lesions: list[dict], extra: dict, vessels, cdr: float, d: dict, R: int,
            ss: int) -> np.ndarray:
    S = R * ss
    u = _grid(S)
    X = u[None, :]
    Y = u[:, None]
    px_scale = S / 64.0  # pixels per 64-px pixel
    ill = d["illumination"]
    f32 = np.float32

    # -- background (channel-first image, 3 x S x S) ------------------------------------------------------
    base = np.array([0.80, 0.36, 0.17], dtype=f32) * f32(rng.uniform(0.85, 1.1))
    base *= np.array([1.0, rng.uniform(0.85, 1.15), rng.uniform(0.8, 1.25)], dtype=f32)
    tex = 1.0 + 0.05 * _coarse_noise(rng, S, 6) + 0.02 * _coarse_noise(rng, S, 14)
    img = tex[None] * base[:, None, None]
    dxc = X - f32(g.c0[0])
    dyc = Y - f32(g.c0[1])
    r2 = (dxc * dxc + dyc * dyc) * f32(1.0 / (g.rf * g.rf))

    if "tess_amp" in extra:
        w1 = _coarse_noise(rng, S, 5)
        w2 = _coarse_noise(rng, S, 5)
        f = rng.uniform(26.0, 34.0)
        a1, a2 = rng.uniform(0, np.pi, 2)
        ph1, ph2 = f32(rng.uniform(0, 6.3)), f32(rng.uniform(0, 6.3))
        p1 = np.sin(f32(f) * (X * f32(math.cos(a1)) + Y * f32(math.sin(a1))) + 2.2 * w1 + ph1)
        p2 = np.sin(f32(0.8 * f) * (X * f32(math.cos(a2)) + Y * f32(math.sin(a2))) + 2.2 * w2 + ph2)
        pat = np.clip(0.5 * (p1 + p2), 0.0, 1.0) - f32(0.2)  # about zero-mean: texture, not a colour shift
        tw = f32(extra["tess_amp"]) * (0.45 + 0.55 * np.minimum(r2, 1.0)) * pat
        img *= 1.0 - tw * _COL["tess"]

    # -- macula -------------------------------------------------------------------------------------------
    sm = 0.55 * g.dd
    sf = 0.14 * g.dd
    ex = (u - f32(g.fovea[0])) ** 2
    ey = (u - f32(g.fovea[1])) ** 2
    mac = np.outer(np.exp(ey * f32(-0.5 / sm**2)), np.exp(ex * f32(-0.5 / sm**2))) * f32(rng.uniform(0.25, 0.4))
    mac += np.outer(np.exp(ey * f32(-0.5 / sf**2)), np.exp(ex * f32(-0.5 / sf**2))) * f32(rng.uniform(0.1, 0.25))
    img *= 1.0 - mac * _COL["macula"]

    # -- optic disc, cup, PPA (local window) ------------------------------------------------------------
    half = 2.2 * g.rdv
    on_cup = np.zeros((S, S), dtype=f32)
    j0 = max(int(_to_px(g.disc[0] - half, S)), 0)
    j1 = min(int(_to_px(g.disc[0] + half, S)) + 2, S)
    i0 = max(int(_to_px(g.disc[1] - half, S)), 0)
    i1 = min(int(_to_px(g.disc[1] + half, S)) + 2, S)
    if j1 > j0 and i1 > i0:
        lx = u[None, j0:j1] - f32(g.disc[0])
        ly = u[i0:i1, None] - f32(g.disc[1])
        soft = 0.35 * PX
        rho = np.sqrt((lx / f32(g.rd)) ** 2 + (ly / f32(g.rdv)) ** 2)
        disc = _sig((rho - 1.0) * f32(g.rd / soft))
        sub = img[:, i0:i1, j0:j1]
        if "ppa_width" in extra:
            w = extra["ppa_width"]
            cosang = (lx * f32(g.et[0]) + ly * f32(g.et[1])) / np.maximum(np.sqrt(lx * lx + ly * ly), f32(1e-6))
            sector = np.clip((cosang - 0.1) / 0.5, 0.0, 1.0)
            rout = 1.0 + f32(w) * sector
            ring = _sig((rho - rout) * f32(g.rd / soft)) * (1.0 - disc) * (sector > 0)
            border = np.exp(-0.5 * ((rho - rout) * f32(g.rd / (0.5 * PX))) ** 2) * (sector > 0.3)
            amp_ppa = f32(min(1.0, 0.75 * d["lesion_contrast"]))
            sub += (amp_ppa * ring) * (_COL["ppa"] - sub)
            sub *= 1.0 - f32(0.35 * min(1.0, d["lesion_contrast"])) * border
        disc_col = _COL["disc"] * f32(rng.uniform(0.82, 1.05))
        sub += disc * (disc_col - sub)
        # cup: vertical CDR = cdr, horizontal a little smaller, shifted temporally
        # (glaucoma: the cup is shifted inferiorly, a thinner inferior rim / notch)
        cdr_h = cdr * rng.uniform(0.8, 0.95)
        off = 0.12 * g.rd * g.et - (0.12 * g.rdv * g.es if cdr >= 0.6 else 0.0)
        rcup = np.sqrt(((lx - f32(off[0])) / f32(cdr_h * g.rd)) ** 2 + ((ly - f32(off[1])) / f32(cdr * g.rdv)) ** 2)
        cup = _sig((rcup - 1.0) * f32(cdr * g.rd / (0.45 * soft)))
        sub += (f32(rng.uniform(0.4, 0.85)) * cup) * (_COL["cup"] - sub)
        on_cup[i0:i1, j0:j1] = np.maximum(cup, 0.5 * disc)

    # -- vessels ---------------------------------------------------------------------------------------
    # a vein is ~1.0 64-px pixel wide, an artery ~0.75 (x0.55 when narrowed); the splatted centre line is
    # blurred and scaled so that its cross-section integrates to the vessel width
    P, W, V, _ = vessels
    step_px = 0.012 * S / 2.0
    wv = 1.0 * px_scale
    wa = 0.75 * px_scale * (0.55 if st["hypertensive"] else 1.0)
    sv = max(0.45 * px_scale, 0.45)
    vm = np.stack([_splat(S, P[V], W[V] * (wv * step_px)), _splat(S, P[~V], W[~V] * (wa * step_px))])
    vm = _blur(vm, sv)
    vm *= 1.0 - 0.6 * on_cup
    vcon = rng.uniform(0.8, 1.1)
    acon = rng.uniform(0.6, 0.8) * (0.8 if st["hypertensive"] else 1.0)
    img *= 1.0 - np.clip(vm[0] * f32(vcon), 0, 0.9) * _COL["vein"]
    img *= 1.0 - np.clip(vm[1] * f32(acon), 0, 0.9) * _COL["artery"]

    # -- lesions ---------------------------------------------------------------------------------------
    maps = np.zeros((_N_MAPS, S, S), dtype=f32)
    blobs = []
    for les in lesions:
        k = les["kind"]
        if k == "cotton-wool spots":
            for _ in range(3):
                q = dict(les)
                q["x"] += rng.normal(0, 0.6 * les["sx"])
                q["y"] += rng.normal(0, 0.6 * les["sx"])
                q["sx"] = les["sx"] * rng.uniform(0.5, 0.8)
                q["sy"] = q["sx"] * rng.uniform(0.6, 1.0)
                q["ang"] = rng.uniform(0, np.pi)
                q["amp"] = les["amp"] * 0.7
                blobs.append(q)
        elif k in _NOT_STAMPED:
            continue
        else:
            blobs.append(les)
    if rng.random() < 0.5:  # foveal reflex (anatomy, not a finding)
        blobs.append(_lesion("reflex", g.fovea + rng.normal(0, 0.2 * PX, 2), 0.45 * PX, amp=rng.uniform(0.2, 0.4),
                             chan=_WHITE))
    art = d["artifacts"]
    if rng.random() < min(1.0, 0.15 * art):  # nuisance: dust specks (grey), not a finding
        for p in g.sample(rng, int(rng.integers(1, 4)), lambda p: np.ones(len(p), bool)):
            blobs.append(_lesion("dust", p, rng.uniform(1.0, 2.0) * PX, amp=rng.uniform(0.15, 0.35), chan=_DUST))
    _stamp(maps, S, blobs)
    for les in lesions:
        if les["kind"] == "preretinal haemorrhage":  # flat top ("fluid level"): cut the upper part
            cy = _to_px(les["y"], S)
            sy = les["sy"] * S / 2
            rows = np.arange(S)
            top = _sig(-(rows - (cy - 0.3 * sy)) / 0.4)
            maps[_RED] *= np.where(np.abs(rows - cy) < 4 * sy, top, 1.0).astype(f32)[:, None]
    if "nv" in extra:
        nv = extra["nv"]
        pts = _tangle(rng, np.array([nv["x"], nv["y"]]), 0.4 * g.dd, int(rng.integers(6, 11)))
        k_nv = 0.5 * px_scale * (0.04 * g.dd * S / 2.0)
        nmap = _blur(_splat(S, pts, np.full(len(pts), k_nv)), max(0.35 * px_scale, 0.4))
        maps[_RED] += np.clip(nmap, 0, 1) * f32(0.8 * d["lesion_contrast"])
    used = {les["chan"] for les in blobs} | ({_RED} if "nv" in extra else set())
    for ch in sorted(used):
        m = np.clip(maps[ch], 0.0, 1.0)
        if ch in _DARKEN:
            img *= 1.0 - m * _COL[ch]
        else:
            img += m * (_COL[ch] - img)

    # -- illumination, artefacts, camera ---------------------------------------------------------------
    a = rng.uniform(0.2, 0.5) * min(ill, 2.0)
    phi = rng.uniform(0, 2 * np.pi)
    grad = rng.uniform(0.0, 0.15) * ill
    illum = 1.0 - f32(a) * np.minimum(r2, 1.2) + f32(grad) * (dxc * f32(math.cos(phi)) + dyc * f32(math.sin(phi)))
    if rng.random() < min(1.0, 0.12 * art):  # eyelash shadow
        sgn = 1.0 if rng.random() < 0.5 else -1.0
        edge = g.c0[1] + sgn * g.rf * rng.uniform(0.55, 0.8)
        illum = illum * (1.0 - f32(rng.uniform(0.3, 0.6)) * _sig(f32(-sgn / rng.uniform(0.03, 0.08)) * (Y - f32(edge))))
    img *= np.maximum(illum, 0.05)
    if rng.random() < min(1.0, 0.12 * art):  # flare at the edge
        t = rng.uniform(0, 2 * np.pi)
        fc = g.c0 + g.rf * np.array([math.cos(t), math.sin(t)])
        fs = rng.uniform(0.15, 0.3)
        k_fl = f32(-0.5 / fs**2)
        fl = np.outer(np.exp((u - f32(fc[1])) ** 2 * k_fl), np.exp((u - f32(fc[0])) ** 2 * k_fl))
        img += (fl * f32(rng.uniform(0.2, 0.45))) * _COL["flare"]
    gain = rng.uniform(1 - 0.25 * ill, 1 + 0.2 * ill)
    chg = (1.0 + rng.uniform(-0.1, 0.1, 3) * ill) * gain
    img *= chg.astype(f32)[:, None, None]
    gamma = rng.uniform(1 - 0.15 * min(ill, 1.0), 1 + 0.2 * min(ill, 1.0))
    np.clip(img, 0.0, 1.0, out=img)
    img **= f32(gamma)
    edge_soft = 0.6 * 2.0 / S
    mask = _sig((np.sqrt(r2) - 1.0) * f32(g.rf / edge_soft))
    img *= mask
    if ss > 1:
        img = img.reshape(3, R, ss, R, ss).mean(axis=(2, 4))
    sb = rng.uniform(0.0, 0.9) * d["blur"] * (R / 64.0)
    if sb > 0.15:
        img = _blur(img, sb)
    sn = rng.uniform(0.004, 0.03) * d["noise"]
    if sn > 0:  # uniform sensor noise with standard deviation sn
        img += (rng.random(img.shape, dtype=f32) - f32(0.5)) * f32(sn * math.sqrt(12.0))
    np.clip(img, 0.0, 1.0, out=img)
    return (img * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def draw_sample(rng: np.random.Generator, resolution: int = 64, prevalence: dict | None = None, supersample: int = 1,
                **difficulty) -> tuple[np.ndarray, dict]:
    """Draw one image and its ground truth from ``rng``.

    Returns ``(image, truth)``: ``image`` is ``resolution x resolution x 3`` uint8; ``truth`` is a dict with
    ``eye``, ``age``, ``field`` (centre x, y, radius), ``cdr``, ``disc`` (x, y, horizontal radius),
    ``fovea`` (x, y), ``dd``, ``lesions``
    (one dict per lesion instance: ``kind``, ``x``, ``y``, ``sx``, ``sy``, ``ang``, ``amp``, and
    ``quadrant``), ``dr_grade``, ``diseases``, ``findings`` (finding -> count), ``texts``, ``labels``,
    ``targets``. ``prevalence`` must be a full table (see :func:`check_prevalence`) or None."""
    prev = DEFAULT_PREVALENCE if prevalence is None else prevalence
    d = {k: float(difficulty.get(k, v[0])) for k, v in DIFFICULTY.items()}
    unknown = set(difficulty) - set(DIFFICULTY)
    if unknown:
        raise ValueError(f"fundus_synth: unknown difficulty option(s) {sorted(unknown)}; allowed: {sorted(DIFFICULTY)}")
    g = _Geom(rng)
    st = _sample_state(rng, prev)
    cdr = float(rng.uniform(0.6, 0.85) if st["glaucoma"] else rng.uniform(0.2, 0.55))
    vessels = _vessel_paths(rng, g)
    lesions, extra = _draw_lesions(rng, g, st, d, vessels[3])
    img = _render(rng, g, st, lesions, extra, vessels, cdr, d, resolution, supersample)
    quads = [int(q) for q in g.quadrant(np.array([[l_["x"], l_["y"]] for l_ in lesions]))] if lesions else []
    for les, q in zip(lesions, quads):
        les["quadrant"] = q
    grade, diseases = diagnose(lesions, cdr, g.fovea, g.dd, quads)
    normal = not diseases
    fov_dist: dict[str, float] = {}
    for les in lesions:
        dist = math.hypot(les["x"] - g.fovea[0], les["y"] - g.fovea[1]) / g.dd
        fov_dist[les["kind"]] = max(fov_dist.get(les["kind"], 0.0), dist)
    info = {
        "cdr": cdr,
        "dme": DME in diseases,
        "exudate_ring": extra.get("exudate_ring", False),
        "nv_at_disc": extra.get("nv", {}).get("at_disc", False),
        "max_fovea_dist": fov_dist,
    }
    description, finding_labels = describe(lesions, quads, info, normal, rng)
    category = "Normal" if normal else "Abnormal"
    disease_text = category + ", " + (", ".join(diseases) if diseases else HEALTHY)
    findings: dict[str, int] = {}
    for les in lesions:
        findings[les["kind"]] = findings.get(les["kind"], 0) + 1
    truth = {
        "eye": g.eye,
        "age": round(st["age"], 2),
        "field": [float(g.c0[0]), float(g.c0[1]), float(g.rf)],
        "cdr": round(cdr, 4),
        "disc": [float(g.disc[0]), float(g.disc[1]), float(g.rd)],
        "fovea": [float(g.fovea[0]), float(g.fovea[1])],
        "dd": float(g.dd),
        "lesions": lesions,
        "dr_grade": grade,
        "diseases": diseases,
        "findings": {k: findings[k] for k in FINDINGS if k in findings},
        "texts": {"category": category, "disease": disease_text, "description": description},
        "labels": {"category": (category,), "disease": tuple(diseases) if diseases else (HEALTHY,),
                   "description": finding_labels},
        "targets": {
            "disease_multilabel": (int(grade > 0), *(int(c in diseases) for c in MULTILABEL_CLASSES[1:])),
            "dr_grade": grade,
            "glaucoma": int(GLAUCOMA in diseases),
        },
    }
    return img, truth


def render(n: int, seed: int = 0, stream: int = 0, start: int = 0, resolution: int = 64, prevalence: dict | None = None,
           supersample: int = 1, progress: bool = False, **difficulty) -> tuple[np.ndarray, list[dict]]:
    """Draw images ``start .. start+n-1`` of seed stream ``(seed, stream)``: image ``i`` comes from
    ``np.random.default_rng([seed, stream, i])``. Returns ``(images [n, R, R, 3] uint8, truths)``."""
    prev = check_prevalence(prevalence)
    images = np.zeros((n, resolution, resolution, 3), dtype=np.uint8)
    truths = []
    it = range(n)
    if progress and n >= 500:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"fundus_synth: drawing (stream {stream})", leave=False, mininterval=1.0)
    for k in it:
        rng = np.random.default_rng([seed, stream, start + k])
        images[k], t = draw_sample(rng, resolution, prev, supersample, **difficulty)
        truths.append(t)
    return images, truths


# ======================================================================================================
# dataset
# ======================================================================================================
def _cache_key(o: dict) -> str:
    keyed = {k: v for k, v in o.items() if k not in ("cache_dir", "levels", "progress")}
    keyed["prevalence"] = sorted(o["prevalence"].items())
    keyed["version"] = GENERATOR_VERSION
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    env = os.environ.get("CONTRASTIVE_BENCH_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "contrastive-bench"
    return root / NAME


def cache_path(**options) -> Path | None:
    """Where ``build(**options)`` caches its data (None when caching is off)."""
    o = check_options(options)
    if o["cache_dir"] is False:
        return None
    d = default_cache_dir() if o["cache_dir"] is None else Path(o["cache_dir"]).expanduser()
    return d / f"{NAME}-{_cache_key(o)}.npz"


def _summary(t: dict) -> dict:
    return {
        "eye": t["eye"], "age": t["age"], "cdr": t["cdr"], "dr_grade": t["dr_grade"],
        "diseases": t["diseases"], "findings": t["findings"],
    }


def _generate(o: dict) -> tuple[np.ndarray, list[dict]]:
    diff = {k: o[k] for k in DIFFICULTY}
    n, nt, R = o["size"], o["test_size"], o["resolution"]
    common = dict(seed=o["seed"], resolution=R, prevalence=o["prevalence"], supersample=o["supersample"],
                  progress=o["progress"], **diff)
    img_dev, tr_dev = render(n, stream=0, **common)
    img_test, tr_test = render(nt, stream=1, **common)
    n_val = int(round(o["val_fraction"] * n))
    perm = np.random.default_rng([o["seed"], 2]).permutation(n)
    is_val = np.zeros(n, bool)
    is_val[perm[:n_val]] = True
    meta = []
    for i, t in enumerate(tr_dev):
        meta.append({"id": f"{NAME}-s{o['seed']}-dev{i:06d}", "split": "val" if is_val[i] else "train",
                     "texts": t["texts"], "labels": t["labels"], "targets": t["targets"], "truth": _summary(t)})
    for i, t in enumerate(tr_test):
        meta.append({"id": f"{NAME}-s{o['seed']}-test{i:06d}", "split": "test", "texts": t["texts"],
                     "labels": t["labels"], "targets": t["targets"], "truth": _summary(t)})
    return np.concatenate([img_dev, img_test]), meta


def _save(path: Path, images: np.ndarray, meta: list[dict]) -> None:
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, meta=blob)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load(path: Path) -> tuple[np.ndarray, list[dict]]:
    with np.load(path, allow_pickle=False) as z:
        images = z["images"]
        meta = json.loads(z["meta"].tobytes().decode("utf-8"))
    return images, meta


def build_with_truth(**options) -> tuple[MultiGranularDataset, list[dict]]:
    """Like :func:`build`, also returning a ground-truth summary per sample (same order): ``eye``, ``age``
    (the hidden variable), ``cdr``, ``dr_grade``, ``diseases``, ``findings`` (finding -> count)."""
    o = check_options(options)
    path = cache_path(**options)
    images = meta = None
    if path is not None and path.exists():
        try:
            images, meta = _load(path)
            logger.info("fundus_synth: loaded %d images from cache %s", len(meta), path)
        except Exception as e:  # a corrupt cache file is regenerated
            logger.warning("fundus_synth: ignoring unreadable cache %s (%s)", path, e)
            images = meta = None
    if images is None:
        logger.info("fundus_synth: drawing %d + %d images at %d px (seed %d)",
                    o["size"], o["test_size"], o["resolution"], o["seed"])
        images, meta = _generate(o)
        if path is not None:
            try:
                _save(path, images, meta)
                logger.info("fundus_synth: cached to %s", path)
            except OSError as e:
                logger.warning("fundus_synth: could not write cache %s (%s)", path, e)
    levels = o["levels"]
    samples = []
    for i, m in enumerate(meta):
        samples.append(Sample(
            id=m["id"],
            image=images[i],
            texts={g: m["texts"][g] for g in levels},
            labels={g: tuple(m["labels"][g]) for g in levels},
            targets={"disease_multilabel": tuple(int(v) for v in m["targets"]["disease_multilabel"]),
                     "dr_grade": int(m["targets"]["dr_grade"]), "glaucoma": int(m["targets"]["glaucoma"])},
            patient_id=m["id"],
            split=m["split"],
        ))
    vocab_all = {"category": ("Normal", "Abnormal"), "disease": DISEASE_VOCAB, "description": FINDING_VOCAB}
    ds = MultiGranularDataset(samples, levels, {g: vocab_all[g] for g in levels}, TASK_SPECS,
                              name=f"{NAME}(n={o['size']}+{o['test_size']}, {o['resolution']}px, seed={o['seed']})")
    return ds, [m["truth"] for m in meta]


def build(**options) -> MultiGranularDataset:
    """Build the ``fundus_synth`` dataset (see the module docstring for the rules).

    Options (defaults): ``size`` (2500: train + val images), ``resolution`` (64), ``seed`` (0),
    ``val_fraction`` (0.2), ``test_size`` (500), ``prevalence`` (None: the defaults; or a dict overriding
    some of ``DEFAULT_PREVALENCE``), ``cache_dir`` (None: default location; False: off; or a path),
    ``levels`` (None: all of ``LEVELS``), ``progress`` (True: tqdm bar for large draws), ``supersample``
    (1; 2-4 draws at a multiple of the resolution and averages down), and the difficulty multipliers
    ``lesion_contrast``, ``lesion_size``, ``noise``, ``blur``, ``illumination``, ``artifacts`` (all 1.0).
    Unknown options or bad values raise ``ValueError`` naming the option and the allowed values."""
    return build_with_truth(**options)[0]


# ======================================================================================================
# CLI: benchmark / preview
# ======================================================================================================
def _main(argv: Sequence[str] | None = None) -> None:
    import argparse
    import time

    ap = argparse.ArgumentParser(prog="python -m bench.data.fundus_synth", description=__doc__.split("\n")[0])
    ap.add_argument("--benchmark", action="store_true", help="print the drawing speed (images/s, one core)")
    ap.add_argument("--preview", metavar="PNG", help="write a grid of example images and print their texts")
    ap.add_argument("-n", type=int, default=1000, help="images to draw for --benchmark (default 1000)")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--supersample", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.benchmark:
        render(20, seed=args.seed, resolution=args.resolution, supersample=args.supersample)  # warm-up
        t0 = time.perf_counter()
        render(args.n, seed=args.seed, stream=7, resolution=args.resolution, supersample=args.supersample)
        dt = time.perf_counter() - t0
        print(f"fundus_synth: {args.n / dt:.0f} images/s at {args.resolution} px (supersample {args.supersample}, "
              f"{args.n} images in {dt:.2f} s, one process)")
    if args.preview:
        from PIL import Image

        k = 8
        imgs, truths = render(k * k, seed=args.seed, resolution=args.resolution, supersample=args.supersample)
        R = args.resolution
        grid = imgs.reshape(k, k, R, R, 3).transpose(0, 2, 1, 3, 4).reshape(k * R, k * R, 3)
        Image.fromarray(grid).save(args.preview)
        for i, t in enumerate(truths):
            print(f"[{i // k},{i % k}] {t['texts']['disease']} | {t['texts']['description']}")
    if not (args.benchmark or args.preview):
        ap.print_help()


if __name__ == "__main__":
    _main()
