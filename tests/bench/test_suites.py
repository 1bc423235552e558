"""Downstream suites: the evaluation plan, datasets of two formats in one suite, features computed once per
(weights, dataset, split), label-fraction lists, the overlap check, eval-only cells and model.init, the
packaged suite and grids, and bad suite files (exit status 2 before any training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from bench.config import merge
from bench.errors import ConfigError
from bench.suites import eval_plan, expand_entry, load_suite

TINY = {
    "data": {"format": "fundus_synth", "size": 96, "test_size": 48, "val_fraction": 0.25, "resolution": 32},
    "image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
    "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2, "context_length": 32},
    "model": {"embed_dim": 32},
    "train": {"epochs": 1, "batch_size": 24, "threads": 1},
    "objective": {"name": "clip", "level": "disease"},
    "tasks": [{"name": "linear_probe", "target": "disease_multilabel", "c": 1.0}],
}
SMALL_VARIANT = {"size": 80, "test_size": 40, "val_fraction": 0.25}


def write_csv_dataset(root: Path, n: int = 60) -> Path:
    """A downstream_csv table of n PNGs whose class is the image's brightness (dark / bright)."""
    rng = np.random.default_rng(0)
    rows = ["image,label,split"]
    for i in range(n):
        label = (i // 4) % 2
        img = rng.integers(0, 80, (32, 32, 3)) + 150 * label
        (root / "img").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.astype(np.uint8)).save(root / "img" / f"{i}.png")
        split = ("train", "train", "val", "test")[i % 4]
        rows.append(f"img/{i}.png,{label},{split}")
    (root / "t.csv").write_text("\n".join(rows) + "\n")
    return root / "t.csv"


def write_suite(path: Path, datasets: list) -> Path:
    path.write_text(yaml.safe_dump({"name": path.stem, "datasets": datasets}, sort_keys=False))
    return path


def two_format_suite(tmp_path: Path) -> Path:
    csv = write_csv_dataset(tmp_path / "clinic")
    return write_suite(tmp_path / "two.yaml", [
        {"name": "dr", "data": {"format": "fundus_synth", "variant": "dr", **SMALL_VARIANT},
         "tasks": [{"name": "linear_probe", "target": "dr_grade", "c": 1.0, "label_fraction": [0.5, 1.0]},
                   {"name": "linear_probe", "target": "dme", "c": 1.0}]},
        {"name": "clinic", "data": {"format": "downstream_csv", "path": str(csv), "task_kind": "multiclass",
                                     "task_name": "bright"},
         "tasks": [{"name": "linear_probe", "target": "bright", "c": 1.0}]},
    ])


# -- the plan ----------------------------------------------------------------------------------------------
def test_label_fraction_list_gives_one_key_per_fraction():
    runs = expand_entry({"name": "linear_probe", "target": "t", "label_fraction": [0.01, 0.1, 1.0], "c": 1})
    assert [r.key for r in runs] == ["linear_probe/t/lf0.01", "linear_probe/t/lf0.1", "linear_probe/t/lf1.0"]
    assert [r.options["label_fraction"] for r in runs] == [0.01, 0.1, 1.0]
    assert expand_entry({"name": "linear_probe", "target": "t", "label_fraction": 0.1})[0].key == "linear_probe/t"
    assert expand_entry("linear_probe/t")[0].key == "linear_probe/t"


def test_plan_orders_datasets_and_entries_can_name_a_suite_dataset(tmp_path):
    suite = two_format_suite(tmp_path)
    cfg = merge(TINY, {"eval": {"suite": str(suite)},
                       "tasks": ["linear_probe/disease_multilabel",
                                 {"name": "finetune", "dataset": "dr", "target": "dr_grade", "epochs": 1}]})
    plan = eval_plan(cfg)
    assert [e.name for e in plan] == [None, "dr", "clinic"]
    assert [r.key for r in plan[1].runs] == ["finetune/dr_grade", "linear_probe/dr_grade/lf0.5",
                                              "linear_probe/dr_grade/lf1.0", "linear_probe/dme"]
    assert plan[1].data["resolution"] == 32  # the cell's data.resolution fills in
    only = eval_plan(merge(TINY, {"eval": {"suite": str(suite), "suite_datasets": ["clinic"]}}))
    assert [e.name for e in only] == [None, "clinic"]
    with pytest.raises(ConfigError, match=r"suite_datasets names \['clnic'\].*allowed: \['dr', 'clinic'\]"):
        eval_plan(merge(TINY, {"eval": {"suite": str(suite), "suite_datasets": ["clnic"]}}))


