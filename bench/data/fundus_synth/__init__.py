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

Downstream tasks (``TaskSpec``) of the pretraining corpus (the downstream variants: below)
=========================================================================================
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

Downstream variants (option ``variant``): datasets with a domain shift
=====================================================================
The MGLL paper pretrains on one corpus and evaluates on other datasets taken with other cameras. The
option ``variant`` picks what is drawn: ``pretrain`` (the default: the corpus described above, unchanged)
or one of four downstream datasets. Each downstream variant has its own camera (or cameras), prevalences,
seed streams, ids, downstream task(s) and split sizes; the anatomy, lesions, rules and texts are the same.

================ ========================== ======================================== ===========================
variant          stands in for              task(s) (classes)                        camera(s)
================ ========================== ======================================== ===========================
``pretrain``     MGLL-Fundus (pretraining)  ``disease_multilabel`` (6), ``dr_grade``  the pretraining camera
                                            (5), ``glaucoma`` (2)
``dr``           IDRiD, OIA-DDR             ``dr_grade`` (none, mild, moderate,      ``kowa``
                                            severe, PDR), ``dme`` (no DME, DME)
``glaucoma``     REFUGE, RIM-ONE            ``glaucoma`` (no glaucoma, glaucoma)     ``canon``
``amd``          ADAM                       ``amd`` (no AMD, AMD)                    ``zeiss``
``multidisease`` RFMiD                      ``disease_multilabel`` (the 6 classes)   ``topcon``, ``kowa``,
                                                                                     ``topcon_lowres`` (one per
                                                                                     image)
================ ========================== ======================================== ===========================

The cameras (``variants.Camera``; the pretraining camera is 1 everywhere, field radius U(0.90, 0.96)):

================= ============= ================== ========== ===== ===== ===== ======== ======
camera            field radius  colour gain R,G,B  vignetting gamma noise blur  lesion   native
                                                                                contrast res.
================= ============= ================== ========== ===== ===== ===== ======== ======
``kowa``          U(1.02, 1.10) 1.10, 0.97, 0.70   x0.6       x0.9  x1.5  x1    x0.85    1
``canon``         U(0.76, 0.84) 0.95, 0.78, 0.85   x1.4       x1.1  x1    x1.5  x1       1
``zeiss``         U(0.82, 0.88) 0.85, 1.10, 1.35   x1.25      x1    x2    x0.5  x0.9     0.6
``topcon``        U(0.93, 0.99) 1.04, 0.90, 1.15   x1.3       x1    x1.3  x1    x1       1
``topcon_lowres`` U(0.86, 0.92) 0.92, 1.00, 0.88   x1         x1    x2.5  x1.3  x1       0.5
================= ============= ================== ========== ===== ===== ===== ======== ======

- *field radius*: replaces U(0.90, 0.96); above 1 the field is cut by the image's top and bottom edges
  (as in IDRiD); all lesion placement rules stay relative to the field, disc and fovea.
- *colour gain*: multiplies the per-channel camera gain (white balance and brightness) of every image.
- *vignetting*: multiplies the radial illumination fall-off coefficient ``a``; *gamma*: multiplies the
  image gamma.
- *noise*, *blur*, *lesion contrast*: multiply the options of the same name (so ``noise=0`` still turns
  noise off); the camera's artefact rate is unchanged (x1).
- *native res.*: the sensor resolution relative to ``resolution``: the image is drawn at
  ``max(16, round(native x resolution))`` px and upsampled bilinearly (PIL) to ``resolution``.
- A variant with several cameras draws one per image, uniformly, as the first draw of the image's
  generator; the ground-truth summary records it (``camera``).

Measured shift at 64 px (1000 test images per variant; *field*: share of the image inside the visible
field; colour: mean red and the G/R, B/R ratios inside the field; *hf*: mean absolute Laplacian of the
green channel inside the field, i.e. noise and fine detail):

================ ======= ======== ====== ====== ======
variant          field   mean R   G/R    B/R    hf
================ ======= ======== ====== ====== ======
``pretrain``     0.73    141      0.45   0.23   4.9
``dr``           0.89    177      0.43   0.17   6.8
``glaucoma``     0.53    116      0.33   0.18   4.4
``amd``          0.63    109      0.59   0.37   2.6
``multidisease`` 0.80    149      0.44   0.21   5.1 (a mixture of three cameras)
================ ======= ======== ====== ====== ======

Prevalences (the ``prevalence`` table of each variant; ``data.prevalence`` overrides keys of it).
Measured on 6000 pool images (the age weighting clips AMD at probability 1, hence measured < nominal):

