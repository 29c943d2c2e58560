"""Shared fixtures. Qt runs offscreen so the suite needs no display."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil  # noqa: E402
import tempfile  # noqa: E402

# One int8-detector cache for the whole run, subprocesses included: it is derived once
# (a few seconds) instead of in every test, and never in the tester's own cache folder.
_CACHE = tempfile.mkdtemp(prefix="ptim-test-cache-")
os.environ["PTIM_CACHE_DIR"] = _CACHE

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def astronaut() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """(BGR astronaut photo, face box xyxy checked by eye)."""
    from backend.sources.face_photo import astronaut as load

    return load()


@pytest.fixture(scope="session")
def int8_cached() -> None:
    """The run's int8 detector is derived and cached: a test that times how fast a run
    stops must not time the first run's derivation (the model load is waited for)."""
    from backend.pipeline import build_detector
    from config.schema import Settings

    build_detector(Settings())


def pytest_sessionfinish(session, exitstatus) -> None:
    """Remove the run's int8-detector cache."""
    shutil.rmtree(_CACHE, ignore_errors=True)