def test_task_entry_with_its_own_data(tmp_path):
    csv = write_csv_dataset(tmp_path / "c")
    cfg = merge(TINY, {"tasks": [{"name": "linear_probe", "target": "bright", "c": 1.0, "dataset": "clinic",
                                  "data": {"format": "downstream_csv", "path": str(csv), "task_kind": "multiclass",
                                           "task_name": "bright"}}]})
    plan = eval_plan(cfg)
    assert [(e.name, [r.key for r in e.runs]) for e in plan] == [("clinic", ["linear_probe/bright"])]


def test_packaged_suite_and_its_cell_ids():
    suite = load_suite("fundus_synth_downstream")
    assert [d.name for d in suite.datasets] == ["dr", "glaucoma", "amd", "multidisease"]
    assert [d.data["variant"] for d in suite.datasets] == ["dr", "glaucoma", "amd", "multidisease"]
    from bench.grid import cell_id

    base = merge(TINY)
    # keys added with suites leave the id of a cell that does not use them unchanged
    assert cell_id(merge(TINY, {"eval_only": False, "model": {"init": None}, "eval": {"suite": None}})) == cell_id(base)
    assert cell_id(merge(TINY, {"eval": {"suite": "fundus_synth_downstream"}})) != cell_id(base)
    # eval-only cells: the training options change nothing
    a = merge(TINY, {"eval_only": True})
    b = merge(TINY, {"eval_only": True, "train": {"epochs": 7}})
    assert cell_id(a) == cell_id(b) != cell_id(base)


def test_packaged_grids_point_at_the_suite():
    from bench.grid import load

    for name in ("ablation", "levels", "missing"):
        raw, cells = load(name)
        assert raw["seeds"] == [0, 1, 2, 3, 4]
        assert all(c.config.eval.suite == "fundus_synth_downstream" and list(c.config.eval.suite_datasets) == ["multidisease"]
                   for c in cells)
    raw, cells = load("paper_fundus")
    plan = eval_plan(cells[0].config)
    names = {e.name: [r.name for r in e.runs] for e in plan}
    assert set(names) >= {"dr", "glaucoma", "amd", "multidisease"}
    assert all("linear_probe" in v and "finetune" in v for k, v in names.items() if k is not None)


