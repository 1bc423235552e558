"""Significance in ``bench.report``: paired t-test over seeds (dagger), paired bootstrap over saved predictions
(double dagger), the vectorised metrics against sklearn, and the predictions contract."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import average_precision_score, roc_auc_score

from bench.report import write_report
from bench.report.significance import (Predictions, load_predictions, metric_on_resamples, paired_bootstrap,
                                       paired_ttest, point_metric, predictions_path)

TASK = "linear_probe/disease_multilabel"


def cell(root, name, *, label, seed, metrics, objective=None, predictions=None):
    d = root / name
    d.mkdir(parents=True)
    cfg = {"grid": root.name, "label": label, "seed": seed, "report": {"baseline": "CLIP"},
           "objective": objective or {"name": "clip"}, "data": {"levels": ["disease", "description"]},
           "tasks": [TASK]}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "metrics.json").write_text(json.dumps(metrics))
    if predictions is not None:
        path = predictions_path(d, TASK)
        path.parent.mkdir()
        np.savez(path, **predictions)
    (d / "done").write_text("")


def md_cell(text, row, col):
    for line in text.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if parts[0] == row:
            return parts[col]
    raise AssertionError(row)


def test_dagger_on_a_clear_difference_and_not_on_noise(tmp_path):
    rng = np.random.default_rng(0)
    base = 0.60 + 0.02 * rng.standard_normal(5)
    for s in range(5):
        cell(tmp_path, f"c{s}", label="CLIP", seed=s, metrics={f"{TASK}/auc": base[s]})
        cell(tmp_path, f"good{s}", label="Better", seed=s, objective={"name": "mgll"},
             metrics={f"{TASK}/auc": base[s] + 0.10 + 0.01 * rng.standard_normal()})
        # noise around the baseline: zero-mean differences
        cell(tmp_path, f"same{s}", label="Same", seed=s, objective={"name": "mgll", "terms": ["sclip"]},
             metrics={f"{TASK}/auc": base[s] + 0.01 * (-1) ** s})
    paths = write_report(tmp_path, formats=["md", "csv"])
    t = paths["table_text"]
    assert "†" in md_cell(t, "Better", 1)
    assert "†" not in md_cell(t, "Same", 1) and "†" not in md_cell(t, "CLIP", 1)
    sig = pd.read_csv(paths["significance"])
    better = sig[sig["row"] == "Better"].iloc[0]
    assert better["test"] == "ttest" and better["n"] == 5 and better["p"] < 1e-3 and better["significant"]
    assert sig[sig["row"] == "Same"].iloc[0]["p"] > 0.5
    assert "paired t-test over seeds" in paths["tables"]["main"]["md"].read_text()
    # a stricter alpha drops nothing here, alpha close to 1 marks the noise too
    t = write_report(tmp_path, formats=["md"], alpha=0.99)["table_text"]
    assert "†" in md_cell(t, "Same", 1)


def test_one_seed_gives_no_marker_and_says_so(tmp_path):
    cell(tmp_path, "c", label="CLIP", seed=0, metrics={f"{TASK}/auc": 0.5})
    cell(tmp_path, "m", label="MGLL", seed=0, objective={"name": "mgll"}, metrics={f"{TASK}/auc": 0.9})
    paths = write_report(tmp_path, formats=["md"])
    assert "†" not in paths["table_text"]
    assert "no t-test (fewer than 2 paired seeds): MGLL" in paths["tables"]["main"]["md"].read_text()


def test_paired_ttest_edge_cases():
    assert paired_ttest({0: 1.0}, {0: 0.5})[:3] == (None, 1, 0.5)
    assert paired_ttest({0: 1.0}, {1: 0.5})[0] is None
    p, n, diff, note = paired_ttest({0: 0.6, 1: 0.7}, {0: 0.5, 1: 0.6})  # constant difference
    assert p == 0.0 and n == 2 and diff == pytest.approx(0.1) and "zero variance" in note
    assert paired_ttest({0: 0.6, 1: 0.7}, {0: 0.6, 1: 0.7})[0] == 1.0
    p, n, _, _ = paired_ttest({0: 0.6, 1: 0.9, 2: 0.5}, {0: 0.5, 1: 0.6, 2: 0.55, 3: 0.1})
    assert n == 3 and 0 < p < 1


def _multilabel(rng, n=150, c=4, signal=2.0):
    y = (rng.random((n, c)) < 0.3).astype(int)
    logits = signal * (y - 0.3) + rng.standard_normal((n, c))
    return y, 1 / (1 + np.exp(-logits))


def test_vectorised_metrics_match_sklearn_and_task_definitions():
    rng = np.random.default_rng(1)
    y, s = _multilabel(rng)
    s = np.round(s, 1)  # ties
    y[:, 3] = 0  # a label with one class: left out of auc/map
    p = Predictions(y, s, "multilabel")
    keep = [0, 1, 2]
    assert point_metric(p, "auc") == pytest.approx(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in keep]))
    assert point_metric(p, "map") == pytest.approx(np.mean([average_precision_score(y[:, j], s[:, j]) for j in keep]))
    assert point_metric(p, "acc") == pytest.approx(np.mean(y == (s > 0.5)))
    yc = rng.integers(0, 3, 120)
    sc = rng.random((120, 3)) + np.eye(3)[yc]
    pc = Predictions(yc, sc, "multiclass")
    ovr = np.mean([roc_auc_score(yc == k, sc[:, k]) for k in range(3)])
    assert point_metric(pc, "auc") == pytest.approx(ovr)
    assert point_metric(pc, "acc") == pytest.approx(np.mean(sc.argmax(1) == yc))
    from sklearn.metrics import f1_score

    assert point_metric(pc, "f1") == pytest.approx(f1_score(yc, sc.argmax(1), average="macro"))
    idx = rng.integers(0, 120, size=(7, 120))
    per = metric_on_resamples(pc, "auc", idx)
    assert per.shape == (7,) and per[3] == pytest.approx(point_metric(Predictions(yc[idx[3]], sc[idx[3]], "multiclass"),
                                                                      "auc"))


def test_paired_bootstrap_detects_a_difference_not_noise():
    rng = np.random.default_rng(2)
    y, good = _multilabel(rng, signal=3.0)
    _, weak = _multilabel(np.random.default_rng(3), signal=0.0)
    weak = rng.random(y.shape)
    p, diff = paired_bootstrap([(Predictions(y, good, "multilabel"), Predictions(y, weak, "multilabel"))], "auc",
                               n_boot=300)
    assert p < 0.01 and diff > 0.2
    p_same, diff_same = paired_bootstrap([(Predictions(y, good, "multilabel"), Predictions(y, good, "multilabel"))],
                                         "auc", n_boot=100)
    assert p_same == 1.0 and diff_same == 0.0


def test_double_dagger_from_saved_predictions(tmp_path):
    rng = np.random.default_rng(4)
    y, good = _multilabel(rng, n=200, signal=3.0)
    noise_a, noise_b = rng.random(y.shape), rng.random(y.shape)
    preds = {"CLIP": noise_a, "MGLL": good, "Noise": noise_b}
    for label, scores in preds.items():
        p = Predictions(y, scores, "multilabel")
        metrics = {f"{TASK}/{m}": point_metric(p, m) for m in ("auc", "map", "acc")}
        cell(tmp_path, label, label=label, seed=0, metrics=metrics,
             objective={"name": "clip" if label == "CLIP" else "mgll"},
             predictions={"y_true": y, "scores": scores, "kind": np.array("multilabel")})
    paths = write_report(tmp_path, formats=["md"], n_boot=200)
    t = paths["table_text"]
    assert "‡" in md_cell(t, "MGLL", 1) and "‡" in md_cell(t, "MGLL", 2)
    assert "‡" not in md_cell(t, "Noise", 1) and "‡" not in md_cell(t, "CLIP", 1)
    assert "†" not in t  # one seed: no t-test
    block = paths["tables"]["main"]["md"].read_text()
    assert "paired bootstrap over test samples (200 resamples" in block
    sig = pd.read_csv(paths["significance"])
    boot = sig[(sig["test"] == "bootstrap") & (sig["row"] == "MGLL")]
    assert len(boot) == 3 and (boot["p"] < 0.05).all()


def test_predictions_contract_errors_and_alignment(tmp_path):
    d = tmp_path / "cell"
    (d / "predictions").mkdir(parents=True)
    assert load_predictions(d, TASK) is None
    np.savez(predictions_path(d, TASK), y_true=np.zeros(3), scores=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="missing array"):
        load_predictions(d, TASK)
    np.savez(predictions_path(d, TASK), y_true=np.array([0, 1, 1]), scores=np.eye(3)[:, :2],
             kind=np.array("multiclass"), ids=np.array([5, 6, 7]))
    p = load_predictions(d, TASK)
    assert p.kind == "multiclass" and p.threshold == 0.5 and list(p.ids) == [5, 6, 7]
    assert predictions_path(d, TASK).name == "linear_probe__disease_multilabel.npz"
    from bench.report.significance import _align

    q = Predictions(np.array([1, 1, 0]), p.scores[::-1].copy(), "multiclass", ids=np.array([7, 6, 5]))
    a, b = _align(p, q)
    assert list(a.ids) == list(b.ids) == [5, 6, 7] and np.array_equal(a.y_true, b.y_true)
    assert _align(p, Predictions(np.array([1, 0, 0]), p.scores, "multiclass")) is None


def test_reference_row_has_the_same_extra_key_values(tmp_path):
    def cfg_cell(name, label, seed, rate, auc):
        d = tmp_path / name
        d.mkdir()
        cfg = {"label": label, "seed": seed, "report": {"baseline": "CLIP"}, "data": {"missing_rate": rate},
               "objective": {"name": "clip" if label == "CLIP" else "mgll"}, "tasks": [TASK]}
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
        (d / "metrics.json").write_text(json.dumps({f"{TASK}/auc": auc}))
        (d / "done").write_text("")

    for s in range(3):
        cfg_cell(f"c0{s}", "CLIP", s, 0.0, 0.60 + s / 100)
        cfg_cell(f"c3{s}", "CLIP", s, 0.3, 0.50 + s / 100)
        # +0.05 over CLIP at the same rate, with a little noise: significant only against the matching row
        cfg_cell(f"m3{s}", "MGLL", s, 0.3, 0.55 + s / 100 + (0.002, -0.001, 0.0)[s])
        cfg_cell(f"m5{s}", "MGLL", s, 0.5, 0.40 + s / 100)
    paths = write_report(tmp_path, formats=["md"])
    sig = pd.read_csv(paths["significance"])
    m3 = sig[sig["row"] == "MGLL (data.missing_rate=0.3)"].iloc[0]
    assert m3["reference"] == "CLIP (data.missing_rate=0.3)" and m3["diff"] == pytest.approx(0.05 + 1e-4 / 3, abs=1e-3)
    assert m3["significant"]
    m5 = sig[sig["row"] == "MGLL (data.missing_rate=0.5)"].iloc[0]
    assert pd.isna(m5["p"]) and "no baseline row with the same data.missing_rate" in m5["note"]
    block = paths["tables"]["main"]["md"].read_text()
    assert "vs CLIP (same data.missing_rate where it exists)" in block
    assert "no t-test (no baseline row with the same data.missing_rate): MGLL (data.missing_rate=0.5)" in block
