"""Fine-tuning presets (``finetune`` option ``preset``): the defaults of every other option.

- ``cpu`` (the default): a CPU-sized schedule -- 3 epochs, batch 32, lr 1e-4, weight decay 1e-3, no
  warm-up, gradient clip 10, flips.
- ``paper``: the MGLL paper's protocol (paper.md section 2.6) -- 50 epochs, batch 32, AdamW (0.9, 0.95),
  lr 1e-3 x batch / 256 (1.25e-4 at batch 32; the batch the entry sets, if any, scales it), weight decay
  1e-3, 1 warm-up epoch then cosine, gradient clip 10, the MGLL downstream augmentation (``augment=mgll``:
  flips, rotation 30 degrees, colour jitter 0.6, RandomResizedCrop 0.9-1 bicubic, mean = std = 0.5), the best
  validation accuracy epoch then one test pass.

Options given in the task entry win over the preset's (``{name: finetune, preset: paper, epochs: 5}``); the
optimiser's betas (0.9, 0.95) and the model selection are the same in both.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"epochs": 3, "lr": 1e-4, "batch_size": 32, "weight_decay": 1e-3, "warmup_epochs": 0.0,
            "clip_grad": 10.0, "augment": "flip"},
    "paper": {"epochs": 50, "batch_size": 32, "weight_decay": 1e-3, "warmup_epochs": 1.0, "clip_grad": 10.0,
              "augment": "mgll"},
}
DEFAULT_PRESET = "cpu"
PAPER_BASE_LR = 1e-3  # x batch / 256


def preset_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` over the defaults of their ``preset`` (an unknown preset is left for the option check)."""
    name = options.get("preset", DEFAULT_PRESET)
    base = dict(PRESETS.get(name, {})) if isinstance(name, str) else {}
    if name == "paper" and "lr" not in options:
        try:
            batch = float(options.get("batch_size", base["batch_size"]))
        except (TypeError, ValueError):
            batch = float(base["batch_size"])  # a bad batch_size is reported by the option check
        base["lr"] = PAPER_BASE_LR * batch / 256.0
    return {**base, **options}