# -- running cells -------------------------------------------------------------------------------------------
def _run(cfg, cell_dir: Path) -> dict:
    from bench.cell import execute

    state = execute(cfg, cell_dir)
    assert state == "done", (cell_dir / "error.json").read_text() if (cell_dir / "error.json").exists() else state
    return json.loads((cell_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_suite_of_two_formats_evaluates_both_and_encodes_each_split_once(tmp_path, monkeypatch):
    import tasks.features as features

    calls = []
    real = features.encode_images
    monkeypatch.setattr(features, "encode_images", lambda model, ds, *a, **k: calls.append(ds.name) or real(model, ds, *a, **k))
    cfg = merge(TINY, {"eval": {"suite": str(two_format_suite(tmp_path))}})
    m = _run(cfg, tmp_path / "cell")
    for key in ("linear_probe/disease_multilabel/auc", "dr/linear_probe/dr_grade/lf0.5/auc",
                "dr/linear_probe/dr_grade/lf1.0/auc", "dr/linear_probe/dme/auc", "clinic/linear_probe/bright/auc"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["dr/linear_probe/dr_grade/lf0.5/n_train"] < m["dr/linear_probe/dr_grade/lf1.0/n_train"] == 60
    assert m["clinic/linear_probe/bright/auc"] > 0.9  # brightness is trivially separable
    # c fixed: train + test per dataset, each once, whatever the number of tasks on it
    assert len(calls) == len(set(calls)) == 6 == m["eval/encodes"]
    assert m["eval/datasets"] == 3
    assert (tmp_path / "cell" / "predictions" / "dr__linear_probe__dme.npz").is_file()


@pytest.mark.slow
def test_four_downstream_datasets_with_lp_encode_each_split_exactly_once(tmp_path, monkeypatch):
    import tasks.features as features

    calls = []
    real = features.encode_images
    monkeypatch.setattr(features, "encode_images", lambda model, ds, *a, **k: calls.append(ds.name) or real(model, ds, *a, **k))
    suite = write_suite(tmp_path / "four.yaml", [
        {"name": v, "data": {"format": "fundus_synth", "variant": v, **SMALL_VARIANT},
         "tasks": [{"name": "linear_probe", "target": t, "c_grid": [0.1, 1.0], "label_fraction": [0.5, 1.0]}]}
        for v, t in (("dr", "dr_grade"), ("glaucoma", "glaucoma"), ("amd", "amd"), ("multidisease", "disease_multilabel"))
    ])
    cfg = merge(TINY, {"tasks": [], "eval": {"suite": str(suite), "feature_cache": False}})
    m = _run(cfg, tmp_path / "cell")
    assert m["eval/encodes"] == 12 and len(calls) == 12 and len(set(calls)) == 12  # 4 datasets x 3 splits
    assert m["eval/encode_s"] > 0 and m["eval/time_s"] >= m["eval/encode_s"]


@pytest.mark.slow
def test_eval_only_cell_of_a_saved_encoder_reproduces_the_training_cell(tmp_path):
    csv = write_csv_dataset(tmp_path / "c")
    entry = {"name": "linear_probe", "target": "bright", "dataset": "clinic", "c_grid": [0.1, 1.0],
             "data": {"format": "downstream_csv", "path": str(csv), "task_kind": "multiclass", "task_name": "bright"}}
    trained = _run(merge(TINY, {"tasks": [*TINY["tasks"], entry]}), tmp_path / "train")
    assert (tmp_path / "train" / "checkpoints" / "encoder.pt").is_file()
    for init in (tmp_path / "train", tmp_path / "train" / "checkpoints" / "encoder.pt"):
        cfg = merge(TINY, {"tasks": [*TINY["tasks"], entry], "eval_only": True, "model": {"init": str(init)}})
        out = tmp_path / f"eval-{init.name}"
        ev = _run(cfg, out)
        keys = [k for k in trained if k.startswith(("linear_probe/", "clinic/")) and not k.endswith("time_s")]
        assert len(keys) > 10
        for k in keys:
            assert ev[k] == trained[k], k
        assert not any(k.startswith("train/") for k in ev) and not (out / "checkpoints").exists()
        # the record names the objective the weights were trained with, and where
        assert ev["objective"] == {**trained["objective"], "eval_only": True, "init": str(init),
                                   "trained_in": str(tmp_path / "train")}
    other = _run(merge(TINY, {"eval_only": True}), tmp_path / "eval-random")
    assert other["objective"] == {"name": "random_init", "eval_only": True, "init": None}


@pytest.mark.slow
def test_model_init_from_timm_style_image_weights(tmp_path):
    import torch

    from bench.models import build_model

    cfg = merge(TINY, {"seed": 3})
    torch.manual_seed(3)
    donor = build_model(cfg)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in donor.visual.state_dict().items()}, str(tmp_path / "w.safetensors"))
    from bench.models.init import initial_model

    model = initial_model(merge(TINY, {"model": {"init": str(tmp_path / "w.safetensors")}}))
    for k, v in donor.visual.state_dict().items():
        assert torch.equal(model.visual.state_dict()[k], v), k


def test_model_init_folder_without_encoder_is_refused(tmp_path):
    from bench.models.init import resolve_init

    with pytest.raises(ConfigError, match="without checkpoints/encoder.pt"):
        resolve_init(str(tmp_path))


# -- overlap -----------------------------------------------------------------------------------------------
def test_overlap_by_id_patient_or_pixels_is_refused_naming_both():
    from bench.data.sample import Sample
    from bench.data.dataset import MultiGranularDataset
    from bench.overlap import DataOverlapError, check_overlap

    def ds(ids, values, patients=None):
        patients = patients or [None] * len(ids)
        return MultiGranularDataset([Sample(i, np.full((4, 4, 3), v, np.uint8), {}, patient_id=p)
                                     for i, v, p in zip(ids, values, patients)], [])

    pre = ds(["a", "b"], [1, 2], ["p1", "p2"])
    check_overlap(pre, ds(["c", "d"], [3, 4], ["p3", "p4"]), pretrain_name="PRE", other_name="OTHER")
    for other, what in ((ds(["a", "x"], [9, 8]), "1 sample id(s) ('a')"),
                        (ds(["x"], [9], ["p2"]), "1 patient(s) ('p2')"),
                        (ds(["x", "y"], [2, 7]), "1 identical image(s) (e.g. OTHER sample(s) 'x')")):
        with pytest.raises(DataOverlapError, match="OTHER overlaps PRE") as e:
            check_overlap(pre, other, pretrain_name="PRE", other_name="OTHER")
        assert what in str(e.value)


@pytest.mark.slow
def test_a_suite_dataset_equal_to_the_pretraining_corpus_stops_the_run(tmp_path, capsys):
    from bench.run import main

    suite = write_suite(tmp_path / "same.yaml", [
        {"name": "copy", "data": dict(TINY["data"]), "tasks": [{"name": "linear_probe", "target": "glaucoma", "c": 1.0}]}])
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "fixed": {**TINY, "eval": {"suite": str(suite)}}}))
    assert main([f"grid={grid}", f"results_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert "dataset 'copy'" in err and "overlaps the pretraining corpus" in err and str(suite) in err
    assert "sample id(s)" in err and "identical image(s)" in err
    assert not list((tmp_path / "r").rglob("*.pt"))


# -- bad suite files: exit 2 before training, naming the file, the entry and the allowed values ----------------
def _variant(**extra):
    return {"format": "fundus_synth", "variant": "glaucoma", **SMALL_VARIANT, **extra}


BAD_SUITES = [
    # (datasets, text the message must contain)
    ([{"name": "x", "data": {"format": "jsnol", "path": "x"}, "tasks": ["linear_probe/t"]}],
     ["datasets[0] (x)", "data.format='jsnol' is unknown", "did you mean jsonl", "allowed:"]),
    ([{"name": "x", "data": _variant(), "tasks": ["linear_prob/glaucoma"]}],
     ["datasets[0] (x)", "unknown task 'linear_prob'", "allowed:", "linear_probe"]),
    ([{"name": "x", "data": _variant(), "tasks": ["linear_probe/dr_grade"]}],
     ["datasets[0] (x)", "no downstream task 'dr_grade'", "allowed: ['glaucoma']"]),
    ([{"name": "x", "data": _variant(val_fraction=0.0), "tasks": [{"name": "linear_probe", "target": "glaucoma"}]}],
     ["datasets[0] (x)", "needs the split(s) ['val']"]),
    ([{"name": "x", "data": _variant(), "tasks": ["linear_probe/glaucoma"], "taks": []}],
     ["datasets[0]", "taks", "tasks"]),
    ([{"name": "x", "data": _variant(variant="glaucom"), "tasks": ["linear_probe/glaucoma"]}],
     ["datasets[0] (x)", "glaucom", "glaucoma"]),
    ([{"name": "x", "data": _variant(), "tasks": [{"name": "linear_probe", "target": "glaucoma", "c_grd": [1]}]}],
     ["datasets[0] (x)", "c_grd is not an option", "c_grid"]),
]


@pytest.mark.parametrize("datasets,expected", BAD_SUITES, ids=[e[1] for _, e in BAD_SUITES])
def test_bad_suite_file_exits_2_before_training(datasets, expected, tmp_path, capsys):
    from bench.run import main

    suite = write_suite(tmp_path / "bad_suite.yaml", datasets)
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "fixed": TINY}))
    code = main([f"grid={grid}", f"results_dir={tmp_path / 'r'}", f"eval.suite={suite}"])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    for text in [str(suite), *expected]:
        assert text in err, (text, err)
    assert "Traceback" not in out + err
    assert not list((tmp_path / "r").rglob("*.pt")) and not list((tmp_path / "r").rglob("metrics.json"))


