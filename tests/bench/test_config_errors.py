"""Bad configurations, one per row, across every section: each stops ``bench.run`` with exit status 2 before
anything trains, names the key (or the value) in the message, and prints no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.run import main as run_main

TINY = {
    "data": {"format": "fundus_synth", "size": 96, "test_size": 48, "val_fraction": 0.25, "resolution": 32},
    "image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
    "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2, "context_length": 32},
    "model": {"embed_dim": 32},
    "train": {"epochs": 1, "batch_size": 24, "threads": 1},
    "tasks": [{"name": "linear_probe", "target": "disease_multilabel", "c": 1.0}],
}

CASES = [
    # (overrides, text the message must contain)
    (["train.epochs=abc"], "train.epochs='abc' must be an integer"),
    (["train.epochs=0"], "train.epochs=0 must be >= 1"),
    (["train.epochs=-1"], "train.epochs=-1 must be >= 1"),
    (["train.lr=-1"], "train.lr=-1 must be > 0"),
    (["train.batch_size=1.5"], "train.batch_size=1.5 must be an integer"),
    (["train.batch_size=100000"], "train.batch_size=100000 is larger than the training split"),
    (["train.augment=sideways"], "train.augment='sideways' is not allowed"),
    (["train.betas=[0.9,2]"], "train.betas[1]=2 must be"),
    (["train.grad_clip=-1"], "train.grad_clip=-1 must be >= 0"),
    (["train.threads=-1"], "train.threads=-1 must be >= 0"),
    (["train.epoch=3"], "train.epoch is not an option of the train section (did you mean train.epochs"),
    (["train.device=cuda:7"], "train.device='cuda:7'"),
    (["model.precision=fp8"], "model.precision='fp8' is not allowed; allowed: auto, bf16, fp16, fp32"),
    (["model.embed_dim=0"], "model.embed_dim=0 must be >= 1"),
    (["model.normalize_embeddings=yes"], "model.normalize_embeddings='yes' must be true or false"),
    (["model.logit_scale_init=1000"], "model.logit_scale_init=1000"),
    (["seed=x"], "seed='x' must be an integer"),
    (["dry_run=maybe"], "dry_run='maybe' must be true or false"),
    (["label_x=1"], "label_x is not an option of the run config"),
    (["image.name=vit_tiny_custm"], "image.name='vit_tiny_custm' is unknown (did you mean vit_tiny_custom"),
    (["image.widht=32"], "image.widht is not an option of image.name=vit_tiny_custom (did you mean image.width"),
    (["image.patch_size=5"], "image.patch_size=5 must divide data.resolution=32"),
    (["image.depth=two"], "image.depth='two' must be an integer"),
    (["text.name=tiny_transformr"], "text.name='tiny_transformr' is unknown"),
    (["text.layers=0"], "text.layers=0 must be >= 1"),
    (["text.context_length=1"], "text.context_length=1 must be >= 2"),
    (["data.format=fundus_synht"], "data.format='fundus_synht' is unknown (did you mean fundus_synth"),
    (["data.resolution=-3"], "data.resolution=-3 must be >= 1"),
    (["data.levels=[disease,nope]"], "nope"),
    (["data.missing_rate=2"], "data.missing_rate=2 must be in [0, 1]"),
    (["data.on_bad_sample=ignore"], "data.on_bad_sample='ignore' is not allowed; allowed: error, skip"),
    (["data.sizee=10"], "data.sizee is not an option of data.format=fundus_synth (did you mean data.size"),
    (["data=digits", "tasks=[{name: linear_probe, target: digit, c: 1.0}]", "data.test_fraction=0"],
     "needs the split(s) ['test']"),
    (["objective.name=mglll"], "mglll"),
    (["objective=mgll", "objective.terms=[sclip,nope]"], "nope"),
    (["objective=mgll", "objective.weights=[1,2]"], "weights"),
    (["objective.level=nope"], "nope"),
    (["objective=clip", "objective.temperature=0.1"], "temperature"),
    (["tasks=[linear_probe/disease]"], "'disease'"),
    (["tasks=[linar_probe/disease_multilabel]"], "linar_probe"),
    (["tasks=[{name: linear_probe, target: disease_multilabel, label_fraction: 0}]"], "label_fraction=0.0 must be in (0, 1]"),
    (["tasks=[{name: linear_probe, target: disease_multilabel, c_grd: [1]}]"], "c_grd is not an option (did you mean c_grid"),
    (["tasks=notalist"], "tasks='notalist' must be a list"),
    (["launcher.name=warp"], "launcher.name='warp' is unknown"),
    (["launcher=local", "launcher.paralel=2"], "launcher.paralel is not an option of launcher.name=local (did you mean launcher.parallel"),
    (["launcher=slurm", "launcher.wait=no"], "launcher.wait='no' must be true or false"),
    (["launcher=local", "launcher.parallel=0"], "launcher.parallel=0 must be >= 1"),
    (["epochs"], "is not of the form key=value"),
    (["grid=nonexistent_grid"], "grid='nonexistent_grid' is unknown"),
]


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("grid") / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "fixed": {**TINY, "objective": {"name": "clip", "level": "disease"}}}))
    return path


def test_at_least_thirty_cases_over_every_section():
    keys = {o.split("=")[0].split(".")[0] for overrides, _ in CASES for o in overrides}
    assert len(CASES) >= 30
    assert {"train", "model", "image", "text", "data", "objective", "tasks", "launcher", "seed", "grid"} <= keys


@pytest.mark.parametrize("overrides,expected", CASES, ids=[" ".join(o) for o, _ in CASES])
def test_bad_config_exits_2_naming_the_key_before_training(overrides, expected, grid_file, tmp_path, capsys):
    args = [a for a in overrides if a.startswith("grid=")] or [f"grid={grid_file}"]
    rest = [a for a in overrides if not a.startswith("grid=")]
    code = run_main([*args, f"results_dir={tmp_path / 'r'}", *rest])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert expected in err, err
    assert "Traceback" not in out + err
    assert not list((tmp_path / "r").rglob("*.pt")), "nothing may train"
    assert not list((tmp_path / "r").rglob("metrics.json"))


def test_all_problems_of_the_grid_are_reported_at_once(tmp_path, capsys):
    grid = tmp_path / "two.yaml"
    grid.write_text(yaml.safe_dump({"name": "two", "fixed": TINY, "axes": {"run": [
        {"label": "A", "objective": {"name": "clip", "level": "nope"}},
        {"label": "B", "objective": {"name": "mgll"}, "tasks": ["linear_probe/disease"]},
    ]}}))
    assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s) found before running" in err and "nope" in err and "'disease'" in err


def test_a_real_process_prints_no_traceback(grid_file, tmp_path):
    r = subprocess.run([sys.executable, "-m", "bench.run", f"grid={grid_file}", f"results_dir={tmp_path}",
                        "train.epochs=abc"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "train.epochs='abc' must be an integer" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
