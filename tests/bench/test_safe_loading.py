"""Every file the harness loads from a results folder, a weights folder or a dataset refuses a pickle that
would run code: a malicious payload in each place we load from (resume checkpoint, encoder checkpoint,
weights file, released MGLL checkpoint, feature cache, saved predictions, dataset images) gives a clear
error naming the file (or, for the feature cache, a recompute) and never runs. A source scan keeps every
``torch.load`` on ``weights_only=True`` and every numpy load off pickles."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


class Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _torch_payload(path: Path, marker: Path, wrap=lambda p: {"model": p}) -> None:
    torch.save(wrap(Payload(marker)), path)
    torch.load(path, weights_only=False)  # live: an unsafe load runs it
    assert marker.exists()
    marker.unlink()


def _object_array(marker: Path) -> np.ndarray:
    arr = np.empty(1, dtype=object)
    arr[0] = Payload(marker)
    return arr


def _npy_payload(path: Path, marker: Path) -> None:
    np.save(path, _object_array(marker), allow_pickle=True)
    np.load(path, allow_pickle=True)
    assert marker.exists()
    marker.unlink()


def _npz_payload(path: Path, marker: Path, **others) -> None:
    np.savez(path, **others)
    with np.load(path, allow_pickle=True) as z:
        [z[k] for k in z.files]
    assert marker.exists()
    marker.unlink()


def load_resume(tmp_path, marker):
    from bench.resume import CheckpointError, read_checkpoint

    path = tmp_path / "last.pt"
    _torch_payload(path, marker)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    return str(e.value), path


def load_encoder(tmp_path, marker):
    from bench.errors import ModelConfigError
    from bench.models import load_encoder as load

    path = tmp_path / "encoder.pt"
    _torch_payload(path, marker, wrap=lambda p: {"format": "contrastive-bench/encoder", "config": p})
    with pytest.raises(ModelConfigError) as e:
        load(path)
    return str(e.value), path


def load_weights(tmp_path, marker):
    from bench.errors import ModelConfigError
    from bench.models.common import load_file

    path = tmp_path / "open_clip_pytorch_model.bin"
    _torch_payload(path, marker, wrap=lambda p: {"visual.proj": torch.zeros(2), "evil": p})
    with pytest.raises(ModelConfigError) as e:
        load_file("image.pretrained", path)
    return str(e.value), path


def load_mgll(tmp_path, marker):
    from bench.config import merge
    from bench.errors import ModelConfigError
    from bench.models import build_model, load_mgll_checkpoint

    path = tmp_path / "mgll.pth"
    _torch_payload(path, marker, wrap=lambda p: {"model": {"logit_scale": torch.zeros(())}, "args": p})
    cfg = merge({"image": {"name": "vit_tiny_custom", "width": 32, "depth": 1, "heads": 2},
                 "text": {"name": "tiny_transformer", "width": 32, "layers": 1, "heads": 2},
                 "model": {"embed_dim": 32}, "objective": {"name": "clip"}})
    with pytest.raises(ModelConfigError) as e:
        load_mgll_checkpoint(build_model(cfg, None), path)
    return str(e.value), path


def load_features(tmp_path, marker, caplog):
    from tasks.features import FeatureCache

    cache = FeatureCache(tmp_path / "features")
    path = cache.path("k", "test")
    _npy_payload(path, marker)
    assert cache.load("k", "test") is None and cache.misses == 1  # recomputed, never unpickled
    return caplog.text, path


def load_predictions(tmp_path, marker):
    from bench.report.significance import load_predictions as load, predictions_path

    path = predictions_path(tmp_path, "linear_probe/t")
    path.parent.mkdir()
    _npz_payload(path, marker, y_true=_object_array(marker), scores=np.zeros((1, 2)), kind=np.array("multiclass"))
    with pytest.raises(ValueError) as e:
        load(tmp_path, "linear_probe/t")
    return str(e.value), path


def load_image(tmp_path, marker):
    from bench.data.validate import check_image

    path = tmp_path / "img.npz"
    _npz_payload(path, marker, image=_object_array(marker))
    return check_image(path), path  # what the data validation reports for the sample


@pytest.mark.parametrize("loader, says", [
    (load_resume, "refused"),
    (load_encoder, "refused"),
    (load_weights, "weights_only=True"),
    (load_mgll, "weights_only=True"),
    (load_features, "cannot read"),
    (load_predictions, "cannot read predictions"),
    (load_image, "allow_pickle=False"),
])
def test_a_malicious_pickle_never_runs(tmp_path, caplog, loader, says):
    marker = tmp_path / "MARKER"
    kwargs = {"caplog": caplog} if loader is load_features else {}
    message, path = loader(tmp_path, marker, **kwargs)
    assert not marker.exists()
    assert says in message and str(path) in message, message


def _calls(pattern: str) -> list[tuple[str, str]]:
    found = []
    for root in ("bench", "tasks", "objectives"):
        for path in (REPO / root).rglob("*.py"):
            text = path.read_text()
            for m in re.finditer(pattern, text):
                start = m.start()
                found.append((f"{path.relative_to(REPO)}:{text.count(chr(10), 0, start) + 1}", text[start:start + 200]))
    return found


def test_every_torch_load_is_weights_only_and_no_numpy_load_allows_pickles():
    loads = _calls(r"torch\.load\(")
    assert loads  # the scan sees the loaders
    for where, call in loads:
        args = call.split(")\n")[0]
        assert "weights_only=True" in args and "weights_only=False" not in args, where
    for where, call in _calls(r"allow_pickle\s*=\s*True|pickle\.loads?\(|weights_only\s*=\s*False"):
        raise AssertionError(f"{where}: {call.splitlines()[0]}")