- ``dr``: mild 0.10, moderate 0.25, severe 0.12, PDR 0.13 (measured grades none/mild/moderate/severe/PDR
  0.41/0.10/0.25/0.12/0.12), DME 0.25; glaucoma 0.05, AMD 0.05, myopia 0.02, hypertensive 0.05.
- ``glaucoma``: glaucoma 0.30 (measured 0.30); DR 0.09, DME 0.01, AMD 0.08, myopia 0.05, hypertensive 0.04.
- ``amd``: AMD 0.30 (measured 0.24); DR 0.11, DME 0.02, glaucoma 0.06, myopia 0.04, hypertensive 0.05.
- ``multidisease`` (about a third normal, as in RFMiD): DR 0.38, DME 0.15, glaucoma 0.20, AMD 0.22
  (measured 0.20), myopia 0.12, hypertensive 0.15.

Never the same image or patient as the pretraining corpus: variant number ``c`` (pretrain 0, dr 1,
glaucoma 2, amd 3, multidisease 4) draws pool image ``i`` from ``default_rng([seed, 10c, i])``, test image
``i`` from ``default_rng([seed, 10c + 1, i])`` and its val permutation from ``default_rng([seed, 10c + 2])``,
so no two variants (whatever their seeds) share a generator; the benchmark uses stream 7, in no
variant's range. Sample ids and patient ids (one image per patient) carry the variant:
``fundus_synth-<variant>-s<seed>-dev000123`` / ``-test000045`` (the pretraining corpus keeps
``fundus_synth-s<seed>-...``), so an overlap check by id or patient tells them apart.

Split sizes and statistical power. Every downstream variant defaults to ``size=2500`` (2000 train, 500
val: enough for a linear probe or a fine-tune) and ``test_size=5000``. The test split is sized so that a
2-point AUC difference between two encoders scored on the same test images is detectable: with Hanley &
McNeil's (1982) variance of an AUC, ``var = (A(1-A) + (P-1)(Q1-A^2) + (N-1)(Q2-A^2)) / (P N)``,
``Q1 = A/(2-A)``, ``Q2 = 2A^2/(1+A)``, for ``P`` positives and ``N`` negatives, the paired difference of
two encoders whose AUC estimates correlate with ``rho`` has variance ``2 var (1 - rho)``, and a two-sided
test at alpha = 0.05 with power 0.8 detects ``(1.96 + 0.84) sqrt(2 var (1 - rho))``; a macro average over
``K`` classes (one-vs-rest) has variance ``sum(var_k) / K^2`` (classes taken as independent). At A = 0.85
and rho = 0.6 (a typical linear-probe AUC; paired readings correlate 0.3-0.7 in Hanley & McNeil, 1983),
with the measured prevalences and 5000 test images, the detectable differences are: ``dr_grade`` (macro
over 5) 0.010, ``dme`` 0.018, ``glaucoma`` 0.017, ``amd`` 0.018, ``disease_multilabel`` (macro over 6)
0.009 -- all below 0.02 (at the more pessimistic A = 0.80, rho = 0.5: 0.013, 0.023, 0.021, 0.023, 0.011).
A binary task at prevalence 0.25 needs about 4000 test images at A = 0.85, rho = 0.6 for 0.02; 5000 leaves
a margin. ``variants.detectable_auc_difference`` computes it. The pretraining corpus keeps its 500 test
images (a 2-point difference is not detectable there: about 0.04).

Caching
=======
Rendered images + the sample metadata (texts, labels, targets, a ground-truth summary) are stored in one
``.npz`` keyed by a hash of every option that changes the content (all but ``cache_dir``, ``levels`` and
``progress``), of a downstream variant's whole definition (cameras, prevalences, streams) and of
``GENERATOR_VERSION`` (bump it whenever the drawing changes); written to a temporary file and
``os.replace``-d into place; an unreadable cache file is regenerated. The directory is ``cache_dir`` if
given, else ``$CONTRASTIVE_BENCH_CACHE/fundus_synth`` if that variable is set, else
``~/.cache/contrastive-bench/fundus_synth``; ``cache_dir=False`` disables caching.

Run ``python -m bench.data.fundus_synth --benchmark`` to measure the drawing speed, ``--preview out.png``
for a grid of examples with their texts on stdout.

