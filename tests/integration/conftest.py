"""Generated clips and a runner for ``main.py`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_main(*args: str, cwd: Path | None = None, env: dict | None = None,
             timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``python main.py ARGS`` with an isolated userdata dir; capture text output."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PTIM_USERDATA_DIR", str((cwd or ROOT) / ".ptim-userdata"))
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd,
                          capture_output=True, text=True, env=full_env, timeout=timeout)


@pytest.fixture(scope="session")
def small_scene():
    """The fast-motion scene at 480x270, 45 frames (faces big enough to see)."""
    from backend.sources import SCENES

    return replace(SCENES["demo"].resized(480, 270), n_frames=45)


@pytest.fixture(scope="session")
def clip(tmp_path_factory, small_scene) -> Path:
    """A real H.264 mp4 of the scene with an AAC tone track."""
    from backend.sources import write_clip

    path = tmp_path_factory.mktemp("clips") / "scene.mp4"
    write_clip(small_scene, path, with_audio=True)
    return path
