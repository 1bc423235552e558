"""No downstream dataset may share an image or a patient with the pretraining corpus.

:func:`check_overlap` compares two datasets by sample id, by patient id (where both have one) and by the
content of the images (a hash of the decoded pixels: dtype, shape and bytes, so the same picture under
another id or file name is found too), and raises :class:`DataOverlapError` naming both datasets, what they
share and a few examples.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = ["DataOverlapError", "check_overlap", "image_hashes"]


class DataOverlapError(ConfigError):
    """A downstream dataset shares images or patients with the pretraining corpus."""


def image_hashes(dataset: Any) -> list[str]:
    """One content hash per sample (decoded pixels)."""
    out = []
    for i in range(len(dataset)):
        arr = np.ascontiguousarray(dataset.image(i))
        h = hashlib.blake2b(f"{arr.dtype.str}|{arr.shape}|".encode(), digest_size=16)
        h.update(arr.reshape(-1).view(np.uint8))
        out.append(h.hexdigest())
    return out


def _examples(items: set) -> str:
    return ", ".join(repr(x) for x in sorted(items)[:3]) + (" ..." if len(items) > 3 else "")


def check_overlap(pretrain: Any, other: Any, *, pretrain_name: str, other_name: str,
                  hashes: dict[int, Any] | None = None) -> None:
    """Raise :class:`DataOverlapError` when ``other`` shares a sample id, a patient or an image with
    ``pretrain``. ``hashes``: a memo (dataset id -> (dataset, hashes)) so a corpus is hashed once."""
    memo = hashes if hashes is not None else {}

    def hashed(ds: Any) -> list[str]:
        got = memo.get(id(ds))
        if got is None or got[0] is not ds:
            got = (ds, image_hashes(ds))
            memo[id(ds)] = got
        return got[1]

    found = []
    ids = set(pretrain.sample_ids()) & set(other.sample_ids())
    if ids:
        found.append(f"{len(ids)} sample id(s) ({_examples(ids)})")
    pp = {p for p in pretrain.patient_ids() if p is not None}
    po = {p for p in other.patient_ids() if p is not None}
    patients = pp & po
    if patients:
        found.append(f"{len(patients)} patient(s) ({_examples(patients)})")
    hp = hashed(pretrain)
    ho = hashed(other)
    common = set(hp) & set(ho)
    if common:
        where = {h: sid for h, sid in zip(ho, other.sample_ids()) if h in common}
        found.append(f"{len(common)} identical image(s) (e.g. {other_name.split(' (')[0]} sample(s) "
                     f"{_examples(set(where.values()))})")
    if found:
        raise DataOverlapError(
            f"{other_name} overlaps {pretrain_name}: they share {'; '.join(found)}. A downstream dataset must not "
            "hold images or patients of the pretraining corpus (the evaluation would measure memorisation); "
            "evaluate on disjoint data, e.g. a fundus_synth downstream variant (data.variant=dr|glaucoma|amd|"
            "multidisease)")
