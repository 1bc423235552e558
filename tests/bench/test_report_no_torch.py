"""The report is light: ``python -m bench.report`` on a results folder never imports torch (it reads
metrics.json and the saved predictions with numpy; the metrics come from ``tasks.metrics``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
TASK = "linear_probe/disease_multilabel"


def _grid(root: Path) -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((40, 3)) < 0.4).astype(int)
    for label, obj in (("CLIP", {"name": "clip"}), ("MGLL", {"name": "mgll"})):
        for seed in (0, 1):
            d = root / f"{label.lower()}{seed}"
            (d / "predictions").mkdir(parents=True)
            cfg = {"grid": "tiny", "label": label, "seed": seed, "objective": obj, "tasks": [TASK],
                   "data": {"levels": ["disease", "description"]}, "report": {"baseline": "CLIP"}}
            (d / "config.yaml").write_text(yaml.safe_dump(cfg))
            (d / "metrics.json").write_text(json.dumps({f"{TASK}/auc": 0.7 + 0.01 * seed + (label == "MGLL") * 0.1,
                                                        f"{TASK}/map": 0.5, "seed": seed}))
            np.savez(d / "predictions" / f"{TASK.replace('/', '__')}.npz", y_true=y, scores=rng.random((40, 3)),
                     kind="multilabel")
            (d / "done").write_text("")


def test_report_never_imports_torch(tmp_path):
    _grid(tmp_path / "tiny")
    code = (
        "import sys\n"
        "import tasks, tasks.metrics\n"
        "from bench.report import main\n"
        f"rc = main([{str(tmp_path / 'tiny')!r}, 'n_boot=50', 'allow_missing=true'])\n"
        "assert rc == 0, rc\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print('TORCH', loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "TORCH []" in out.stdout, out.stdout[-2000:]
    assert (tmp_path / "tiny" / "report" / "report.md").exists()