def test_unknown_suite_name_exits_2(tmp_path, capsys):
    from bench.run import main

    assert main(["grid=smoke", f"results_dir={tmp_path}", "eval.suite=fundus_synth_downstrem", "dry_run=true"]) == 2
    err = capsys.readouterr().err
    assert "eval.suite='fundus_synth_downstrem' is unknown" in err and "fundus_synth_downstream" in err


@pytest.mark.slow
def test_packaged_suite_and_paper_fundus_pass_the_preflight_on_smaller_draws(tmp_path, monkeypatch):
    """The packaged suite's datasets and tasks (and paper_fundus's fine-tune entries on them), checked by the
    preflight on smaller draws of the same variants (the full ones hold 7500 images each)."""
    from bench.grid import expand, load
    from bench.preflight import check

    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path / "cache"))
    suite = load_suite("fundus_synth_downstream")
    small = write_suite(tmp_path / "fundus_synth_downstream.yaml", [
        {"name": d.name, "data": {**d.data, "size": 40, "test_size": 24}, "tasks": d.tasks} for d in suite.datasets])
    raw, _ = load("paper_fundus")
    raw["fixed"]["eval"] = {"suite": str(small)}
    raw["fixed"]["data"].update(size=48, test_size=24)
    raw["fixed"]["train"]["batch_size"] = 16
    raw["axes"]["run"] = raw["axes"]["run"][:1]
    cells = expand(raw, where="paper_fundus (small)")
    check(cells)  # raises PreflightError with every problem
    plan = eval_plan(cells[0].config)
    assert sum(len(e.runs) for e in plan) == 8  # LP + FT on each of the four datasets


