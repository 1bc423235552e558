"""The shard rows of ``python -m bench.perf data``: images/s reading WebDataset shards.

- **ours**: ``data.format=wds`` through the harness's loader (:func:`bench.data.loader.train_batches`: a
  seeded global permutation, each image read by offset from its shard in a worker, decoded,
  ``train.augment=open_clip``, resized);
- **open_clip**: the stages of open_clip's webdataset training pipeline
  (``open_clip_train.data.get_wds_dataset``): shard list, shard shuffle, split by worker, tar streaming,
  sample shuffle buffer, ``decode("pilrgb")``, ``rename(image="jpg;png;jpeg;webp", text="txt")``, its
  training transform (``open_clip.image_transform(is_train=True)``), batching, ``WebLoader``. Built from the
  public webdataset API here because open_clip_train 3.3's own function does not run with webdataset 1.0
  (its ``tarfile_to_samples_nothrow`` fails on the end-of-shard marker webdataset 1.0 yields).

The shards are exported (``python -m bench.data.export --to wds --caption-level disease``, image bytes
copied) from the same drawn files as the file rows, so every row decodes the same JPEG/PNG bytes.
"""

from __future__ import annotations

import time
from pathlib import Path

#: samples per shard of the benchmark's shards (open_clip needs at least one shard per worker)
SHARD_SIZE = 64


def make_shards(manifest: Path, out: Path | None = None, shard_size: int = SHARD_SIZE) -> Path:
    """Shards of the samples of a ``jsonl`` manifest, in ``out`` (default: next to the manifest's folder;
    cached); the shard folder."""
    out = out or manifest.parent.with_name(manifest.parent.name + "_wds")
    if (out / "meta.json").exists():
        return out
    from .data import build_dataset
    from .data.export import export

    data = build_dataset({"format": "jsonl", "path": str(manifest), "check_images": False})
    export(data, out, "wds", shard_size=shard_size, caption_level="disease", overwrite=True, progress=False)
    return out


def ours(folder: Path, workers: int, n_images: int, batch: int, resolution: int) -> float:
    from .perf_data import ours as loader_throughput

    return loader_throughput(folder, workers, n_images, batch, resolution, fmt="wds")


def open_clip_pipeline(folder: Path, workers: int, n_images: int, batch: int, resolution: int) -> float | None:
    try:
        import webdataset as wds
        from open_clip import image_transform
    except ImportError:
        return None
    import torch

    shards = sorted(str(p) for p in folder.glob("*.tar"))
    pipe = wds.DataPipeline(
        wds.SimpleShardList(shards),
        wds.detshuffle(bufsize=2000, initial=500, seed=0),
        wds.split_by_worker,
        wds.tarfile_to_samples(),
        wds.shuffle(bufsize=5000, initial=1000),
        wds.decode("pilrgb"),
        wds.rename(image="jpg;png;jpeg;webp", text="txt"),
        wds.map_dict(image=image_transform(resolution, is_train=True), text=lambda t: torch.zeros(1, dtype=torch.long)),
        wds.to_tuple("image", "text"),
        wds.batched(batch, partial=False),
    )
    loader = wds.WebLoader(pipe, batch_size=None, shuffle=False, num_workers=workers, persistent_workers=workers > 0)
    seen = 0
    t0 = None
    while seen < n_images:  # epochs over the shards until n_images are timed
        for images, _ in loader:
            if t0 is None:  # the first batch: worker start-up
                t0 = time.perf_counter()
                continue
            seen += len(images)
            if seen >= n_images:
                break
    return seen / (time.perf_counter() - t0)
