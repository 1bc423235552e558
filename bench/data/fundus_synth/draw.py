"""Draw one image and its ground truth (:func:`draw_sample`), or a run of them from a seed stream
(:func:`render`): anatomy -> hidden disease state -> lesions -> pixels (through a camera) -> labels
(:func:`.diseases.diagnose`) -> texts (:func:`.text.describe`)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .anatomy import DEFAULT_FOV, Geometry, vessel_paths
from .diseases import DEFAULT_PREVALENCE, diagnose, sample_state
from .lesions import draw_lesions
from .options import DIFFICULTY, check_prevalence
from .paint import paint
from .text import DME, FINDINGS, describe, level_texts
from .variants import PRETRAIN, Camera, targets_of


def one_blas_thread():
    """A context in which BLAS uses one thread. Drawing does only tiny matrix products (the smooth noise
    fields); with several BLAS threads they cost more in thread wake-ups than in arithmetic (2.7x slower at
    224 px on a busy 2-core machine), and parallelism comes from worker processes instead. The products are
    split by output blocks, so the pixels are the same bits with any number of threads."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def draw_sample(rng: np.random.Generator, resolution: int = 64, prevalence: dict | None = None, supersample: int = 1,
                cameras: Sequence[Camera] | None = None, tasks: tuple[str, ...] = PRETRAIN.tasks,
                **difficulty) -> tuple[np.ndarray, dict]:
    """Draw one image and its ground truth from ``rng``.

    Returns ``(image, truth)``: ``image`` is ``resolution x resolution x 3`` uint8; ``truth`` is a dict with
    ``eye``, ``age``, ``field`` (centre x, y, radius), ``cdr``, ``disc`` (x, y, horizontal radius),
    ``fovea`` (x, y), ``dd``, ``lesions``
    (one dict per lesion instance: ``kind``, ``x``, ``y``, ``sx``, ``sy``, ``ang``, ``amp``, and
    ``quadrant``), ``dr_grade``, ``diseases``, ``findings`` (finding -> count), ``texts``, ``labels``,
    ``targets`` (of ``tasks``), and ``camera`` (its name) when ``cameras`` is given. ``prevalence`` must be a
    full table (see :func:`.options.check_prevalence`) or None. ``cameras``: None = the pretraining camera;
    one camera; or several, one drawn per image (the first draw from ``rng``)."""
    prev = DEFAULT_PREVALENCE if prevalence is None else prevalence
    d = {k: float(difficulty.get(k, v[0])) for k, v in DIFFICULTY.items()}
    unknown = set(difficulty) - set(DIFFICULTY)
    if unknown:
        raise ValueError(f"fundus_synth: unknown difficulty option(s) {sorted(unknown)}; allowed: {sorted(DIFFICULTY)}")
    cam = None
    if cameras is not None:
        cam = cameras[int(rng.integers(len(cameras)))] if len(cameras) > 1 else cameras[0]
        for k in ("noise", "blur", "lesion_contrast", "artifacts"):
            d[k] *= getattr(cam, k)
    g = Geometry(rng, DEFAULT_FOV if cam is None else cam.fov)
    st = sample_state(rng, prev)
    cdr = float(rng.uniform(0.6, 0.85) if st["glaucoma"] else rng.uniform(0.2, 0.55))
    vessels = vessel_paths(rng, g)
    lesions, extra = draw_lesions(rng, g, st, d, vessels[3])
    native = resolution if cam is None or cam.native == 1.0 else max(16, int(round(resolution * cam.native)))
    img = paint(rng, g, st, lesions, extra, vessels, cdr, d, native, supersample, cam)
    if native != resolution:
        img = _resize(img, resolution)
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
    texts, labels = level_texts(diseases, description, finding_labels)
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
        "texts": texts,
        "labels": labels,
        "targets": targets_of(tasks, grade, diseases),
    }
    if cam is not None:
        truth["camera"] = cam.name
    return img, truth


def render(n: int, seed: int = 0, stream: int = 0, start: int = 0, resolution: int = 64, prevalence: dict | None = None,
           supersample: int = 1, progress: bool = False, cameras: Sequence[Camera] | None = None,
           tasks: tuple[str, ...] = PRETRAIN.tasks, **difficulty) -> tuple[np.ndarray, list[dict]]:
    """Draw images ``start .. start+n-1`` of seed stream ``(seed, stream)``: image ``i`` comes from
    ``np.random.default_rng([seed, stream, i])``. Returns ``(images [n, R, R, 3] uint8, truths)``.
    ``prevalence`` may be partial (merged over the pretraining table)."""
    prev = check_prevalence(prevalence)
    images = np.zeros((n, resolution, resolution, 3), dtype=np.uint8)
    truths = []
    it = range(n)
    if progress and n >= 500:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"fundus_synth: drawing (stream {stream})", leave=False, mininterval=1.0)
    with one_blas_thread():
        for k in it:
            rng = np.random.default_rng([seed, stream, start + k])
            images[k], t = draw_sample(rng, resolution, prev, supersample, cameras, tasks, **difficulty)
            truths.append(t)
    return images, truths
