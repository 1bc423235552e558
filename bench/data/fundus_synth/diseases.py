"""Diseases: the prevalence table, the hidden variables that switch disease processes on (age, co-occurrence),
and the rules that derive the labels from the drawn lesions (:func:`diagnose`).

The rules are in the package docstring (``Diseases and the rules that define them``, ``Hidden variables,
prevalence and co-occurrence``); this module is what implements them.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import numpy as np

from .text import AMD, DME, DR_GRADE_DISEASE, GLAUCOMA, HYPERTENSIVE, MYOPIA

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


def sample_state(rng: np.random.Generator, prev: dict[str, float]) -> dict[str, Any]:
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


def diagnose(lesions: Sequence[dict], cdr: float, fovea: Sequence[float], dd: float,
             quadrants: Sequence[int]) -> tuple[int, list[str]]:
    """Apply the disease rules of the package docstring to the drawn lesions.

    ``quadrants`` is the quadrant index of each lesion (0..3, see :meth:`.anatomy.Geometry.quadrant`).
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

