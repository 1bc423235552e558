"""The training step (bench/train_step.py): the logit scale clamped as open_clip does, non-finite loss terms
and gradients fail the cell naming them (checked on the device, never checkpointed), no host
synchronisation per step, and per-cell peak memory."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import objectives
from bench import train
from bench.cell import build_objective
from bench.memory import peak_memory_mb, reset_peak_memory
from bench.config import merge
from bench.data import build_dataset
from bench.models import build_model
from bench.syncguard import no_host_sync
from bench.train_step import NonFiniteGradientError, TrainStep, make_optimizer
from objectives import ObjectiveNumericsError

TINY = {
    "data": {"format": "fundus_synth", "size": 96, "test_size": 48, "val_fraction": 0.25, "resolution": 32},
    "image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
    "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2, "context_length": 16},
    "model": {"embed_dim": 32},
    "train": {"epochs": 3, "batch_size": 24, "threads": 1, "log_every": 100},
}
MGLL = {"name": "mgll", "levels": ["disease", "description"]}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CONTRASTIVE_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "step-cache"))


def _model(objective="clip", image=None, text=None, **model):
    cfg = merge(TINY, {"objective": {"name": objective}, "model": model, "image": image or {}, "text": text or {}})
    obj = build_objective(cfg)
    torch.manual_seed(0)
    return cfg, build_model(cfg, obj), obj


def _random_batch(model, b=16, levels=("disease",), device="cpu"):
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(b, 3, 32, 32, generator=g).to(device)
    tokens = {lv: torch.randint(1, 400, (b, 16), generator=g).to(device) for lv in levels}
    labels = {lv: torch.arange(b) for lv in levels}
    return pixels, tokens, labels


# ---------------------------------------------------------------------------------------------------------
# logit scale
# ---------------------------------------------------------------------------------------------------------
def test_logit_scale_above_the_cap_comes_down():
    """open_clip clamps the parameter after each step, so the gradient keeps flowing: from t = ln 100 + 0.01, a
    CLIP loss on unrelated features (which wants a smaller scale) lowers s below the cap. (The old
    ``exp(t).clamp(max=100)`` had gradient 0 there and stayed at 100.)"""
    cfg, model, obj = _model("clip", image={"freeze": True}, text={"freeze": True})
    with torch.no_grad():
        model.log_logit_scale.fill_(math.log(100) + 0.01)
    assert list(model.parameter_groups()) == ["logit scale"]
    opt = make_optimizer(model, merge(cfg, {"train": {"lr": 0.01}}).train)
    step = TrainStep(model, model, obj, opt, train.make_schedule(opt, 0, 1000), grad_clip=10.0,
                     device=torch.device("cpu"))
    batch = _random_batch(model)
    for _ in range(30):
        step(*batch)
    step.check(30)
    s = float(model.logit_scale().detach())
    assert 1.0 <= s < 90.0
    assert model.log_logit_scale.grad is not None and float(model.log_logit_scale.grad) > 0


def test_logit_scale_gradient_at_the_cap_and_the_clamp():
    _, model, _ = _model("clip", logit_scale_max=50.0)
    with torch.no_grad():
        model.log_logit_scale.fill_(math.log(50.0))
    model.logit_scale().backward()
    assert float(model.log_logit_scale.grad) == pytest.approx(50.0)  # d exp(t)/dt at the cap: not 0
    with torch.no_grad():
        model.log_logit_scale.fill_(7.0)
    model.clamp_logit_scale_()
    assert float(model.log_logit_scale.detach()) == pytest.approx(math.log(50.0))
    with torch.no_grad():
        model.log_logit_scale.fill_(-1.0)
    model.clamp_logit_scale_()
    assert float(model.logit_scale().detach()) == 1.0  # lower bound: t >= 0 (s >= 1), as open_clip


@pytest.mark.parametrize("init,maximum,msg", [(0.5, 100.0, "logit_scale_init=0.5 must be in"),
                                              (200.0, 100.0, "logit_scale_init=200.0 must be in"),
                                              (10.0, 0.5, "logit_scale_max=0.5 must be")])
def test_logit_scale_options_are_checked(init, maximum, msg):
    from bench.models import ModelConfigError

    with pytest.raises(ModelConfigError, match=msg):
        _model("clip", logit_scale_init=init, logit_scale_max=maximum)


# ---------------------------------------------------------------------------------------------------------
# finiteness
# ---------------------------------------------------------------------------------------------------------
def _parts(objective=None, **over):
    cfg = merge(TINY, {"objective": objective or MGLL}, over)
    torch.set_num_threads(1)
    train.seed_everything(0)
    data = build_dataset(cfg.data)
    objective = build_objective(cfg)
    train.seed_everything(0)
    return cfg, build_model(cfg, objective), objective, data.split("train")


def test_a_non_finite_term_fails_naming_it_and_is_never_checkpointed(tmp_path):
    saved = []
    cfg, model, objective, data = _parts(train={"checkpoint_every_steps": 1})
    real = objective.compute
    calls = {"n": 0}

    def compute(batch):
        out = real(batch)
        calls["n"] += 1
        if calls["n"] == 3:
            out["pointwise/description"] = out["pointwise/description"] * float("nan")
        return out

    objective.compute = compute
    real_save = train.save_checkpoint

    def save(path, **state):
        saved.append(state["step"])
        for k, v in state["model"].items():
            assert torch.isfinite(v).all(), k
        real_save(path, **state)

    train.save_checkpoint, restore = save, train.save_checkpoint
    try:
        with pytest.raises(ObjectiveNumericsError, match=r"'pointwise/description' is not finite .* at step 3") as err:
            train.pretrain(model, objective, data, cfg.train, tmp_path / "cell", 0, torch.device("cpu"))
    finally:
        train.save_checkpoint = restore
    assert err.value.term == "pointwise/description"
    assert saved == [1, 2]  # the check before the step-3 checkpoint stopped the cell
    assert objective.check_finite is False  # the step checks on the device instead


def test_overflowing_gradients_fail_the_cell_naming_the_group(tmp_path):
    """model.logit_scale_init=1e30: the loss is finite, the gradients overflow; formerly clip_grad_norm_ turned
    them into zeros and the cell was marked done with untrained metrics."""
    cfg, model, objective, data = _parts(model={"logit_scale_init": 1e30, "logit_scale_max": 1e30},
                                         objective={"name": "clip"})
    with pytest.raises(NonFiniteGradientError, match=r"the gradient of the image tower is not finite \(norm inf\) "
                                                     r"at step 1") as err:
        train.pretrain(model, objective, data, cfg.train, tmp_path / "cell", 0, torch.device("cpu"))
    assert (err.value.group, err.value.step) == ("image tower", 1)
    assert not (tmp_path / "cell" / "checkpoints" / "last.pt").exists()


def test_the_failed_cell_is_recorded_with_the_message(tmp_path):
    from bench import store
    from bench.cell import execute

    cfg = merge(TINY, {"model": {"logit_scale_init": 1e30, "logit_scale_max": 1e30}, "objective": {"name": "clip"},
                       "train": {"epochs": 1}})
    assert execute(cfg, tmp_path / "cell") == store.FAILED
    err = store.read_json(tmp_path / "cell" / "error.json")
    assert err["type"] == "NonFiniteGradientError" and "image tower is not finite" in err["message"]
    assert not (tmp_path / "cell" / "done").exists()


# ---------------------------------------------------------------------------------------------------------
# no host synchronisation in a step
# ---------------------------------------------------------------------------------------------------------
DEVICES = ["meta"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("objective", ["clip", "mgll", "siglip"])
def test_a_training_step_never_waits_for_the_device(objective, device):
    """Forward, objective, backward, per-group norms, clipping, AdamW, schedule, clamp and the finiteness flags:
    all queued on the device. On the CPU the device is the meta stand-in (bench.syncguard)."""
    dev = torch.device(device)
    cfg, model, obj = _model(objective)
    model.to(dev)
    opt = make_optimizer(model, cfg.train)
    step = TrainStep(model, model, obj, opt, train.make_schedule(opt, 1, 100), grad_clip=10.0, device=dev)
    levels = ("disease", "description") if objective == "mgll" else ("disease",)
    pixels = torch.empty(8, 3, 32, 32, device=dev).normal_() if device != "meta" else torch.empty(8, 3, 32, 32, device=dev)
    tokens = {lv: torch.ones(8, 16, dtype=torch.long, device=dev) for lv in levels}
    labels = {"disease": torch.tensor([0, 1, 0, 2, 1, 3, 0, 2]), "description": torch.arange(8)}
    labels = {lv: labels[lv] for lv in levels}
    if device == "cuda":  # library handles and optimiser state are created at the first step, outside the guard
        step(pixels, tokens, labels)
    with no_host_sync(dev):
        for i in range(3):
            step(pixels, tokens, labels, timed=i == 1)  # CUDA: events recorded, read only at check time
    if device == "cuda":
        step.check(4)  # the logging-interval check reads the flags (a synchronisation, outside the guard)
    assert step.objective_seconds()[1] == 1


def test_objective_timing_is_per_timed_step():
    cfg, model, obj = _model("clip")
    opt = make_optimizer(model, cfg.train)
    step = TrainStep(model, model, obj, opt, train.make_schedule(opt, 1, 100), grad_clip=0.0, device=torch.device("cpu"))
    batch = _random_batch(model, b=8)
    for i in range(5):
        step(*batch, timed=i % 2 == 0)
    total, n = step.objective_seconds()
    assert n == 3 and total > 0


# ---------------------------------------------------------------------------------------------------------
# per-cell peak memory
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs")
def test_cpu_peak_memory_is_per_cell():
    cpu = torch.device("cpu")
    assert reset_peak_memory(cpu) == "VmHWM"
    big = torch.ones(64 * 2**20)  # 256 MiB touched
    del big
    first = peak_memory_mb(cpu, "VmHWM")
    reset_peak_memory(cpu)
    second = peak_memory_mb(cpu, "VmHWM")
    assert first - second > 200  # the next cell does not inherit the earlier peak
    assert math.isnan(peak_memory_mb(cpu, "unavailable"))
