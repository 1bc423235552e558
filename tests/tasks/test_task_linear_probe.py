"""Linear probe on features where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks import build
from tasks.logreg import fit_path


def test_separable_multiclass_is_near_perfect(colour_model, colour_splits):
    m = build("linear_probe", target="colour").run(colour_model(), colour_splits("multiclass"))
    assert m["auc"] > 0.99 and m["acc"] > 0.95 and m["n_labels_skipped"] == 0
    assert m["c"] in build("linear_probe", target="colour").options.c_grid
    assert m["fit_on"] == "train" and m["select_metric"] == "auc" and m["val_auc"] > 0.99
    assert m["n_train"] == 90 and m["n_test"] == 90 and m["feature_dim"] == 3 and m["solver"] == "newton"


def test_separable_multilabel_and_binary(colour_model, colour_splits):
    splits = colour_splits("multilabel")
    m = build("linear_probe", target="channels").run(colour_model(), splits)
    assert m["auc"] > 0.99 and m["map"] > 0.98 and m["acc"] > 0.95
    b = build("linear_probe", target="glaucoma").run(colour_model(), splits)
    assert b["auc"] > 0.99


def test_shuffled_labels_give_chance(colour_model, colour_splits):
    splits = colour_splits("multiclass", {"train": 300, "val": 150, "test": 400}, shuffle_labels=True, seed=2)
    m = build("linear_probe", target="colour").run(colour_model(), splits)
    assert abs(m["auc"] - 0.5) < 0.08
    ml = colour_splits("multilabel", {"train": 300, "val": 150, "test": 400}, shuffle_labels=True, seed=2)
    m = build("linear_probe", target="channels").run(colour_model(), ml)
    assert abs(m["auc"] - 0.5) < 0.08


def test_c_is_chosen_on_val_and_fixed_c_skips_search(colour_model, colour_splits):
    splits = colour_splits("multiclass", shuffle_labels=True)
    grid = [1e-3, 1e-2, 1e-1, 1.0]
    m = build("linear_probe", target="colour", c_grid=grid, select_metric="acc").run(colour_model(), splits)
    assert m["c"] in grid and "val_acc" in m
    f = build("linear_probe", target="colour", c=0.5).run(colour_model(), splits)
    assert f["c"] == 0.5 and f["select_metric"] == "fixed" and "val_auc" not in f


@pytest.mark.parametrize("solver", ["torch", "newton"])
def test_solvers_agree_with_sklearn(colour_model, colour_splits, solver):
    splits = colour_splits("multilabel")
    a = build("linear_probe", target="channels", solver="sklearn", c_grid=[0.01, 1.0]).run(colour_model(), splits)
    b = build("linear_probe", target="channels", solver=solver, c_grid=[0.01, 1.0]).run(colour_model(), splits)
    assert b["solver"] == solver and a["c"] == b["c"]
    assert a["auc"] == pytest.approx(b["auc"], abs=1e-3) and a["acc"] == pytest.approx(b["acc"], abs=0.02)


@pytest.mark.parametrize("solver", ["torch", "newton"])
@pytest.mark.parametrize("kind, n_out", [("multiclass", 4), ("multiclass", 2), ("multilabel", 3)])
def test_logreg_backends_match(kind, n_out, solver):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    if kind == "multiclass":
        y = rng.integers(0, n_out, 300)
        x[:, :n_out] += 1.5 * np.eye(n_out)[y][:, : min(n_out, 5)]
    else:
        y = (rng.random((300, n_out)) < 0.3).astype(int)
        x[:, :n_out] += 2 * y
        y[:, 2] = 0  # a label with no positive: constant prediction
    for c in (0.05, 5.0):
        (a,) = fit_path(x, y, kind, n_out, [c], solver="sklearn")
        (b,) = fit_path(x, y, kind, n_out, [c], solver=solver)
        np.testing.assert_allclose(a.predict_proba(x), b.predict_proba(x), atol=2e-3)
    if kind == "multilabel":
        assert np.all(b.predict_proba(x)[:, 2] == 0.0)


def test_newton_reaches_the_optimum_on_collinear_features():
    """Nearly collinear features (condition number ~1e7, like an untrained tower's): Newton's gradient at
    its solution is ~0, and its objective is not above sklearn's lbfgs solution."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(400, 3))
    x = base @ rng.normal(size=(3, 12)) + 1e-6 * rng.normal(size=(400, 12))
    x = (x - x.mean(0)) / x.std(0)
    y = (base[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
    c = 100.0

    def objective(m):
        z = x @ m.weight[:, 0] + m.bias[0]
        return 0.5 * np.sum(m.weight**2) + c * np.sum(np.logaddexp(0, z) - y * z)

    (nt,) = fit_path(x, y, "multiclass", 2, [c], solver="newton")
    (sk,) = fit_path(x, y, "multiclass", 2, [c], solver="sklearn", max_iter=100)
    assert objective(nt) <= objective(sk) + 1e-6
    z = x @ nt.weight[:, 0] + nt.bias[0]
    p = 1 / (1 + np.exp(-z))
    grad_w = nt.weight[:, 0] + c * x.T @ (p - y)
    assert np.abs(grad_w).max() < 1e-4 * c


def test_class_absent_from_train_gets_zero_probability():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 100)  # class 3 of 4 unseen
    x = rng.normal(size=(100, 4)) + np.eye(4)[y]
    (m,) = fit_path(x, y, "multiclass", 4, [1.0], solver="sklearn")
    p = m.predict_proba(x)
    assert p.shape == (100, 4) and np.all(p[:, 3] == 0) and np.allclose(p.sum(1), 1)


def test_model_state_is_left_as_found(colour_model, colour_splits):
    model = colour_model()
    model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    build("linear_probe", target="colour", c_grid=[1.0]).run(model, colour_splits("multiclass"))
    assert model.training and all(m.training for m in model.modules())
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bootstrap_ci_in_task_metrics(colour_model, colour_splits):
    m = build("linear_probe", target="colour", c=1.0, ci=True, n_boot=100).run(colour_model(), colour_splits("multiclass"))
    assert m["auc_ci_low"] <= m["auc"] <= m["auc_ci_high"]
