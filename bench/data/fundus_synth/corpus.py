"""Draw a corpus of any size straight to a sink, with many processes, in bounded memory.

:func:`iter_corpus` yields the samples of ``build(**options)`` one by one, in the same order (the pool,
then the test split) with the same ids, splits, texts, labels, targets and pixels, each image already
encoded (PNG, JPEG or NPZ bytes). :func:`write_corpus` feeds them to a :class:`~.sinks.Sink` (image files
and a ``jsonl`` manifest: :class:`~.sinks.FileSink`; another writer, e.g. WebDataset shards, plugs in the
same way).

Parallelism and determinism: the corpus is cut into chunks of consecutive samples; worker processes
(``spawn``) draw and encode whole chunks; the main process hands them to the sink in corpus order. Sample
``k`` depends only on the options and ``k`` (its own seed stream entry, see the package docstring), so the
output does not depend on the number of workers or the chunk size. At most ``2 x workers`` chunks are in
flight, so memory stays flat however large the corpus (the val permutation of the pool, 8 bytes per pool
image, is the only thing that grows with it).
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .dataset import draw_options, record, val_mask
from .draw import draw_sample, one_blas_thread
from .options import check_options
from .text import VOCAB
from .variants import VARIANTS

if TYPE_CHECKING:
    from .sinks import Sink

IMAGE_FORMATS = ("png", "jpg", "npz")


@dataclass(frozen=True)
class DrawnSample:
    """One sample on its way to a sink. ``index``: its position in the corpus (0-based; the pool first, then
    the test split); ``record``: ``id``, ``split``, ``texts``, ``labels``, ``targets`` and ``truth`` (the
    ground-truth summary of :func:`~.dataset.build_with_truth`); ``image``: the encoded image, a complete
    ``.png``, ``.jpg`` or ``.npz`` file (key ``image``), ``image_format`` says which."""

    index: int
    record: dict
    image: bytes
    image_format: str

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def split(self) -> str:
        return self.record["split"]


@dataclass(frozen=True)
class CorpusInfo:
    """What a sink learns when it opens: the resolved options, the corpus size, the levels and label
    vocabularies, the downstream tasks, the image format."""

    options: dict
    total: int
    levels: tuple[str, ...]
    vocab: dict
    task_specs: dict
    image_format: str


def encode_image(img: np.ndarray, image_format: str, jpeg_quality: int = 95) -> bytes:
    """The bytes of an image file: PNG (lossless, zlib level 1), JPEG (``jpeg_quality``, 4:4:4) or NPZ
    (``np.savez``, key ``image``: what :func:`bench.data.sample.load_image` reads)."""
    buf = io.BytesIO()
    if image_format == "npz":
        np.savez(buf, image=img)
    else:
        from PIL import Image

        im = Image.fromarray(img)
        if image_format == "png":
            im.save(buf, format="PNG", compress_level=1)
        elif image_format == "jpg":
            im.save(buf, format="JPEG", quality=jpeg_quality, subsampling=0)
        else:
            raise ValueError(f"image format {image_format!r}; allowed: {list(IMAGE_FORMATS)}")
    return buf.getvalue()


def corpus_info(o: dict, image_format: str) -> CorpusInfo:
    v = VARIANTS[o["variant"]]
    return CorpusInfo(o, o["size"] + o["test_size"], o["levels"], {g: VOCAB[g] for g in o["levels"]},
                      v.task_specs, image_format)


def _chunks(o: dict, chunk: int) -> Iterator[list[tuple[int, str, int, str]]]:
    """(index, part, i, split) of every sample, in corpus order, ``chunk`` at a time."""
    is_val = val_mask(o)
    n = o["size"]
    items = itertools.chain(
        ((k, "dev", k, "val" if is_val[k] else "train") for k in range(n)),
        ((n + i, "test", i, "test") for i in range(o["test_size"])),
    )
    while True:
        block = list(itertools.islice(items, chunk))
        if not block:
            return
        yield block


def _init_worker() -> None:
    one_blas_thread()  # kept for the worker's life (see draw.one_blas_thread)


def _draw_chunk(o: dict, image_format: str, jpeg_quality: int, block: list) -> list[DrawnSample]:
    """Draw and encode one chunk (runs in a worker process)."""
    v = VARIANTS[o["variant"]]
    streams = {"dev": v.streams[0], "test": v.streams[1]}
    kw = draw_options(o)
    out = []
    for index, part, i, split in block:
        img, truth = draw_sample(np.random.default_rng([o["seed"], streams[part], i]), **kw)
        rec = record(v, o["seed"], part, i, split, truth)
        rec["texts"] = {g: rec["texts"][g] for g in o["levels"]}
        rec["labels"] = {g: rec["labels"][g] for g in o["levels"]}
        out.append(DrawnSample(index, rec, encode_image(img, image_format, jpeg_quality), image_format))
    return out


def iter_corpus(options: dict, image_format: str = "png", workers: int = 1, chunk: int = 32,
                jpeg_quality: int = 95) -> Iterator[DrawnSample]:
    """The samples of ``build(**options)``, in order, encoded as ``image_format`` (see the module
    docstring). ``workers=1`` draws in this process."""
    o = check_options(options)
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format {image_format!r}; allowed: {list(IMAGE_FORMATS)}")
    blocks = _chunks(o, max(1, int(chunk)))
    if workers <= 1:
        with one_blas_thread():
            for block in blocks:
                yield from _draw_chunk(o, image_format, jpeg_quality, block)
        return
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker)
    try:
        pending = deque(ex.submit(_draw_chunk, o, image_format, jpeg_quality, b)
                        for b in itertools.islice(blocks, 2 * workers))
        while pending:
            done = pending.popleft().result()
            nxt = next(blocks, None)
            if nxt is not None:
                pending.append(ex.submit(_draw_chunk, o, image_format, jpeg_quality, nxt))
            yield from done
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def write_corpus(options: dict, sink: "Sink", image_format: str = "png", workers: int = 1, chunk: int = 32,
                 jpeg_quality: int = 95, progress: bool = True) -> dict:
    """Draw the corpus of ``options`` into ``sink`` (``open``, one ``write`` per sample in corpus order,
    ``close(complete)``: complete is False when drawing failed or was interrupted). Returns counts and
    timings: ``images``, ``seconds``, ``images_per_s``, ``bytes`` (encoded image bytes)."""
    o = check_options(options)
    info = corpus_info(o, image_format)
    t0 = time.perf_counter()
    n_bytes = 0
    count = 0
    sink.open(info)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=info.total, desc=f"fundus_synth: drawing ({o['variant']}, {o['resolution']} px)",
                   unit="img", mininterval=1.0, smoothing=0.05)
    try:
        for s in iter_corpus(o, image_format, workers, chunk, jpeg_quality):
            sink.write(s)
            n_bytes += len(s.image)
            count += 1
            if bar is not None:
                bar.update(1)
    except BaseException:
        sink.close(complete=False)
        raise
    finally:
        if bar is not None:
            bar.close()
    sink.close(complete=True)
    dt = time.perf_counter() - t0
    return {"images": count, "seconds": dt, "images_per_s": count / dt if dt > 0 else float("inf"), "bytes": n_bytes}
