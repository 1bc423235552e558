"""Vocabulary and the three text levels of ``fundus_synth``: disease and finding names, the disease-level
text, and the description written from the drawn lesions (templates, count and place words).

The rules are in the package docstring (``Texts``); this module is what implements them.
"""

from __future__ import annotations

from typing import Sequence

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
CATEGORY_VOCAB = ("Normal", "Abnormal")
VOCAB = {"category": CATEGORY_VOCAB, "disease": DISEASE_VOCAB, "description": FINDING_VOCAB}


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


NORMAL_SENTENCES = (
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
        sentences.insert(0, _pick(rng, NORMAL_SENTENCES))
    return " ".join(sentences), (tuple(kinds) if kinds else (NO_FINDINGS,))



def level_texts(diseases: Sequence[str], description: str,
                finding_labels: tuple[str, ...]) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """The text and the labels of every level, from the disease names (canonical order) and the
    description with its finding labels."""
    category = "Normal" if not diseases else "Abnormal"
    disease_text = category + ", " + (", ".join(diseases) if diseases else HEALTHY)
    texts = {"category": category, "disease": disease_text, "description": description}
    labels = {"category": (category,), "disease": tuple(diseases) if diseases else (HEALTHY,),
              "description": finding_labels}
    return texts, labels
