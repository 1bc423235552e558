"""Image path rules shared by the file formats."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_RULES = ("npz", "verbatim")
_warned_prefix = False


def mgll_npz_path(data_dir: str | Path, image_id: str) -> str:
    """The MGLL release's rule: ``data_dir + '/All_data_npz' + splitext(ImageID[9:])[0] + '.npz'``.

    The first 9 characters of the id are dropped (the ids start with ``/All_data``); e.g. ``/All_data/A/x.png``
    -> ``<data_dir>/All_data_npz/A/x.npz``.
    """
    global _warned_prefix
    if not image_id.startswith("/All_data") and not _warned_prefix:
        _warned_prefix = True
        log.warning(
            "ImageID %r does not start with '/All_data'; the MGLL npz rule drops its first 9 characters anyway "
            "(use data.image_rule=verbatim for ids that are paths)",
            image_id,
        )
    return str(Path(data_dir)) + "/All_data_npz" + os.path.splitext(image_id[9:])[0] + ".npz"


def resolve(root: str | Path, path: str) -> str:
    """``path`` if absolute, else ``root/path``."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else Path(root) / p)


def image_path(rule: str, data_dir: str | Path, image_id: str) -> str:
    """``rule='npz'``: :func:`mgll_npz_path`; ``rule='verbatim'``: the id as a path (relative to ``data_dir``)."""
    if rule == "npz":
        return mgll_npz_path(data_dir, image_id)
    return resolve(data_dir, image_id)
