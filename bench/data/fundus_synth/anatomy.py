"""Anatomy of one image: the field of view, the eye, the optic disc and fovea (:class:`Geometry`, with the
quadrants and the position samplers lesions use), and the vessel tree (:func:`vessel_paths`).

Coordinates and rules: package docstring (``Coordinates``, ``Anatomy``).
"""

from __future__ import annotations

import math

import numpy as np

PX = 2.0 / 64.0  # one 64-px pixel in normalised units

#: the field-of-view radius range of the pretraining camera (a variant's camera may set another)
DEFAULT_FOV = (0.90, 0.96)


def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


class Geometry:
    """Per-image anatomy: field, disc, fovea, local axes, and helpers to sample positions."""

    def __init__(self, rng: np.random.Generator, fov: tuple[float, float] = DEFAULT_FOV):
        self.c0 = rng.uniform(-0.04, 0.04, 2)
        self.rf = rng.uniform(fov[0], fov[1])
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



def vessel_paths(rng, g: Geometry):
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


def _walk(rng, start, th0, the, lam, L, step, g: Geometry):
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

