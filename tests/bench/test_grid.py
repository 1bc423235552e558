"""Grid expansion, cell ids and config validation."""

import pytest
from omegaconf import OmegaConf

from bench.config import ConfigError, grid_path, load_grid_file, parse_overrides
from bench.grid import cell_id, expand, load


def grid(**kw):
    base = {"name": "g", "fixed": {"train": {"epochs": 1}}}
    base.update(kw)
    return base


def test_product_axes_and_seeds():
    cells = expand(grid(axes={"objective": [{"name": "clip"}, {"name": "mgll"}], "train.lr": [0.1, 0.01]}, seeds=[0, 1, 2]))
    assert len(cells) == 2 * 2 * 3
    combos = {(c.config.objective.name, c.config.train.lr, c.config.seed) for c in cells}
    assert len(combos) == 12
    assert all(c.config.train.epochs == 1 for c in cells)


def test_zip_group_varies_together():
    g = grid(axes={"run": [{"label": "A", "objective": {"name": "clip"}}, {"label": "B", "objective": {"name": "mgll", "terms": ["sclip"]}}]})
    cells = expand(g)
    assert [(c.label, c.config.objective.name) for c in cells] == [("A", "clip"), ("B", "mgll")]
    assert list(cells[1].config.objective.terms) == ["sclip"]


def test_zip_times_product():
    g = grid(axes={"run": [{"objective": {"name": "clip"}}, {"objective": {"name": "mgll"}}], "data.missing_rate": [0.0, 0.3]})
    assert len(expand(g)) == 4


def test_cell_id_is_stable_and_order_free():
    a = OmegaConf.create({"seed": 0, "train": {"lr": 1.0, "epochs": 2}})
    b = OmegaConf.create({"train": {"epochs": 2, "lr": 1.0}, "seed": 0})
    assert cell_id(a) == cell_id(b)
    assert cell_id(a) != cell_id(OmegaConf.create({"seed": 1, "train": {"lr": 1.0, "epochs": 2}}))


def test_label_and_results_dir_do_not_change_the_id():
    a = OmegaConf.create({"seed": 0, "label": "x", "results_dir": "r1"})
    b = OmegaConf.create({"seed": 0, "label": "y", "results_dir": "r2"})
    assert cell_id(a) == cell_id(b)


def test_position_does_not_change_the_id():
    one = expand(grid(axes={"objective": [{"name": "clip"}, {"name": "mgll"}]}))
    two = expand(grid(axes={"objective": [{"name": "mgll"}, {"name": "clip"}]}))
    assert {c.id for c in one} == {c.id for c in two}


def test_override_replaces_axis():
    g = grid(axes={"objective": [{"name": "clip"}, {"name": "mgll"}]}, seeds=[0, 1])
    cells = expand(g, parse_overrides(["objective.name=mgll", "seed=5"]))
    assert [(c.config.objective.name, c.config.seed) for c in cells] == [("mgll", 5)]


def test_override_beats_fixed():
    cells = expand(grid(), parse_overrides(["train.epochs=7"]))
    assert cells[0].config.train.epochs == 7


def test_identical_cells_run_once():
    g = grid(axes={"run": [{"label": "a", "objective": {"name": "clip"}}, {"label": "b", "objective": {"name": "clip"}}]})
    assert len(expand(g)) == 1


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="train.epoch"):
        expand(grid(), parse_overrides(["train.epoch=3"]))
    with pytest.raises(ConfigError, match="fixed.*trian"):
        expand({"name": "g", "fixed": {"trian": {"epochs": 1}}})


def test_zip_entry_must_be_mapping():
    with pytest.raises(ConfigError, match="zip group"):
        expand(grid(axes={"run": ["clip", "mgll"]}))


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["epochs"])


def test_unknown_grid_name_lists_packaged(tmp_path):
    with pytest.raises(ConfigError, match="smoke"):
        grid_path("smok")
    bad = tmp_path / "g.yaml"
    bad.write_text("name: x\naxis: {}\n")
    with pytest.raises(ConfigError, match="unknown grid key"):
        load_grid_file(bad)


def test_packaged_smoke_grid_expands():
    raw, cells = load("smoke")
    assert raw["name"] == "smoke"
    assert sorted(c.label for c in cells) == ["CLIP", "MGLL"]
    assert {c.config.objective.name for c in cells} == {"clip", "mgll"}


def test_checkpoint_frequency_is_not_part_of_the_id():
    a = expand(grid(), parse_overrides(["train.checkpoint_every_steps=5"]))[0]
    b = expand(grid())[0]
    c = expand(grid(), parse_overrides(["train.epochs=3"]))[0]
    assert a.id == b.id != c.id
    assert a.config.train.checkpoint_every_steps == 5  # still in the resolved config


def test_launcher_is_not_part_of_the_id():
    a = expand(grid(), parse_overrides(["launcher.name=slurm", "launcher.profile=local"]))[0]
    assert a.id == expand(grid())[0].id


def test_folder_named_like_a_grid_is_not_a_grid_file(tmp_path, monkeypatch):
    (tmp_path / "smoke").mkdir()
    monkeypatch.chdir(tmp_path)
    assert grid_path("smoke").name == "smoke.yaml"  # the packaged grid, not ./smoke/
