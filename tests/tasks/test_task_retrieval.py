"""Retrieval Recall@K against hand-computed ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks import build
from tasks.retrieval import query_ranks

# Text embeddings: A, B, C one-hot. Images are constant colours; the stand-in's image embedding is the
# colour itself, so cos(image, text) = the image's channel for that text / |colour|.
TEXTS = {"A": [1, 0, 0], "B": [0, 1, 0], "C": [0, 0, 1]}
IMAGES = [  # colour, text
    ([200, 50, 10], "A"),   # order A > B > C          -> its positive A is rank 1
    ([30, 200, 100], "A"),  # order B > C > A          -> rank 3
    ([150, 100, 20], "B"),  # order A > B > C          -> rank 2
    ([60, 40, 180], "C"),   # order C > A > B          -> rank 1
    ([90, 90, 90], None),   # no text at this level: left out
]
# t2i (cos = channel / norm; norms 206.4, 225.6, 181.4, 193.9):
#   A: i0 .969  i1 .133  i2 .827  i3 .309 ; positives i0, i1 -> best .969 -> rank 1
#   B: i0 .242  i1 .886  i2 .551  i3 .206 ; positive i2 (.551), i1 above -> rank 2
#   C: i0 .048  i1 .443  i2 .110  i3 .928 ; positive i3 -> rank 1


@pytest.fixture
def retrieval_splits(sample_cls, make_image):
    Sample, TaskSpec, MultiGranularDataset = sample_cls
    samples = [
        Sample(id=f"s{i}", image=make_image(rgb), texts={"coarse": "x", "fine": t}, split="test")
        for i, (rgb, t) in enumerate(IMAGES)
    ]
    return {"test": MultiGranularDataset(samples, ["coarse", "fine"], name="retrieval")}


def test_recall_by_hand(colour_model, retrieval_splits):
    m = build("retrieval", ks=[1, 2, 3]).run(colour_model(TEXTS), retrieval_splits)
    assert m["level"] == "fine"  # default: the last level
    # i2t ranks [1, 3, 2, 1]
    assert m["i2t_recall@1"] == pytest.approx(2 / 4)
    assert m["i2t_recall@2"] == pytest.approx(3 / 4)
    assert m["i2t_recall@3"] == pytest.approx(1.0)
    # t2i ranks [1, 2, 1]
    assert m["t2i_recall@1"] == pytest.approx(2 / 3)
    assert m["t2i_recall@2"] == pytest.approx(1.0)
    assert m["n_images"] == 4 and m["n_texts"] == 3 and m["n_missing_text"] == 1
    assert "at least one positive" in m["recall_definition"]


def test_recall_with_several_positive_texts_per_image(colour_model, retrieval_splits):
    # one text per sample: candidates [A(i0), A(i1), B(i2), C(i3)]; i0 and i1 each have two positive entries
    m = build("retrieval", ks=[1, 2, 3], dedupe_texts=False).run(colour_model(TEXTS), retrieval_splits)
    # i2t: i0 -> both A entries on top: rank 1 ; i1 -> B, C above its A entries: rank 3 ;
    #      i2 -> the two A entries above B: rank 3 (duplicates count) ; i3 -> rank 1
    assert m["i2t_recall@1"] == pytest.approx(2 / 4)
    assert m["i2t_recall@2"] == pytest.approx(2 / 4)
    assert m["i2t_recall@3"] == pytest.approx(1.0)
    # t2i: queries A(i0), A(i1) -> rank 1 each ; B -> 2 ; C -> 1
    assert m["t2i_recall@1"] == pytest.approx(3 / 4)
    assert m["t2i_recall@2"] == pytest.approx(1.0)
    assert m["n_texts"] == 4 and m["n_unique_texts"] == 3


def test_level_option_and_alias(colour_model, retrieval_splits):
    m = build("retrieval", target="coarse", ks=[1]).run(colour_model(TEXTS), retrieval_splits)
    # a single shared text: every image's positive is the only candidate
    assert m["level"] == "coarse" and m["i2t_recall@1"] == 1.0 and m["t2i_recall@1"] == 1.0 and m["n_texts"] == 1


def test_ties_count_against_the_query():
    emb = torch.ones(3, 2) / np.sqrt(2)  # a collapsed model: every score equal
    ids = torch.tensor([0, 1, 2])
    assert query_ranks(emb, ids, emb, ids).tolist() == [3, 3, 3]


def test_ranks_match_a_slow_reference():
    g = torch.Generator().manual_seed(0)
    q, c = torch.randn(40, 8, generator=g), torch.randn(30, 8, generator=g)
    qi, ci = torch.randint(0, 10, (40,), generator=g), torch.randint(0, 10, (30,), generator=g)
    fast = query_ranks(q, qi, c, ci, chunk=7)
    s = (q @ c.T).numpy()
    for a in range(40):
        pos = [j for j in range(30) if ci[j] == qi[a]]
        if not pos:
            assert fast[a] == 31
            continue
        best = max(s[a, j] for j in pos)
        assert fast[a] == 1 + sum(1 for j in range(30) if ci[j] != qi[a] and s[a, j] >= best)
