"""A guard that fails when code waits for the device: ``with no_host_sync(device): ...``.

A host synchronisation stalls the GPU pipeline: the host stops queueing kernels until the device has caught
up. It happens whenever the host reads a device value (``.item()``, ``bool(t)``, ``float(t)``, ``.tolist()``,
``.cpu()``, ``torch.nonzero``/``torch.unique``/boolean-mask indexing, whose output shape depends on device
data, ``torch.equal``) and on a blocking host-to-device copy (``t.to("cuda")`` without ``non_blocking=True``,
``torch.tensor(x, device="cuda")``: CUDA synchronises the stream after such a copy).

- ``device`` CUDA: ``torch.cuda.set_sync_debug_mode("error")``, CUDA's own detector (every synchronising
  call raises ``RuntimeError``);
- ``device`` meta (the CPU stand-in: run the code under test with its device tensors on the ``meta`` device,
  which holds shapes and no data, and its host tensors on the CPU): reading a meta tensor's values is
  impossible, so every read above raises; a torch-function mode names the operation
  (:class:`HostSyncError`) and also refuses blocking copies onto the device, which the meta device would
  accept silently. The CPU test suite runs the objectives and the training step this way; the GPU check
  (``python -m bench.perf gpu``) runs the same code under CUDA's detector.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

__all__ = ["HostSyncError", "no_host_sync"]

#: operations that read device values on the host (or whose output shape depends on them)
READS = frozenset({
    "item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__array__",
    "nonzero", "argwhere", "unique", "unique_consecutive", "equal", "masked_select", "allclose", "is_nonzero",
})


class HostSyncError(RuntimeError):
    """The code under :func:`no_host_sync` synchronised with the device (the message names the operation)."""


def _name(func: Any) -> str:
    return getattr(func, "__name__", None) or str(func)


class _MetaGuard(TorchFunctionMode):
    """Refuses reads of meta ("device") tensors and blocking copies from the host onto them."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device

    def _on_device(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor) and x.device.type == self.device.type

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        leaves = tree_leaves((args, kwargs))
        if name in READS and any(self._on_device(x) for x in leaves):
            raise HostSyncError(f"{name}() reads a device value on the host (a synchronisation on CUDA)")
        if name == "repeat_interleave" and kwargs.get("output_size") is None and any(self._on_device(x) for x in leaves):
            raise HostSyncError("repeat_interleave() without output_size reads device values (a synchronisation)")
        if name == "to" and args and isinstance(args[0], torch.Tensor) and args[0].device.type == "cpu":
            device, _, non_blocking, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
            if device is not None and device.type == self.device.type and not non_blocking:
                raise HostSyncError("Tensor.to(device) from the host without non_blocking=True (CUDA synchronises "
                                    "the stream after a blocking copy)")
        if name == "copy_" and len(args) >= 2 and self._on_device(args[0]) and isinstance(args[1], torch.Tensor) \
                and args[1].device.type == "cpu" and not (args[2] if len(args) > 2 else kwargs.get("non_blocking")):
            raise HostSyncError("copy_() from the host without non_blocking=True (a synchronisation on CUDA)")
        if name in ("tensor", "as_tensor") and kwargs.get("device") is not None \
                and torch.device(kwargs["device"]).type == self.device.type:
            raise HostSyncError(f"torch.{name}(..., device=...) copies from the host and synchronises; use "
                                "torch.full / a non_blocking copy")
        try:
            return func(*args, **kwargs)
        except (NotImplementedError, RuntimeError) as e:
            if "meta" in str(e) and not isinstance(e, HostSyncError):
                raise HostSyncError(f"{name}() needs device values on the host ({e})") from e
            raise


@contextlib.contextmanager
def no_host_sync(device: torch.device | str) -> Iterator[None]:
    """Inside, a host synchronisation with ``device`` raises (CUDA: ``RuntimeError`` from CUDA's detector;
    meta: :class:`HostSyncError`). Any other device: a ``ValueError`` (nothing to guard)."""
    device = torch.device(device)
    if device.type == "cuda":
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    elif device.type == "meta":
        with _MetaGuard(device):
            yield
    else:
        raise ValueError(f"no_host_sync: device {device} cannot be guarded; use cuda, or meta as the CPU stand-in")
