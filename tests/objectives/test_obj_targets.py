"""Targets from ids and multi-hot labels against loops (including Jaccard's 0/0 := 1 and missing texts)."""

from __future__ import annotations

import torch

import obj_reference as ref
from objectives.targets import (
    LevelTargets,
    binary_targets,
    cooccurrence,
    ids_from_multi_hot,
    medclip_targets,
    present_mask,
    soft_targets,
)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_exact_from_ids_matches_loops():
    ids = torch.tensor([3, 1, 3, 7, 1, 3])
    c = cooccurrence(ids, "exact", dtype=torch.float64)
    torch.testing.assert_close(c, _t(ref.cooc_exact(ids)))
    assert torch.all(torch.diagonal(c) == 1)
    torch.testing.assert_close(soft_targets(c), _t(ref.row_normalise(ref.cooc_exact(ids))))
    torch.testing.assert_close(soft_targets(c).sum(1), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(binary_targets(c), c)


def test_jaccard_matches_loops_with_empty_sets():
    mh = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 1]])
    c = cooccurrence(mh, "jaccard", dtype=torch.float64)
    torch.testing.assert_close(c, _t(ref.cooc_jaccard(mh)))
    assert c[1, 3] == 1.0 and c[1, 1] == 1.0  # two empty label sets match (0/0 := 1)
    assert c[0, 2] == 1 / 3 and c[0, 4] == 1.0 and c[0, 1] == 0.0
    torch.testing.assert_close(soft_targets(c), _t(ref.row_normalise(ref.cooc_jaccard(mh))))
    torch.testing.assert_close(binary_targets(c), _t(ref.binary(ref.cooc_jaccard(mh))))


def test_exact_from_multi_hot_means_identical_rows():
    mh = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 1]])
    torch.testing.assert_close(cooccurrence(mh, "exact", dtype=torch.float64), _t(ref.cooc_exact(mh)))
    ids = ids_from_multi_hot(mh)
    assert ids[0] == ids[1] and len(set(ids.tolist())) == 3


def test_medclip_targets():
    mh = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]])
    torch.testing.assert_close(medclip_targets(mh, dtype=torch.float64), _t(ref.medclip_target(mh)))
    lt = LevelTargets.build("medclip", mh, 4, dtype=torch.float64)
    torch.testing.assert_close(soft_targets(lt.dense()), _t(ref.medclip_target(mh)))


def test_missing_convention():
    ids = torch.tensor([0, -1, 2, 0, -1])
    assert present_mask(ids).tolist() == [True, False, True, True, False]
    mh = torch.tensor([[1, 0], [-1, -1], [0, 0], [1, -1]])
    assert present_mask(mh).tolist() == [True, False, True, False]
    c = cooccurrence(ids, "exact", dtype=torch.float64)
    assert c[1].abs().sum() == 0 and c[:, 1].abs().sum() == 0  # missing samples take no part
    assert c[0, 3] == 1 and c[4, 4] == 0  # -1 never matches -1
    lt = LevelTargets.build("exact", ids, 5, dtype=torch.float64)
    assert lt.counts.tolist() == [2, 0, 1, 2, 0]
    assert not lt.all_present


def test_counts_use_distinct_label_sets():
    g = torch.Generator().manual_seed(0)
    mh = (torch.rand(200, 6, generator=g) > 0.6).long()
    mh[5] = -1
    lt = LevelTargets.build("jaccard", mh, 200, dtype=torch.float64)
    dense = lt.dense()
    torch.testing.assert_close(lt.counts, dense.sum(1))
    assert lt.counts[5] == 0
