"""The paper's main-table layout (datasets as column groups, LP/FT x AUC/ACC/mAP, an average, objectives as
rows), metric-key parsing, and the statistical power stated under each table (power.csv)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from bench.report import write_report
from bench.report.keys import parse_fraction, parse_metric_key
from bench.report.power import mde, pooled_std

DR, GL = "fundus_synth-dr", "fundus_synth-glaucoma"


def cell(root, name, *, label, seed, metrics, objective=None):
    d = root / name
    d.mkdir(parents=True)
    cfg = {"grid": root.name, "label": label, "seed": seed, "report": {"baseline": "CLIP"},
           "data": {"levels": ["disease", "description"]}, "objective": objective or {"name": "clip"},
           "tasks": ["linear_probe/disease_multilabel"]}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "metrics.json").write_text(json.dumps({"seed": seed, **metrics}))
    (d / "done").write_text("")


def suite_metrics(base: float, seed: int) -> dict:
    """DR (LP and FT) and glaucoma (LP only) with auc/acc/map, n_test, and a 1 % label-fraction LP AUC."""
    m = {"linear_probe/disease_multilabel/auc": base}
    for i, (ds, target, tasks) in enumerate(((DR, "dr_grade", ("linear_probe", "finetune")),
                                             (GL, "glaucoma", ("linear_probe",)))):
        for task in tasks:
            for j, metric in enumerate(("auc", "acc", "map")):
                m[f"{ds}/{task}/{target}/{metric}"] = base + 0.1 * i + 0.01 * j + 0.002 * seed
            m[f"{ds}/{task}/{target}/n_test"] = 200 + 100 * i
            # the fraction's segment after the task (DR) or after the target (glaucoma, as bench.suites writes it)
            lf = f"{ds}/{task}/lf0.01/{target}/auc" if i == 0 else f"{ds}/{task}/{target}/lf0.01/auc"
            m[lf] = base - 0.2 + 0.001 * seed
    return m


@pytest.mark.parametrize("key, want", [
    ("fundus_synth-dr/linear_probe/dr_grade/auc", ("fundus_synth-dr", "linear_probe", None, "dr_grade", "auc")),
    ("linear_probe/disease_multilabel/map", (None, "linear_probe", None, "disease_multilabel", "map")),
    ("ds/finetune/lf0.01/t/acc", ("ds", "finetune", 0.01, "t", "acc")),
    ("linear_probe/lf10%/t/auc", (None, "linear_probe", 0.1, "t", "auc")),
    ("dr/linear_probe/dr_grade/lf0.01/auc", ("dr", "linear_probe", 0.01, "dr_grade", "auc")),  # bench.suites' form
    ("linear_probe/t/lf1.0/auc", (None, "linear_probe", 1.0, "t", "auc")),
    ("ds/linear_probe/lf0.1/t/lf0.2/auc", None),  # two fractions
    ("ds/retrieval/i2t_recall@1", ("ds", "retrieval", None, None, "i2t_recall@1")),
    ("init/linear_probe/t/auc", None),            # evaluation at init: not a task metric of the layout
    ("a/b/linear_probe/t/auc", None),             # the task too deep: unknown shape, never guessed
    ("ds/linear_probe/t/extra/auc", None),        # two segments between task and metric
    ("ds/linear_probe/lf0/t/auc", None),          # a fraction of zero labels
    ("train/seconds_per_epoch", None),
    ("lp10/auc", None),
])
def test_parse_metric_key(key, want):
    got = parse_metric_key(key)
    assert (None if got is None else (got.dataset, got.task, got.fraction, got.target, got.metric)) == want


def test_parse_fraction_and_custom_task_names():
    assert parse_fraction("lf0.5") == 0.5 and parse_fraction("lf50%") == 0.5 and parse_fraction("lfx") is None
    assert parse_metric_key("ds/my_task/t/auc") is None
    assert parse_metric_key("ds/my_task/t/auc", tasks=["my_task"]).dataset == "ds"


def test_mde_closed_form():
    # printed t tables: t_{0.975,4} = 2.7764, t_{0.8,4} = 0.9410, t_{0.975,18} = 2.1009, t_{0.8,18} = 0.8620
    assert mde(1.0, 3) == pytest.approx((2.776445 + 0.940965) * math.sqrt(2 / 3), rel=1e-5)
    assert mde(2.0, 10) == pytest.approx(2 * (2.100922 + 0.862035) * math.sqrt(0.2), rel=1e-5)
    assert math.isnan(mde(1.0, 1))
    assert pooled_std([[1.0, 3.0], [10.0, 10.0, 10.0], [5.0]]) == pytest.approx(math.sqrt(2.0 / 3.0))


@pytest.fixture
def suite_grid(tmp_path):
    root = tmp_path / "paper_fundus"
    rng = np.random.default_rng(0)
    for label, obj, base in (("CLIP", {"name": "clip"}, 0.60), ("MGLL", {"name": "mgll"}, 0.70),
                             ("SigLIP", {"name": "siglip"}, 0.65)):
        for s in range(3):
            m = suite_metrics(base, s)
            m[f"{GL}/linear_probe/glaucoma/acc"] += 0.02 * rng.standard_normal()
            cell(root, f"{label}{s}", label=label, seed=s, objective=obj, metrics=m)
    cell(root, "odd", label="CLIP", seed=9, metrics={**suite_metrics(0.6, 9), "x/y/linear_probe/t/auc": 0.5})
    return root


def rows_of(md: str) -> list[list[str]]:
    return [[p.strip() for p in line.strip().strip("|").split("|")] for line in md.splitlines() if line.startswith("| ")]


def test_paper_layout_markdown_latex_and_power(suite_grid):
    paths = write_report(suite_grid, formats=["md", "tex", "csv"], n_boot=20, allow_missing=True)
    assert {"main", "paper", "paper_lf1pct"} <= set(paths["tables"])
    md = paths["tables"]["paper"]["md"].read_text()
    rows = rows_of(md)
    assert rows[0] == ["label"] + [f"{DR} {t} {m}" for t in ("LP", "FT") for m in ("AUC", "ACC", "mAP")] \
        + [f"{GL} LP {m}" for m in ("AUC", "ACC", "mAP")] + [f"Average LP {m}" for m in ("AUC", "ACC", "mAP")]
    body = {r[0]: r[1:] for r in rows[1:]}
    assert list(body) == ["CLIP", "MGLL", "SigLIP"]  # baseline first, objectives as rows
    # CLIP has 4 seeds (0, 1, 2 and the extra cell's 9): DR LP AUC = 0.6 + 0.002 * seed
    clip = [0.6 + 0.002 * s for s in (0, 1, 2, 9)]
    assert body["CLIP"][0] == f"{100 * np.mean(clip):.2f} ± {100 * np.std(clip, ddof=1):.2f} (n=4)"
    assert body["MGLL"][0].startswith("**70.20 ± 0.20**")  # best bold
    assert body["SigLIP"][0].startswith("<ins>65.20 ± 0.20</ins>")  # second underlined
    # the average over the two datasets' LP AUC, per seed, then mean ± std over seeds
    avg = [np.mean([0.7 + 0.002 * s, 0.8 + 0.002 * s]) for s in range(3)]
    assert body["MGLL"][9].startswith(f"**{100 * np.mean(avg):.2f} ± {100 * np.std(avg, ddof=1):.2f}**")
    assert "x/y/linear_probe" not in md  # an unknown shape is not in the paper layout...
    assert "x/y/linear_probe/t/auc" in paths["table_text"]  # ...but in the generic table
    tex = paths["tables"]["paper"]["tex"].read_text()
    assert r"\multicolumn{6}{c}{fundus\_synth-dr}" in tex and r"\multicolumn{3}{c}{Average}" in tex
    assert r"\textbf{70.20 $\pm$ 0.20}" in tex and r"\underline{65.20 $\pm$ 0.20}" in tex
    lf = rows_of(paths["tables"]["paper_lf1pct"]["md"].read_text())
    assert lf[0] == ["label", f"{DR} LP AUC", f"{DR} FT AUC", f"{GL} LP AUC", "Average LP AUC"]
    # power: stated under the table and written to power.csv
    assert "power (two-sample t-test over seeds, alpha = 0.05, power = 0.8" in md and "test set N = 200, 300" in md
    power = pd.read_csv(paths["power"])
    row = power[(power["table"] == "paper") & (power["column"] == f"{GL}/linear_probe/glaucoma/acc")].iloc[0]
    assert row["n_seeds"] == 3 and str(row["n_test"]).removesuffix(".0") == "300" and row["best"] == "MGLL" and row["second"] == "SigLIP"
    assert row["mde"] == pytest.approx(mde(row["seed_std"], 3))
    assert bool(row["resolvable"]) == (row["gap"] >= row["mde"])
    # DR LP AUC: the seeds move every row together (std 0.2 points), rows 5 points apart: resolvable
    dr = power[(power["table"] == "paper") & (power["column"] == f"{DR}/linear_probe/dr_grade/auc")].iloc[0]
    assert dr["resolvable"] and dr["gap"] == pytest.approx(0.05)


def test_power_flags_a_gap_below_the_mde(tmp_path):
    rng = np.random.default_rng(1)
    for label, base in (("CLIP", 0.60), ("MGLL", 0.61)):
        for s in range(3):
            cell(tmp_path, f"{label}{s}", label=label, seed=s,
                 metrics={f"{DR}/linear_probe/dr_grade/auc": base + 0.03 * rng.standard_normal()})
    paths = write_report(tmp_path, formats=["md"])
    md = paths["tables"]["paper"]["md"].read_text()
    assert "not resolvable with these seeds (best - second best < MDE): " in md
    p = pd.read_csv(paths["power"])
    assert not p[p["table"] == "paper"]["resolvable"].iloc[0]


def test_one_seed_states_that_there_is_no_mde(tmp_path):
    for label, base in (("CLIP", 0.6), ("MGLL", 0.7)):
        cell(tmp_path, label, label=label, seed=0, metrics={f"{DR}/linear_probe/dr_grade/auc": base})
    md = write_report(tmp_path, formats=["md"])["tables"]["paper"]["md"].read_text()
    assert "one seed: no seed std, so no minimum detectable effect" in md


def test_no_paper_table_without_suite_datasets(tmp_path):
    for label in ("CLIP", "MGLL"):
        cell(tmp_path, label, label=label, seed=0, metrics={"linear_probe/disease_multilabel/auc": 0.5})
    assert "paper" not in write_report(tmp_path, formats=["md"])["tables"]


def test_significance_csv_states_the_mde_of_each_comparison(suite_grid):
    paths = write_report(suite_grid, formats=["md"], n_boot=20, allow_missing=True)
    sig = pd.read_csv(paths["significance"])
    power = pd.read_csv(paths["power"])
    key = f"{DR}/linear_probe/dr_grade/auc"
    row = sig[(sig["row"] == "MGLL") & (sig["column"] == key) & (sig["test"] == "ttest")].iloc[0]
    want = power[power["column"] == key]["mde"].iloc[0]
    assert row["mde"] == pytest.approx(want) and bool(row["resolvable"]) == (abs(row["diff"]) >= want)


def test_label_fraction_keys_line_up_with_their_task(suite_grid):
    from bench.report import load_results

    tasks = load_results(suite_grid).tasks
    lf = tasks[f"{DR}/linear_probe/lf0.01/dr_grade"]
    full = tasks[f"{DR}/linear_probe/dr_grade"]
    assert (lf.base, lf.label_fraction) == (f"{DR}/linear_probe/dr_grade", 0.01)
    assert (full.base, full.label_fraction) == (f"{DR}/linear_probe/dr_grade", 1.0)
    lf_gl = tasks[f"{GL}/linear_probe/glaucoma/lf0.01"]
    assert (lf_gl.base, lf_gl.label_fraction) == (f"{GL}/linear_probe/glaucoma", 0.01)
    assert tasks["x/y/linear_probe/t"].name == "?"  # unknown shape: generic table only
