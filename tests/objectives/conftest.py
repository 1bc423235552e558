"""Fixtures for the objective tests."""

from __future__ import annotations

import pytest
from obj_helpers import make_batch


@pytest.fixture
def batch():
    return make_batch()
