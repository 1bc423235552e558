"""Cells record their objective (name, options, levels, terms) in metrics.json; the report reads the record
and falls back to the config only for results written before it existed."""

from __future__ import annotations

import json

import pandas as pd
import yaml

import objectives
from bench.report import load_results, write_report
from bench.report.tables import NOT_ROW_KEYS, group_rows

TASK = "linear_probe/disease_multilabel"
LEVELS = ("category", "disease", "description")


def cell(root, name, *, label, objective, record=None, seed=0, auc=0.5, extra_cfg=None):
    d = root / name
    d.mkdir(parents=True)
    cfg = {"grid": root.name, "label": label, "seed": seed, "report": {"baseline": "CLIP"},
           "data": {"levels": list(LEVELS)}, "objective": objective, "tasks": [TASK], **(extra_cfg or {})}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    metrics = {"seed": seed, f"{TASK}/auc": auc}
    if record is not None:
        metrics["objective"] = record
    (d / "metrics.json").write_text(json.dumps(metrics))
    (d / "done").write_text("")


def describe(name, **options):
    """What bench.cell records: ``objective.describe(data.levels)``."""
    return objectives.build(name, **options).describe(LEVELS)


def test_objectives_describe_their_levels_and_terms():
    r = describe("mgll", terms=["sclip", "skl"], levels=["disease", "description"])
    assert r["name"] == "mgll" and r["terms"] == ["sclip", "skl"] and r["levels"] == ["disease", "description"]
    assert r["options"]["weights"] == [0.5, 1.0, 1.0] and json.loads(json.dumps(r)) == r
    assert describe("clip", level="description")["levels"] == ["description"]
    assert describe("clip")["terms"] == ["clip"]
    assert describe("unicl") | {"options": None} == {"name": "soft_clip", "called_as": "unicl", "options": None,
                                                   "levels": list(LEVELS), "terms": ["soft_clip"]}
    assert describe("mgll_released", levels=["disease", "description"])["terms"] == ["softce", "bce", "kl_raw"]


def test_the_record_wins_over_the_config(tmp_path):
    # the config says mgll (all three terms, every level); the record says what actually trained
    cell(tmp_path, "a", label="CLIP", objective={"name": "clip"}, record=describe("clip"))
    cell(tmp_path, "b", label="P only", objective={"name": "mgll"},
         record={"name": "mgll", "levels": ["disease"], "terms": ["pointwise"], "options": {}})
    # an objective the report has never heard of, with the paper's terms: part of the ablation table
    cell(tmp_path, "c", label="mine", objective={"name": "my_objective"},
         record={"name": "my_objective", "levels": ["category", "description"], "terms": ["sclip", "skl"]})
    # a record with a term outside the family: not an ablation row, whatever its config says
    cell(tmp_path, "d", label="other", objective={"name": "mgll"},
         record={"name": "mgll_variant", "levels": ["disease"], "terms": ["sclip", "extra"]})
    res = load_results(tmp_path)
    f = res.frame.set_index("label")
    assert f.at["P only", "levels"] == "disease" and f.at["P only", "n_levels"] == 1
    assert f.at["mine", "levels"] == "category,description" and f.at["mine", "terms"] == "sclip,skl"
    assert [f.at["P only", f"term.{t}"] for t in ("sCLIP", "P", "sKL")] == [False, True, False]
    assert pd.isna(f.at["other", "term.sCLIP"]) and f.at["other", "objective"] == "mgll_variant"
    assert "objective.name" not in res.frame.columns  # the record is not flattened into metric columns
    paths = write_report(tmp_path, formats=["md"])
    abl = paths["tables"]["ablation"]["md"].read_text()
    rows = [[p.strip() for p in line.strip("|").split("|")] for line in abl.splitlines() if line.startswith("| ")]
    assert [r[:4] for r in rows[1:]] == [["CLIP", "", "", ""], ["P only", "", "✓", ""], ["mine", "✓", "", "✓"]]


def test_old_cells_without_a_record_are_still_read(tmp_path):
    cell(tmp_path, "a", label="CLIP", objective={"name": "clip", "level": "disease"})
    cell(tmp_path, "b", label="MGLL", objective={"name": "mgll", "terms": ["sclip", "pointwise"]})
    f = load_results(tmp_path).frame.set_index("label")
    assert f.at["MGLL", "levels"] == ",".join(LEVELS) and f.at["CLIP", "levels"] == "disease"
    assert [f.at["MGLL", f"term.{t}"] for t in ("sCLIP", "P", "sKL")] == [True, True, False]
    assert pd.isna(f.at["MGLL", "terms"])


def test_row_keys_leave_out_the_schemas_non_identity_keys(tmp_path):
    assert "train.checkpoint_every_steps" in NOT_ROW_KEYS and "launcher" in NOT_ROW_KEYS
    for s, every in enumerate((0, 50)):  # a non-identity key inside a section does not split the row
        cell(tmp_path, f"c{s}", label="CLIP", objective={"name": "clip"}, seed=s,
             extra_cfg={"train": {"checkpoint_every_steps": every, "epochs": 2}})
    for s, epochs in enumerate((2, 3)):  # an identity key does
        cell(tmp_path, f"m{s}", label="MGLL", objective={"name": "mgll"}, seed=s, extra_cfg={"train": {"epochs": epochs}})
    g = group_rows(load_results(tmp_path), "label")
    assert g.headers == ["label", "train.epochs"]
    assert [k for k, _ in g.groups] == [("CLIP", 2), ("MGLL", 2), ("MGLL", 3)]
