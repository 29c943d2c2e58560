"""Shared fixtures. Qt runs offscreen so the suite needs no display."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def astronaut() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """(BGR astronaut photo, face box xyxy checked by eye)."""
    from backend.sources.face_photo import astronaut as load

    return load()
