"""Worker for test_obj_distributed.py: runs every case on its shard of one fixed batch and saves values and
gradients. Kept free of pytest so that spawned processes import it cheaply."""

from __future__ import annotations

import torch

import objectives

B, D = 8, 5
# (name, options, label kind)
CASES = [
    ("clip", {}, "ids"),
    ("clip", {"local_loss": True}, "ids"),
    ("clip", {"local_loss": True, "chunk_size": 3}, "ids"),
    ("siglip", {}, "ids"),
    ("siglip", {"local_loss": True}, "ids"),
    ("soft_clip", {"local_loss": True}, "ids"),
    ("clip_multipositive", {}, "ids"),
    ("medclip", {"local_loss": True}, "mh"),
    ("mgll", {}, "ids"),
    ("mgll", {"local_loss": True}, "ids"),
    ("mgll", {"local_loss": True, "chunk_size": 3}, "ids"),
    ("mgll", {"target": "jaccard", "local_loss": True}, "mh"),
    ("mgll", {"soft_labels": False}, "ids"),
    ("mgll_released", {}, "positive"),
    ("mgll_released", {"local_loss": True}, "positive"),
    ("mgll", {"gather_with_grad": False}, "ids"),
    ("mgll", {"gather_with_grad": False, "local_loss": True}, "ids"),
    # the reference implementations under torch.distributed (global matrices on every rank)
    ("clip", {"impl": "reference"}, "ids"),
    ("mgll", {"impl": "reference"}, "ids"),
    ("mgll", {"impl": "reference", "local_loss": True}, "ids"),
    ("medclip", {"impl": "reference"}, "mh"),
    ("mgll_released", {"impl": "reference"}, "positive"),
]


def batch(kind: str):
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(B, D, generator=g, dtype=torch.float64) for _ in range(3)]
    if kind == "positive":
        feats = [f.abs() for f in feats]
    else:
        feats = [torch.nn.functional.normalize(f, dim=1) for f in feats]
    if kind == "mh":
        labels = {
            "disease": (torch.rand(B, 4, generator=g) > 0.5).long(),
            "description": (torch.rand(B, 3, generator=g) > 0.5).long(),
        }
        labels["description"][5] = -1
    else:
        # duplicates across the two ranks' halves, and a missing text on rank 1
        labels = {
            "disease": torch.tensor([0, 1, 0, 2, 1, 3, 0, 2]),
            "description": torch.tensor([0, 1, 2, 2, 1, -1, 0, 4]),
        }
    return feats[0], {"disease": feats[1], "description": feats[2]}, labels


def run_case(name, opts, kind, rows: slice):
    """Loss terms and gradients for the rows ``rows`` of the batch (all rows = the single-process run)."""
    image, texts, labels = batch(kind)
    x = image[rows].clone().requires_grad_()
    t = {k: v[rows].clone().requires_grad_() for k, v in texts.items()}
    y = {k: v[rows] for k, v in labels.items()}
    s = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    out = objectives.build(name, **opts)(x, t, y, s, b)
    out["loss"].backward()

    def grad(v):
        return v.grad.clone() if v.grad is not None else torch.zeros_like(v)

    return (
        {k: v.detach() for k, v in out.items()},
        {"image": grad(x), **{k: grad(v) for k, v in t.items()}},
        {"scale": grad(s), "bias": grad(b)},
    )


def worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        per = B // world
        rows = slice(rank * per, (rank + 1) * per)
        results = [run_case(name, opts, kind, rows) for name, opts, kind in CASES]
        torch.save(results, f"{out_file}.{rank}")
    finally:
        torch.distributed.destroy_process_group()
