"""Atomic writes and cell states."""

import json
import os

import pytest

from bench import store


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "m.json"
    store.write_json(p, {"a": 1})

    def boom(f):
        f.write('{"a": 2')
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        store.atomic_write(p, boom)
    assert json.loads(p.read_text()) == {"a": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind


def test_states(tmp_path):
    c = tmp_path / "cell"
    c.mkdir()
    assert store.cell_state(c) == store.PENDING
    store.write_json(c / "error.json", {"type": "X"})
    assert store.cell_state(c) == store.FAILED
    store.mark_running(c)
    assert store.cell_state(c) == store.RUNNING  # this process is alive
    store.clear_running(c)
    store.write_text(c / "done", "x")
    assert store.cell_state(c) == store.CORRUPT  # done needs a readable metrics.json
    store.write_json(c / "metrics.json", {"a/auc": 0.5})
    assert store.cell_state(c) == store.DONE


def test_stale_running_marker_is_not_running(tmp_path):
    c = tmp_path / "cell"
    import socket

    store.write_json(c / "running.json", {"host": socket.gethostname(), "pid": 2**22 + 12345})
    assert store.cell_state(c) == store.PENDING
