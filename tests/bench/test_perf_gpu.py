"""The prepared GPU check (``python -m bench.perf gpu``): it skips cleanly without CUDA, and its parts run end to
end on the CPU with a tiny open_clip config (``--device cpu --tiny``), where the harness and open_clip's own
training loop must agree on the first step's loss (same weights, same batch)."""

from __future__ import annotations

import json

import pytest
import torch

from bench.perf_gpu import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the check would run")
def test_skips_cleanly_without_cuda(capsys):
    assert main([]) == 0
    assert "no CUDA device: the GPU check is skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_dry_run_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "gpu.json"
    rc = main(["--device", "cpu", "--tiny", "--resolution", "32", "--batch-size", "8", "--steps", "2", "--warmup", "1",
               "--parts", "sync,throughput,objectives", "--no-compile", "--json", str(out)])
    res = json.loads(out.read_text())
    assert rc == 0, res
    assert all(v["ok"] for v in res["sync"].values())
    first = res["throughput"]["first_step_loss"]
    assert first["ok"] and first["harness"] == pytest.approx(first["open_clip"], rel=1e-5)
    rows = {k: v for k, v in res["throughput"].items() if "img_s" in v}
    assert {"open_clip train_one_epoch (fp32)", "harness clip (fp32)", "harness mgll, 2 levels (fp32)"} <= set(rows)
    assert all(v["img_s"] > 0 for v in rows.values())
    objs = res["objectives"]
    assert {"B=64 open_clip ClipLoss", "B=64 clip", "B=64 mgll (2 levels, all terms)"} <= set(objs)
    assert objs["B=64 mgll (2 levels, all terms)"]["ops/call"] > objs["B=64 open_clip ClipLoss"]["ops/call"] > 0
