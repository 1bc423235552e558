"""Lesions: their look (:data:`LESION_LOOK`), and where and how many are drawn for a hidden disease state
(:func:`draw_lesions`). Each lesion is a dict (``kind``, position, size, angle, amplitude, map channel).

Rules: package docstring (``Lesions ("findings"): look, place, count`` and the generator details in
``Diseases and the rules that define them``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .anatomy import PX, Geometry

# lesion map channels
RED, YELLOW, WHITE, PALE, PIGMENT, DUST, DRUSEN = range(7)
N_MAPS = 7

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


def lesion(kind, p, sx, sy=None, ang=0.0, amp=1.0, chan=RED, power=2.0):
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



def draw_lesions(rng, g: Geometry, st: dict, d: dict, main_polys) -> tuple[list[dict], dict]:
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
            L.append(lesion("microaneurysms", p, _size(rng, "microaneurysms", S), amp=_amp(rng, "microaneurysms", C)))
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
            L.append(lesion("dot-blot haemorrhages", p, s, s * rng.uniform(0.8, 1.0), rng.uniform(0, np.pi),
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
                L.append(lesion("hard exudates", p, _size(rng, "hard exudates", S), amp=_amp(rng, "hard exudates", C),
                                 chan=YELLOW, power=3.0))
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
                L.append(lesion("neovascularisation", c, 0.4 * dd, amp=C))
            if pre:
                p = g.sample(rng, 1, lambda p: (p[:, 1] - g.c0[1] > 0.35) & g.off_disc(p, 2.0))[0]
                sx = _size(rng, "preretinal haemorrhage", S)
                L.append(lesion("preretinal haemorrhage", p, sx, sx * rng.uniform(0.55, 0.8), 0.0,
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
            L.append(lesion("flame haemorrhages", p, _size(rng, "flame haemorrhages", S),
                             _size(rng, "flame haemorrhages (width)", S), ang, _amp(rng, "flame haemorrhages", C)))
        for p in g.sample(rng, n_cw, near_fovea(0.4, 2.2)):
            L.append(lesion("cotton-wool spots", p, _size(rng, "cotton-wool spots", S),
                             amp=_amp(rng, "cotton-wool spots", C), chan=WHITE))
        L.append(lesion("arteriolar narrowing", g.disc, 0.0, amp=0.0))
    # --- AMD / drusen ---------------------------------------------------------------------------------
    if st["amd"]:
        u = rng.random()
        stage = "early" if u < 0.6 else ("pigment" if u < 0.85 else "ga")
        if stage == "early" or rng.random() < 0.7:
            for p in g.sample(rng, int(rng.integers(3, 11)), near_fovea(0.0, 1.5)):
                L.append(lesion("soft drusen", p, _size(rng, "soft drusen", S), amp=_amp(rng, "soft drusen", C),
                                 chan=DRUSEN, power=2.0))
        if stage == "pigment":
            for p in g.sample(rng, int(rng.integers(2, 9)), near_fovea(0.0, 1.2)):
                L.append(lesion("pigment changes", p, _size(rng, "pigment changes", S),
                                 amp=_amp(rng, "pigment changes", C), chan=PIGMENT))
        if stage == "ga":
            s = _size(rng, "geographic atrophy", S)
            L.append(lesion("geographic atrophy", fov + rng.normal(0, 0.1 * dd, 2), s, s * rng.uniform(0.75, 1.0),
                             rng.uniform(0, np.pi), _amp(rng, "geographic atrophy", C), chan=PALE, power=5.0))
    elif st["age"] > 50 and rng.random() < 0.25:
        for p in g.sample(rng, int(rng.integers(1, 5)), near_fovea(0.0, 1.0)):
            L.append(lesion("hard drusen", p, _size(rng, "hard drusen", S), amp=_amp(rng, "hard drusen", C),
                             chan=DRUSEN, power=3.0))
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
        L.append(lesion("tessellation", g.c0, 0.0, amp=extra["tess_amp"]))
    if ppa:
        extra["ppa_width"] = float(rng.uniform(0.3, 0.9))
        L.append(lesion("peripapillary atrophy", g.disc, extra["ppa_width"] * g.rd, amp=C))
    # --- glaucoma ----------------------------------------------------------------------------------------
    if st["glaucoma"]:
        L.append(lesion("enlarged cup", g.disc, g.rd, amp=1.0))
    return L, extra

