"""Drawing primitives on pixel grids: coordinate grid, smooth noise, Gaussian blob stamping, bilinear
splatting of vessel points, neovascular tangles, separable blur, and the colours of the scene.

Used by :mod:`.paint`; nothing here draws from the labels.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .lesions import DRUSEN, DUST, PALE, PIGMENT, RED, WHITE, YELLOW

@functools.lru_cache(maxsize=16)
def grid(S: int):
    c = ((np.arange(S, dtype=np.float32) + 0.5) / S) * 2.0 - 1.0
    return c  # same for x and y


@functools.lru_cache(maxsize=16)
def interp_matrix(S: int, k: int) -> np.ndarray:
    """(S, k) bilinear interpolation matrix from a k-point coarse grid to S pixels."""
    pos = (np.arange(S) + 0.5) / S * (k - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, k - 2)
    f = pos - i0
    M = np.zeros((S, k), dtype=np.float32)
    M[np.arange(S), i0] = 1 - f
    M[np.arange(S), i0 + 1] = f
    return M


def coarse_noise(rng, S: int, k: int) -> np.ndarray:
    M = interp_matrix(S, k)
    return M @ rng.standard_normal((k, k)).astype(np.float32) @ M.T


def to_px(v, S):
    return (np.asarray(v) + 1.0) * 0.5 * S - 0.5


def stamp(maps: np.ndarray, S: int, les: list[dict]) -> None:
    """Add rotated (super-)Gaussian blobs to ``maps`` (n_maps, S, S), batched by window size."""
    if not les:
        return
    cx = to_px(np.array([l_["x"] for l_ in les]), S)
    cy = to_px(np.array([l_["y"] for l_ in les]), S)
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


def splat(S: int, pts: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bilinear splat of weighted points into an S x S map."""
    px = to_px(pts[:, 0], S)
    py = to_px(pts[:, 1], S)
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


def tangle(rng, c: np.ndarray, radius: float, n: int) -> np.ndarray:
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


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
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


COL = {
    "tess": _c(0.35, 0.6, 0.55),
    "macula": _c(0.55, 0.75, 0.7),
    "ppa": _c(0.92, 0.78, 0.58),
    "disc": _c(1.0, 0.80, 0.55),
    "cup": _c(1.0, 0.95, 0.86),
    "vein": _c(0.55, 0.85, 0.8),
    "artery": _c(0.3, 0.7, 0.65),
    RED: _c(0.45, 0.85, 0.8),
    YELLOW: _c(1.0, 0.88, 0.42),
    DRUSEN: _c(0.95, 0.76, 0.45),
    WHITE: _c(0.96, 0.92, 0.84),
    PALE: _c(0.95, 0.78, 0.6),
    PIGMENT: _c(0.75, 0.75, 0.65),
    DUST: _c(1.0, 1.0, 1.0),
    "flare": _c(0.7, 0.6, 0.45),
}
DARKEN = (RED, PIGMENT, DUST)  # maps that darken (multiply); the others mix toward their colour
# findings drawn by dedicated code (texture, disc, vessels), not stamped as blobs
NOT_STAMPED = ("neovascularisation", "tessellation", "peripapillary atrophy", "enlarged cup", "arteriolar narrowing")


def sig(z):
    """1 / (1 + exp(z)), overflow-safe."""
    return 1.0 / (1.0 + np.exp(np.clip(z, -30.0, 30.0)))

