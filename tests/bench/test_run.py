"""End to end through ``python -m bench.run`` on a tiny grid: cells run once, states, failures, report."""

import json

import pytest
import yaml

from bench import store
from bench.report import main as report_main
from bench.run import main as run_main

TINY = {
    "name": "tiny",
    "fixed": {
        "data": {"format": "fundus_synth", "size": 96, "test_size": 48, "val_fraction": 0.25, "resolution": 32},
        "image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
        "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2, "context_length": 32},
        "model": {"embed_dim": 32},
        "train": {"epochs": 2, "batch_size": 24, "threads": 1, "log_every": 1},
        "tasks": [{"name": "linear_probe", "target": "disease_multilabel", "c_grid": [0.1, 1.0]}],
    },
    "axes": {
        "run": [
            {"label": "CLIP", "objective": {"name": "clip", "level": "disease"}},
            {"label": "MGLL", "objective": {"name": "mgll", "levels": ["disease", "description"]}},
        ]
    },
    "seeds": [0],
}


@pytest.fixture
def grid_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def run(grid_file, tmp_path, *extra):
    return run_main([f"grid={grid_file}", f"results_dir={tmp_path / 'results'}", *extra])


def test_grid_runs_once_then_skips(grid_file, tmp_path, capsys):
    assert run(grid_file, tmp_path) == 0
    root = tmp_path / "results" / "tiny"
    cells = sorted(p for p in root.iterdir() if p.is_dir() and p.name != "report")
    assert len(cells) == 2
    for cell in cells:
        assert store.cell_state(cell) == store.DONE
        metrics = json.loads((cell / "metrics.json").read_text())
        assert 0.0 <= metrics["linear_probe/disease_multilabel/auc"] <= 1.0
        assert metrics["train/steps"] == 2 * (72 // 24)
        assert metrics["seed"] == 0 and metrics["device"] == "cpu"
        assert "torch" in metrics["versions"]
        cfg = yaml.safe_load((cell / "config.yaml").read_text())
        assert cfg["grid"] == "tiny"
        assert (cell / "history.csv").read_text().startswith("step,")
        assert (cell / "checkpoints" / "last.pt").exists()
        assert (cell / "checkpoints" / "encoder.pt").exists()
        import numpy as np

        with np.load(cell / "predictions" / "linear_probe__disease_multilabel.npz") as pred:
            assert str(pred["kind"]) == "multilabel"
            assert pred["scores"].shape == pred["y_true"].shape == (48, len(pred["scores"][0]))
    out = capsys.readouterr().out
    assert "table:" in out and "CLIP" in out and "MGLL" in out
    mtimes = {c.name: (c / "done").stat().st_mtime for c in cells}

    capsys.readouterr()
    assert run(grid_file, tmp_path) == 0
    err = capsys.readouterr().err
    assert "2 already done, 0 to run" in err
    assert mtimes == {c.name: (c / "done").stat().st_mtime for c in cells}

    assert run(grid_file, tmp_path, "dry_run=true") == 0
    assert "2 done" in capsys.readouterr().out

    assert report_main([str(root)]) == 0
    table = (root / "report" / "table.md").read_text()
    assert "CLIP" in table and "MGLL" in table and "linear_probe/disease_multilabel/auc" in table


def test_failed_cell_is_recorded_and_not_done(grid_file, tmp_path, capsys):
    # a batch larger than the training set fails inside the cell when the preflight (which finds it) is off
    code = run(grid_file, tmp_path, "train.batch_size=5000", "preflight=false")
    assert code == 1
    root = tmp_path / "results" / "tiny"
    cells = [p for p in root.iterdir() if p.is_dir()]
    assert len(cells) == 2
    for cell in cells:
        assert store.cell_state(cell) == store.FAILED
        assert not (cell / "done").exists()
        err = json.loads((cell / "error.json").read_text())
        assert err["type"] == "ValueError" and "batch_size" in err["message"] and "Traceback" in err["traceback"]
    assert capsys.readouterr().out.count("FAILED") == 2
    # failed cells are not rerun unless asked
    assert run(grid_file, tmp_path, "train.batch_size=5000", "preflight=false") == 1
    assert "were not rerun" in capsys.readouterr().out


def test_config_errors_exit_2_before_running(grid_file, tmp_path, capsys):
    assert run(grid_file, tmp_path, "train.epoch=3") == 2
    assert "train.epoch" in capsys.readouterr().err
    assert run(grid_file, tmp_path, "objective.name=mglll") == 2
    err = capsys.readouterr().err
    assert "mglll" in err and "mgll" in err
    assert not (tmp_path / "results" / "tiny").exists()


def test_help(capsys):
    assert run_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "grid=NAME" in out and "smoke" in out


def test_bad_data_stops_the_grid_with_exit_2_and_every_problem(tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    meta = {"levels": ["disease"], "tasks": {"t": {"kind": "multiclass", "classes": ["no", "yes"]}}}
    rows = [{"meta": meta}] + [
        {"id": f"s{i}", "image": f"images/missing{i}.png", "texts": {"disease": "x"}, "labels": {"disease": ["x"]},
         "targets": {"t": i % 2}, "split": "train"}
        for i in range(3)
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    grid = tmp_path / "bad.yaml"
    grid.write_text(yaml.safe_dump({"name": "bad", "fixed": {
        "data": {"format": "jsonl", "path": str(manifest)}, "objective": {"name": "clip"}, "tasks": ["linear_probe/t"]}}))
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'results'}"]) == 2
    err = capsys.readouterr().err
    for i in range(3):  # every problem, each with its file
        assert f"missing{i}.png" in err
    assert not (tmp_path / "results" / "bad").exists()