def test_task_keys_lists_every_metric_prefix_without_torch(tmp_path):
    import subprocess
    import sys

    suite = two_format_suite(tmp_path)
    cfg = {**TINY, "eval": {"suite": str(suite)}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    code = ("import json, sys; from bench.suites import task_keys; "
            f"k = task_keys(json.load(open({str(tmp_path / 'cfg.json')!r}))); "
            "print(json.dumps([d['key'] for d in k])); print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[2])
    keys, torch_loaded = r.stdout.strip().splitlines()
    assert json.loads(keys) == ["linear_probe/disease_multilabel", "dr/linear_probe/dr_grade/lf0.5",
                                "dr/linear_probe/dr_grade/lf1.0", "dr/linear_probe/dme", "clinic/linear_probe/bright"]
    assert torch_loaded == "False"


def test_finetune_presets():
    import tasks
    from bench.errors import ConfigError as _CE

    paper = tasks.build("finetune", target="t", preset="paper").options
    assert (paper.epochs, paper.batch_size, paper.weight_decay, paper.warmup_epochs, paper.clip_grad) == (50, 32, 1e-3, 1.0, 10.0)
    assert paper.lr == pytest.approx(1e-3 * 32 / 256)
    assert tasks.build("finetune", target="t", preset="paper", batch_size=64).options.lr == pytest.approx(2.5e-4)
    assert tasks.build("finetune", target="t", preset="paper", epochs=5, lr=1e-2).options.epochs == 5
    cpu = tasks.build("finetune", target="t").options
    assert (cpu.preset, cpu.epochs, cpu.lr, cpu.warmup_epochs) == ("cpu", 3, 1e-4, 0.0)
    with pytest.raises(_CE, match="preset='papr' is not allowed.*did you mean paper.*allowed: cpu, paper"):
        tasks.build("finetune", target="t", preset="papr")