Drawing a corpus to disk (any size, many processes)
===================================================
``python -m bench.data.fundus_synth draw --out DIR --size 100000 --resolution 224 --workers 8
--image-format png|jpg|npz [--variant ...] [--test-size ...] [--set KEY=VALUE ...]`` writes
``DIR/images/NNNN/<id>.<ext>`` (1000 per folder), ``DIR/manifest.jsonl`` with its ``.meta.json`` sidecar
(levels, vocabularies, tasks) and ``DIR/fundus_synth.json`` (the resolved options): the samples of
``build`` with the same options, in the same order, with the same ids, splits, texts, labels and targets,
and the same pixels (PNG and NPZ; JPEG is the lossy encoding of those pixels). Read it with
``data.format=jsonl data.path=DIR/manifest.jsonl``. Worker processes draw and encode chunks of
consecutive samples; the main process writes them in order, with at most two chunks per worker in flight,
so memory does not grow with the corpus and the files do not depend on the number of workers
(:mod:`.corpus`). The writer is a small sink (``open`` / ``write(sample)`` / ``close(complete)``,
:mod:`.sinks`): ``--to wds [--shard-size 1000]`` writes WebDataset shards ``DIR/shard-NNNNNN.tar`` and
``DIR/meta.json`` instead (:class:`.sinks.WdsSink`, read with ``data.format=wds data.path=DIR``), through the
same drawing loop.
``python -m bench.data.fundus_synth benchmark-draw`` prints the throughput per resolution and workers.

Options
=======
One frozen dataclass, :class:`~.options.FundusSynthOptions` (a help text per option), checked by
:func:`bench.options.parse`: an unknown option, a bad value or a bad prevalence table is a
:class:`~bench.errors.DataConfigError` naming ``data.<option>``, the value and what is allowed.

Modules (one job each)
======================
``text`` (vocabulary, the three text levels, description templates), ``anatomy`` (field, eye, disc,
fovea, quadrants, vessels), ``diseases`` (prevalence, hidden variables, the ``diagnose`` rules),
``lesions`` (look, place and count of each finding), ``raster`` (drawing primitives), ``paint`` (the
pixels of one image), ``draw`` (one sample, or a run of a seed stream), ``variants`` (the datasets the
package draws: cameras, prevalences, streams, tasks, sizes), ``options`` (the options dataclass),
``cache`` (the ``.npz`` cache), ``dataset`` (``build``), ``corpus`` (the parallel drawing loop to a sink),
``sinks`` (the sink interface and the image-files + jsonl writer), ``cli`` (``python -m
bench.data.fundus_synth``).
"""

from __future__ import annotations

from .anatomy import Geometry
from .cache import GENERATOR_VERSION, default_cache_dir
from .corpus import CorpusInfo, DrawnSample, iter_corpus, write_corpus
from .dataset import build, build_with_truth, cache_path
from .diseases import DEFAULT_PREVALENCE, diagnose
from .draw import draw_sample, render
from .options import DIFFICULTY, FundusSynthOptions, check_options, check_prevalence
from .sinks import FileSink, Sink, WdsSink
from .text import (
    AMD,
    DISEASE_VOCAB,
    DISEASES,
    DME,
    DR_GRADE_DISEASE,
    DR_GRADES,
    FINDING_VOCAB,
    FINDINGS,
    GLAUCOMA,
    GLAUCOMA_CLASSES,
    HEALTHY,
    HYPERTENSIVE,
    LEVELS,
    MULTILABEL_CLASSES,
    MYOPIA,
    NAME,
    NO_FINDINGS,
    describe,
)
from .variants import DOWNSTREAM, TASK_SPECS_ALL, VARIANTS, Camera, Variant, detectable_auc_difference

#: the downstream tasks of the pretraining corpus (``variant=pretrain``)
TASK_SPECS = VARIANTS["pretrain"].task_specs

__all__ = [
    "AMD", "DEFAULT_PREVALENCE", "DIFFICULTY", "DISEASES", "DISEASE_VOCAB", "DME", "DOWNSTREAM", "DR_GRADES",
    "DR_GRADE_DISEASE", "FINDINGS", "FINDING_VOCAB", "GENERATOR_VERSION", "GLAUCOMA", "GLAUCOMA_CLASSES",
    "HEALTHY", "HYPERTENSIVE", "LEVELS", "MULTILABEL_CLASSES", "MYOPIA", "NAME", "NO_FINDINGS", "TASK_SPECS",
    "TASK_SPECS_ALL", "VARIANTS", "Camera", "CorpusInfo", "DrawnSample", "FileSink", "FundusSynthOptions", "WdsSink",
    "Geometry", "Sink", "Variant", "build", "build_with_truth", "cache_path", "check_options", "check_prevalence",
    "default_cache_dir", "describe", "detectable_auc_difference", "diagnose", "draw_sample", "iter_corpus",
    "render", "write_corpus",
]
