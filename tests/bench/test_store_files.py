"""The results folder on the file system: files honour the umask; a results_dir that is a file, cannot be
written, or is full is an exit-2 error before any data is built; a disk that fills up during a run stops
the grid with exit 2 and leaves the cell resumable (a real full tmpfs, in a private mount namespace)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import store
from bench.run import main as run_main

REPO = Path(__file__).resolve().parents[2]
FIXED = {
    "data": {"format": "fundus_synth", "size": 96, "test_size": 48, "val_fraction": 0.25, "resolution": 32},
    "image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
    "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2, "context_length": 32},
    "model": {"embed_dim": 32},
    "train": {"epochs": 1, "batch_size": 24, "threads": 1, "log_every": 1},
    "objective": {"name": "clip", "level": "disease"},
    "tasks": [{"name": "linear_probe", "target": "disease_multilabel", "c_grid": [1.0]}],
}


@pytest.fixture
def grid(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "fs.yaml"
    path.write_text(yaml.safe_dump({"name": "fs", "fixed": FIXED}))
    return path


def test_results_files_honour_the_umask(grid, tmp_path, monkeypatch):
    import bench.report

    real = bench.report.write_report
    monkeypatch.setattr(bench.report, "write_report", lambda root: real(root, formats=["md"]))
    old = os.umask(0o027)
    try:
        assert run_main([f"grid={grid}", f"results_dir={tmp_path / 'r'}"]) == 0
    finally:
        os.umask(old)
    root = tmp_path / "r" / "fs"
    files = [p for p in root.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    for want in ("config.yaml", "metrics.json", "done", "last.pt", "encoder.pt", "history.csv", "log.txt",
                 "linear_probe__disease_multilabel.npz", "report.md"):
        assert want in names, want
    assert any(p.suffix == ".npy" for p in files)  # the feature cache
    modes = {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o640}, modes  # group-readable, as the umask says; never 0600
    dirs = {stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_dir()}
    assert dirs == {0o750}


def _no_data_built(tmp_path: Path) -> bool:
    cache = tmp_path / "cache"
    return not cache.exists() or not any(cache.rglob("*.npz"))


def _unwritable(tmp_path: Path) -> str:
    if os.geteuid() == 0:  # root writes through permission bits: a folder of /sys refuses even root
        return "/sys/contrastive-bench-test"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    return str(ro / "results")


@pytest.mark.parametrize("where, says", [
    ("a_file", "is a file, not a folder"),
    ("below_a_file", "is a file, not a folder"),
    ("unwritable", "no permission to write there"),
])
def test_results_dir_problems_exit_2_before_any_data(grid, tmp_path, capsys, where, says):
    (tmp_path / "file").write_text("x")
    results = {"a_file": str(tmp_path / "file"), "below_a_file": str(tmp_path / "file" / "sub"),
               "unwritable": _unwritable(tmp_path)}[where]
    assert run_main([f"grid={grid}", f"results_dir={results}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grid fs:") and f"error: results_dir: " in err and says in err, err
    assert "Traceback" not in err
    assert _no_data_built(tmp_path)


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


def test_files_that_cannot_grow_exit_2_before_any_data(grid, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-m", "bench.run", f"grid={grid}", f"results_dir={tmp_path / 'r'}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "error: results_dir: cannot write to" in out.stderr and "file size limit" in out.stderr
    assert "Traceback" not in out.stderr and _no_data_built(tmp_path)
    assert not (tmp_path / "r").exists()  # the check leaves nothing behind


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && echo ok"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.stdout.strip() == "ok"


FULL_DISK = r"""
set -u
mount -t tmpfs -o size=$SIZE tmpfs "$MNT"
[ "$FILL" = 0 ] || head -c "$FILL" /dev/zero > "$MNT/filler"
"$PY" -m bench.run "grid=$GRID" "results_dir=$MNT/r" > "$OUT/first.out" 2> "$OUT/first.err"
echo $? > "$OUT/first.code"
"$PY" -c "import json, sys; from bench import store; from pathlib import Path
cells = [p for p in Path(sys.argv[1]).glob('*') if (p / 'config.yaml').exists()]
print(json.dumps({p.name: store.cell_state(p) for p in cells}))" "$MNT/r/fs" > "$OUT/states.json"
rm -f "$MNT/filler"
"$PY" -m bench.run "grid=$GRID" "results_dir=$MNT/r" > "$OUT/second.out" 2> "$OUT/second.err"
echo $? > "$OUT/second.code"
"""


@pytest.mark.skipif(not _namespaces_work(), reason="needs unshare -rm and tmpfs mounts (private mount namespace)")
@pytest.mark.parametrize("case", ["full_before", pytest.param("fills_during", marks=pytest.mark.slow)])
def test_a_full_disk(grid, tmp_path, case):
    """A tmpfs too small for the write check: exit 2 before any data. A tmpfs with room for the check but
    not for the checkpoints: exit 2 naming the file, the cell pending (not failed); once space is freed the
    rerun finishes it."""
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    size, fill = ("32k", 0) if case == "full_before" else ("96m", 86 * 2**20)  # last.pt is ~20 MB
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "MNT": str(mnt), "OUT": str(out),
           "GRID": str(grid), "PY": sys.executable, "SIZE": size, "FILL": str(fill)}
    subprocess.run(["unshare", "-rm", "sh", "-c", FULL_DISK], cwd=REPO, env=env, timeout=600, check=True)
    first_err = (out / "first.err").read_text()
    assert int((out / "first.code").read_text()) == 2, first_err[-3000:]
    assert "Traceback" not in first_err
    if case == "full_before":
        assert "error: results_dir: cannot write to" in first_err and "the disk is full" in first_err
        assert _no_data_built(tmp_path)
    else:
        assert "No space left on device" in first_err and "resumes from its last checkpoint" in first_err
        assert list(json.loads((out / "states.json").read_text()).values()) == [store.PENDING]
        assert int((out / "second.code").read_text()) == 0, (out / "second.err").read_text()[-3000:]
