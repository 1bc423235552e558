"""Paint one fundus image from its drawn anatomy and lesions (:func:`paint`): background and choroid,
macula, optic disc and cup, vessels, lesion maps, then the camera (illumination, artefacts, colour, blur,
noise).

Rules: package docstring (``Anatomy``, the lesion table, ``Downstream variants``).
"""

from __future__ import annotations

import math

import numpy as np

from .anatomy import PX, Geometry
from .lesions import DUST, N_MAPS, RED, WHITE, lesion
from .raster import COL, DARKEN, NOT_STAMPED, blur, coarse_noise, grid, sig, splat, stamp, tangle, to_px

def paint(rng, g: Geometry, st: dict, lesions: list[dict], extra: dict, vessels, cdr: float, d: dict, R: int,
          ss: int, cam=None) -> np.ndarray:
    """The ``R x R x 3`` uint8 image (drawn at ``R * ss`` and averaged down). ``d``: the difficulty
    multipliers (the camera's already folded in); ``cam``: a :class:`.variants.Camera` for its systematic
    colour, vignetting and gamma (None: the pretraining camera, which has none)."""
    S = R * ss
    u = grid(S)
    X = u[None, :]
    Y = u[:, None]
    px_scale = S / 64.0  # pixels per 64-px pixel
    ill = d["illumination"]
    f32 = np.float32

    # -- background (channel-first image, 3 x S x S) ------------------------------------------------------
    base = np.array([0.80, 0.36, 0.17], dtype=f32) * f32(rng.uniform(0.85, 1.1))
    base *= np.array([1.0, rng.uniform(0.85, 1.15), rng.uniform(0.8, 1.25)], dtype=f32)
    tex = 1.0 + 0.05 * coarse_noise(rng, S, 6) + 0.02 * coarse_noise(rng, S, 14)
    img = tex[None] * base[:, None, None]
    dxc = X - f32(g.c0[0])
    dyc = Y - f32(g.c0[1])
    r2 = (dxc * dxc + dyc * dyc) * f32(1.0 / (g.rf * g.rf))

    if "tess_amp" in extra:
        w1 = coarse_noise(rng, S, 5)
        w2 = coarse_noise(rng, S, 5)
        f = rng.uniform(26.0, 34.0)
        a1, a2 = rng.uniform(0, np.pi, 2)
        ph1, ph2 = f32(rng.uniform(0, 6.3)), f32(rng.uniform(0, 6.3))
        p1 = np.sin(f32(f) * (X * f32(math.cos(a1)) + Y * f32(math.sin(a1))) + 2.2 * w1 + ph1)
        p2 = np.sin(f32(0.8 * f) * (X * f32(math.cos(a2)) + Y * f32(math.sin(a2))) + 2.2 * w2 + ph2)
        pat = np.clip(0.5 * (p1 + p2), 0.0, 1.0) - f32(0.2)  # about zero-mean: texture, not a colour shift
        tw = f32(extra["tess_amp"]) * (0.45 + 0.55 * np.minimum(r2, 1.0)) * pat
        img *= 1.0 - tw * COL["tess"]

    # -- macula -------------------------------------------------------------------------------------------
    sm = 0.55 * g.dd
    sf = 0.14 * g.dd
    ex = (u - f32(g.fovea[0])) ** 2
    ey = (u - f32(g.fovea[1])) ** 2
    mac = np.outer(np.exp(ey * f32(-0.5 / sm**2)), np.exp(ex * f32(-0.5 / sm**2))) * f32(rng.uniform(0.25, 0.4))
    mac += np.outer(np.exp(ey * f32(-0.5 / sf**2)), np.exp(ex * f32(-0.5 / sf**2))) * f32(rng.uniform(0.1, 0.25))
    img *= 1.0 - mac * COL["macula"]

    # -- optic disc, cup, PPA (local window) ------------------------------------------------------------
    half = 2.2 * g.rdv
    on_cup = np.zeros((S, S), dtype=f32)
    j0 = max(int(to_px(g.disc[0] - half, S)), 0)
    j1 = min(int(to_px(g.disc[0] + half, S)) + 2, S)
    i0 = max(int(to_px(g.disc[1] - half, S)), 0)
    i1 = min(int(to_px(g.disc[1] + half, S)) + 2, S)
    if j1 > j0 and i1 > i0:
        lx = u[None, j0:j1] - f32(g.disc[0])
        ly = u[i0:i1, None] - f32(g.disc[1])
        soft = 0.35 * PX
        rho = np.sqrt((lx / f32(g.rd)) ** 2 + (ly / f32(g.rdv)) ** 2)
        disc = sig((rho - 1.0) * f32(g.rd / soft))
        sub = img[:, i0:i1, j0:j1]
        if "ppa_width" in extra:
            w = extra["ppa_width"]
            cosang = (lx * f32(g.et[0]) + ly * f32(g.et[1])) / np.maximum(np.sqrt(lx * lx + ly * ly), f32(1e-6))
            sector = np.clip((cosang - 0.1) / 0.5, 0.0, 1.0)
            rout = 1.0 + f32(w) * sector
            ring = sig((rho - rout) * f32(g.rd / soft)) * (1.0 - disc) * (sector > 0)
            border = np.exp(-0.5 * ((rho - rout) * f32(g.rd / (0.5 * PX))) ** 2) * (sector > 0.3)
            amp_ppa = f32(min(1.0, 0.75 * d["lesion_contrast"]))
            sub += (amp_ppa * ring) * (COL["ppa"] - sub)
            sub *= 1.0 - f32(0.35 * min(1.0, d["lesion_contrast"])) * border
        disc_col = COL["disc"] * f32(rng.uniform(0.82, 1.05))
        sub += disc * (disc_col - sub)
        # cup: vertical CDR = cdr, horizontal a little smaller, shifted temporally
        # (glaucoma: the cup is shifted inferiorly, a thinner inferior rim / notch)
        cdr_h = cdr * rng.uniform(0.8, 0.95)
        off = 0.12 * g.rd * g.et - (0.12 * g.rdv * g.es if cdr >= 0.6 else 0.0)
        rcup = np.sqrt(((lx - f32(off[0])) / f32(cdr_h * g.rd)) ** 2 + ((ly - f32(off[1])) / f32(cdr * g.rdv)) ** 2)
        cup = sig((rcup - 1.0) * f32(cdr * g.rd / (0.45 * soft)))
        sub += (f32(rng.uniform(0.4, 0.85)) * cup) * (COL["cup"] - sub)
        on_cup[i0:i1, j0:j1] = np.maximum(cup, 0.5 * disc)

    # -- vessels ---------------------------------------------------------------------------------------
    # a vein is ~1.0 64-px pixel wide, an artery ~0.75 (x0.55 when narrowed); the splatted centre line is
    # blurred and scaled so that its cross-section integrates to the vessel width
    P, W, V, _ = vessels
    step_px = 0.012 * S / 2.0
    wv = 1.0 * px_scale
    wa = 0.75 * px_scale * (0.55 if st["hypertensive"] else 1.0)
    sv = max(0.45 * px_scale, 0.45)
    vm = np.stack([splat(S, P[V], W[V] * (wv * step_px)), splat(S, P[~V], W[~V] * (wa * step_px))])
    vm = blur(vm, sv)
    vm *= 1.0 - 0.6 * on_cup
    vcon = rng.uniform(0.8, 1.1)
    acon = rng.uniform(0.6, 0.8) * (0.8 if st["hypertensive"] else 1.0)
    img *= 1.0 - np.clip(vm[0] * f32(vcon), 0, 0.9) * COL["vein"]
    img *= 1.0 - np.clip(vm[1] * f32(acon), 0, 0.9) * COL["artery"]

    # -- lesions ---------------------------------------------------------------------------------------
    maps = np.zeros((N_MAPS, S, S), dtype=f32)
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
        elif k in NOT_STAMPED:
            continue
        else:
            blobs.append(les)
    if rng.random() < 0.5:  # foveal reflex (anatomy, not a finding)
        blobs.append(lesion("reflex", g.fovea + rng.normal(0, 0.2 * PX, 2), 0.45 * PX, amp=rng.uniform(0.2, 0.4),
                             chan=WHITE))
    art = d["artifacts"]
    if rng.random() < min(1.0, 0.15 * art):  # nuisance: dust specks (grey), not a finding
        for p in g.sample(rng, int(rng.integers(1, 4)), lambda p: np.ones(len(p), bool)):
            blobs.append(lesion("dust", p, rng.uniform(1.0, 2.0) * PX, amp=rng.uniform(0.15, 0.35), chan=DUST))
    stamp(maps, S, blobs)
    for les in lesions:
        if les["kind"] == "preretinal haemorrhage":  # flat top ("fluid level"): cut the upper part
            cy = to_px(les["y"], S)
            sy = les["sy"] * S / 2
            rows = np.arange(S)
            top = sig(-(rows - (cy - 0.3 * sy)) / 0.4)
            maps[RED] *= np.where(np.abs(rows - cy) < 4 * sy, top, 1.0).astype(f32)[:, None]
    if "nv" in extra:
        nv = extra["nv"]
        pts = tangle(rng, np.array([nv["x"], nv["y"]]), 0.4 * g.dd, int(rng.integers(6, 11)))
        k_nv = 0.5 * px_scale * (0.04 * g.dd * S / 2.0)
        nmap = blur(splat(S, pts, np.full(len(pts), k_nv)), max(0.35 * px_scale, 0.4))
        maps[RED] += np.clip(nmap, 0, 1) * f32(0.8 * d["lesion_contrast"])
    used = {les["chan"] for les in blobs} | ({RED} if "nv" in extra else set())
    for ch in sorted(used):
        m = np.clip(maps[ch], 0.0, 1.0)
        if ch in DARKEN:
            img *= 1.0 - m * COL[ch]
        else:
            img += m * (COL[ch] - img)

    # -- illumination, artefacts, camera ---------------------------------------------------------------
    a = rng.uniform(0.2, 0.5) * min(ill, 2.0)
    if cam is not None:
        a *= cam.vignetting
    phi = rng.uniform(0, 2 * np.pi)
    grad = rng.uniform(0.0, 0.15) * ill
    illum = 1.0 - f32(a) * np.minimum(r2, 1.2) + f32(grad) * (dxc * f32(math.cos(phi)) + dyc * f32(math.sin(phi)))
    if rng.random() < min(1.0, 0.12 * art):  # eyelash shadow
        sgn = 1.0 if rng.random() < 0.5 else -1.0
        edge = g.c0[1] + sgn * g.rf * rng.uniform(0.55, 0.8)
        illum = illum * (1.0 - f32(rng.uniform(0.3, 0.6)) * sig(f32(-sgn / rng.uniform(0.03, 0.08)) * (Y - f32(edge))))
    img *= np.maximum(illum, 0.05)
    if rng.random() < min(1.0, 0.12 * art):  # flare at the edge
        t = rng.uniform(0, 2 * np.pi)
        fc = g.c0 + g.rf * np.array([math.cos(t), math.sin(t)])
        fs = rng.uniform(0.15, 0.3)
        k_fl = f32(-0.5 / fs**2)
        fl = np.outer(np.exp((u - f32(fc[1])) ** 2 * k_fl), np.exp((u - f32(fc[0])) ** 2 * k_fl))
        img += (fl * f32(rng.uniform(0.2, 0.45))) * COL["flare"]
    gain = rng.uniform(1 - 0.25 * ill, 1 + 0.2 * ill)
    chg = (1.0 + rng.uniform(-0.1, 0.1, 3) * ill) * gain
    if cam is not None:
        chg = chg * np.asarray(cam.colour)
    img *= chg.astype(f32)[:, None, None]
    gamma = rng.uniform(1 - 0.15 * min(ill, 1.0), 1 + 0.2 * min(ill, 1.0))
    if cam is not None:
        gamma *= cam.gamma
    np.clip(img, 0.0, 1.0, out=img)
    img **= f32(gamma)
    edge_soft = 0.6 * 2.0 / S
    mask = sig((np.sqrt(r2) - 1.0) * f32(g.rf / edge_soft))
    img *= mask
    if ss > 1:
        img = img.reshape(3, R, ss, R, ss).mean(axis=(2, 4))
    sb = rng.uniform(0.0, 0.9) * d["blur"] * (R / 64.0)
    if sb > 0.15:
        img = blur(img, sb)
    sn = rng.uniform(0.004, 0.03) * d["noise"]
    if sn > 0:  # uniform sensor noise with standard deviation sn
        img += (rng.random(img.shape, dtype=f32) - f32(0.5)) * f32(sn * math.sqrt(12.0))
    np.clip(img, 0.0, 1.0, out=img)
    return (img * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)
