"""A cell's own memory numbers: its peak and its resident memory at the start, true under every launcher
(CUDA peak statistics reset per cell; on Linux the kernel's peak-RSS counter reset per cell), NaN where no
per-cell number exists."""

from __future__ import annotations

from pathlib import Path

import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _status_kib(key: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def _release_freed_memory() -> None:
    """Give memory freed by earlier cells back to the OS (Python objects, glibc's heap), so that this cell's
    resident baseline does not carry it."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def reset_peak_memory(device: torch.device) -> str:
    """Start this cell's peak-memory measurement; returns how it is measured (recorded as
    ``peak_memory_source``).

    - CUDA: ``torch.cuda.reset_peak_memory_stats`` after freeing the previous cells' cached blocks, so
      ``max_memory_allocated`` is this cell's peak of allocated tensor memory;
    - CPU on Linux: freed memory is returned to the OS, then the kernel's peak-RSS counter is reset
      (writing 5 to ``/proc/self/clear_refs``); the peak is ``VmHWM`` of ``/proc/self/status`` (resident
      memory of the whole process, libraries included, since this cell started);
    - elsewhere there is no per-cell peak (``ru_maxrss`` is the process's lifetime peak, which under the
      inline launcher includes earlier cells): the cell records NaN rather than a number that is not its own.
    """
    _release_freed_memory()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda max_memory_allocated"
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return "unavailable"
    return "VmHWM" if _status_kib("VmHWM") is not None else "unavailable"


def resident_memory_mb(device: torch.device) -> float:
    """Memory in use now: CUDA allocated tensor memory, or the process's resident set (Linux); NaN elsewhere."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    kib = _status_kib("VmRSS")
    return kib / 1024.0 if kib is not None else float("nan")


def peak_memory_mb(device: torch.device, source: str | None = None) -> float:
    """This cell's peak memory in MiB since :func:`reset_peak_memory` (see there); NaN where not measurable."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if source == "VmHWM":
        kib = _status_kib("VmHWM")
        return kib / 1024.0 if kib is not None else float("nan")
    return float("nan")
