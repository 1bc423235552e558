"""The shipped grids (bench/grids/*.yaml): what each expands to, the dry run, the runner's preflight, every
distinct model built and every distinct objective trained for one epoch through the real training loop."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

import objectives
from bench import train
from bench.cell import build_objective
from bench.config import GRIDS_DIR, merge, parse_overrides, to_container
from bench.data import build_dataset
from bench.grid import load
from bench.models import build_model
from bench.preflight import check
from bench.run import main as run_main

GRIDS = ["smoke", "ablation", "levels", "objectives", "backbones", "missing", "paper_fundus"]
# a batch must fit the smaller draw; the suite's datasets (7500 images each) are left out here:
# tests/bench/test_suites.py preflights the packaged suite on smaller draws of the same variants
SMALL_DATA = ["data.size=48", "data.test_size=24", "train.batch_size=16", "eval.suite=null", "eval.suite_datasets=null",
              "tasks=[linear_probe/disease_multilabel]"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "grids-cache"))


def _key(node) -> str:
    return json.dumps(to_container(node) if OmegaConf.is_config(node) else node, sort_keys=True, default=str)


def test_every_grid_is_shipped():
    assert sorted(p.stem for p in GRIDS_DIR.glob("*.yaml")) == sorted(GRIDS)


def test_ablation_is_table_3():
    raw, cells = load("ablation")
    assert raw["report"] == {"rows": "label", "baseline": "CLIP"}
    rows = {}
    for c in cells:
        rows.setdefault(c.label, set()).add(int(c.config.seed))
    assert list(rows) == ["CLIP", "L_P", "L_sCLIP", "L_sCLIP + L_P", "MGLL"]
    assert all(seeds == {0, 1, 2, 3, 4} for seeds in rows.values())
    by_label = {c.label: to_container(c.config.objective) for c in cells}
    assert by_label["CLIP"]["name"] == "clip"
    assert by_label["L_P"] == {"name": "mgll", "terms": ["pointwise"]}
    assert by_label["L_sCLIP"] == {"name": "mgll", "terms": ["sclip"]}
    assert by_label["L_sCLIP + L_P"] == {"name": "mgll", "terms": ["sclip", "pointwise"]}
    assert by_label["MGLL"] == {"name": "mgll"}  # every term


def test_levels_is_table_4():
    _, cells = load("levels")
    levels = {c.label: list(c.config.objective.levels) for c in cells}
    assert levels == {"1 level": ["disease"], "2 levels": ["disease", "description"],
                      "3 levels": ["category", "disease", "description"]}
    one = next(c for c in cells if c.label == "1 level")
    assert list(one.config.objective.terms) == ["sclip", "pointwise"]  # skl needs two levels
    assert all(c.config.data.format == "fundus_synth" for c in cells)


def test_objectives_grid_covers_the_registry():
    _, cells = load("objectives")
    used = {objectives.OBJECTIVES[c.config.objective.name] for c in cells}
    assert used == set(objectives.OBJECTIVES.values())


def test_backbones_and_missing():
    _, cells = load("backbones")
    images = {_key(c.config.image) for c in cells}
    assert images == {_key({"name": "vit_tiny_custom"}), _key({"name": "timm", "model": "resnet18"})}
    assert {int(c.config.data.resolution) for c in cells} == {64}
    _, cells = load("missing")
    combos = {(c.config.objective.name, float(c.config.data.missing_rate)) for c in cells}
    assert combos == {(o, r) for o in ("clip", "mgll") for r in (0.0, 0.1, 0.3)}


@pytest.mark.parametrize("name", GRIDS)
def test_dry_run(name, tmp_path, capsys):
    assert run_main([f"grid={name}", f"results_dir={tmp_path}", "dry_run=true"]) == 0
    out = capsys.readouterr().out
    _, cells = load(name)
    assert f"{len(cells)} cells in" in out and f"{len(cells)} pending" in out
    assert not (tmp_path / name).exists()


def test_preflight_models_and_one_epoch_of_every_objective(tmp_path):
    """Each grid passes the runner's preflight (on a smaller draw of the same data); every distinct model
    config builds; every distinct objective config trains one epoch through bench.train.pretrain (tiny
    towers), which checks its labels (multi-hot for medclip, two levels for mgll_released) end to end."""
    objectives_seen, models_seen = {}, {}
    for name in GRIDS:
        _, cells = load(name, parse_overrides(SMALL_DATA))
        check(cells)
        for c in cells:
            objectives_seen.setdefault(_key(c.config.objective), c.config)
            models_seen.setdefault(_key({k: to_container(c.config[k]) for k in ("image", "text", "model")})
                                   + str(c.config.data.resolution), c.config)
    for cfg in models_seen.values():
        model = build_model(cfg, build_objective(cfg))
        out = model.preprocess(torch.zeros(2, 64, 64, 3, dtype=torch.uint8))
        assert out.shape == (2, 3, int(cfg.data.resolution), int(cfg.data.resolution))
    tiny = parse_overrides([*SMALL_DATA, "data.resolution=32", "image.width=32", "image.depth=1", "image.heads=2",
                            "text.width=32", "text.layers=1", "text.heads=2", "model.embed_dim=32",
                            "train.epochs=1", "train.batch_size=12", "train.threads=1", "train.log_every=1"])
    torch.set_num_threads(1)
    for i, cfg in enumerate(objectives_seen.values()):
        run_cfg = merge(to_container(cfg), {"image": {"name": "vit_tiny_custom"}}, tiny)
        data = build_dataset(run_cfg.data)
        objective = build_objective(run_cfg)
        train.seed_everything(0)
        model = build_model(run_cfg, objective)
        summary = train.pretrain(model, objective, data.split("train"), run_cfg.train, tmp_path / f"c{i}", 0,
                                 torch.device("cpu"))
        assert summary["train/steps"] >= 1 and torch.isfinite(torch.tensor(summary["train/final_loss"])), \
            OmegaConf.to_yaml(run_cfg.objective)
    assert len(objectives_seen) >= 9
