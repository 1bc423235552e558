"""Model-side helpers shared by the tasks: device, eval-mode guard, batched image and text encoding.

The tasks accept a :class:`bench.models.TwoTower` or anything with the same methods (``preprocess``,
``encode_image``, ``encode_text``, ``tokenize``, ``logit_scale``, ``visual``), so nothing here assumes an
``nn.Module`` beyond what it checks for.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def model_device(model: Any) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model with neither."""
    if isinstance(model, torch.nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Put every submodule in eval mode for the block, then restore each one's own previous flag.

    Restoring per submodule (not ``model.train(was)``) keeps mixed modes as the caller left them. Gradient
    flags are not touched: callers wrap their forward passes in ``torch.no_grad()``.
    """
    if not isinstance(model, torch.nn.Module):
        yield
        return
    saved = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def autocast(model: Any) -> contextlib.AbstractContextManager:
    """The model's own mixed-precision context (``TwoTower.autocast()``: bf16 on CUDA with
    ``precision=auto``, a no-op in fp32), or a no-op for models without one. Outputs are cast back to fp32
    by the callers."""
    fn = getattr(model, "autocast", None)
    return fn() if callable(fn) else contextlib.nullcontext()


def progress(total: int, desc: str) -> tqdm:
    """A tqdm bar that shows on a terminal and stays silent otherwise (``disable=None``)."""
    return tqdm(total=total, desc=desc, unit="img", disable=None, leave=False)


def load_batch(dataset: Any, indices: Sequence[int]) -> list[np.ndarray]:
    """The uint8 ``H x W x 3`` images of ``indices``."""
    return [dataset.image(int(i)) for i in indices]


def preprocess_images(model: Any, images: list[np.ndarray]) -> torch.Tensor:
    """``model.preprocess`` on a list of images; stacks when the shapes agree, else one image at a time."""
    if len({im.shape for im in images}) == 1:
        return model.preprocess(np.stack(images))
    return torch.cat([model.preprocess(im[None]) for im in images])


def batches(n: int, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive index blocks ``[0, b), [b, 2b), ...`` covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield np.arange(start, min(start + batch_size, n))


def image_batches(model: Any, dataset: Any, batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``(indices, model.preprocess(images))`` over ``dataset`` in order, in blocks of ``batch_size``.

    A model with an input size (``model.resolution``) reads through the data loader
    (:func:`bench.data.loader.eval_batches`: ``data.workers`` processes decode and resize each image);
    anything else is read here, one batch at a time."""
    size = getattr(model, "resolution", None)
    if not isinstance(size, int):
        for idx in batches(len(dataset), batch_size):
            yield idx, preprocess_images(model, load_batch(dataset, idx))
        return
    from bench.data.loader import eval_batches

    device = model_device(model)
    for idx, x in eval_batches(dataset, size, batch_size, device=device):
        yield idx.numpy(), model.preprocess(x.to(device, non_blocking=True))


def encode_images(model: Any, dataset: Any, batch_size: int, desc: str = "image features") -> np.ndarray:
    """float32 ``[N, D]``: ``model.encode_image(model.preprocess(images))`` for every image, in order
    (read by :func:`image_batches`).

    Eval mode and ``torch.no_grad()`` for the whole pass, under the model's autocast (see :func:`autocast`);
    the model's own train/eval flags are restored.
    """
    n = len(dataset)
    out: list[np.ndarray] = []
    with eval_mode(model), torch.no_grad(), progress(n, desc) as bar:
        for idx, pixels in image_batches(model, dataset, batch_size):
            with autocast(model):
                z = model.encode_image(pixels)
            out.append(z.detach().float().cpu().numpy())
            bar.update(len(idx))
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def encode_texts(model: Any, texts: Sequence[str], batch_size: int, *, normalize: bool = True) -> torch.Tensor:
    """float32 ``[T, D]`` text embeddings on the model's device (L2-normalised unless ``normalize=False``)."""
    device = model_device(model)
    out: list[torch.Tensor] = []
    with eval_mode(model), torch.no_grad():
        for idx in batches(len(texts), batch_size):
            tokens = model.tokenize([texts[i] for i in idx])
            if isinstance(tokens, torch.Tensor):
                tokens = tokens.to(device)
            with autocast(model):
                z = model.encode_text(tokens)
            out.append(z.float())
    z = torch.cat(out) if out else torch.zeros(0, 0, device=device)
    return F.normalize(z, dim=-1) if normalize else z


def logit_scale(model: Any) -> float:
    """The model's (clamped) logit scale as a float; 100 when the model has none (CLIP's value)."""
    fn = getattr(model, "logit_scale", None)
    if fn is None:
        return 100.0
    with torch.no_grad():
        value = fn() if callable(fn) else fn
    return float(value.item() if isinstance(value, torch.Tensor) else value)
