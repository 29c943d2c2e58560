"""Shared fixtures and helpers for the reliability suite: small clips, a runner that can
drop root's file-permission override, a tiny tmpfs, and checks on what a run left behind.

Clips are small (320x180, 30 frames) and session-scoped so the suite stays fast on 2 cores.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from tests.integration.conftest import ROOT, run_main

__all__ = ["ROOT", "run_main"]

TMP_GLOB = "*ptim-tmp*"


# -- running main.py ------------------------------------------------------------------

def _drop_dac() -> None:
    """preexec_fn: remove CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set.

    The child (still uid 0) then obeys file modes like any user, because at exec a root
    process only gets the capabilities left in its bounding set. Runs between fork and
    exec, so it must not allocate much or raise: it exits 99 when prctl fails.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(99)


@functools.cache
def permission_mode() -> str | None:
    """How permission cases can run here: "user" (not root), "nodac" (root without DAC
    override), or None when neither works (the caller skips, saying why)."""
    if os.geteuid() != 0:
        return "user"
    probe = Path(f"/tmp/.ptim-dac-probe-{os.getpid()}")
    probe.write_text("x")
    probe.chmod(0)
    try:
        r = subprocess.run(["cat", str(probe)], preexec_fn=_drop_dac, capture_output=True)
    except OSError:
        return None
    finally:
        probe.unlink()
    return "nodac" if r.returncode not in (0, 99) else None


def run_ptim(*args: str, cwd: Path, env: dict | None = None, as_user: bool = False,
             timeout: float = 180) -> subprocess.CompletedProcess:
    """``run_main`` (same isolated userdata); ``as_user`` makes root obey file modes."""
    if not as_user or permission_mode() == "user":
        return run_main(*args, cwd=cwd, env=env, timeout=timeout)
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PTIM_USERDATA_DIR", str(cwd / ".ptim-userdata"))
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd,
                          capture_output=True, text=True, env=full_env, timeout=timeout,
                          preexec_fn=_drop_dac)


def error_lines(stderr: str) -> list[str]:
    """The ``ptim: error:`` lines of a run."""
    return [x for x in stderr.splitlines() if x.startswith("ptim: error:")]


# -- tmpfs ----------------------------------------------------------------------------

@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "8k") -> Iterator[bool]:
    """Mount a tiny tmpfs (a full disk on demand) at ``path``; yields False if not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True).returncode == 0
    except OSError:
        ok = False
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


# -- what a run left behind -----------------------------------------------------------

def sha(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> hash (or mode 'unreadable') of every file under ``folder``."""
    out: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if rel.startswith(".ptim-userdata") or p.is_dir():
            continue
        try:
            out[rel] = sha(p)
        except OSError:
            out[rel] = f"mode {p.stat().st_mode:o}"
    return out


def temp_leftovers(folder: Path) -> list[Path]:
    """Temporary files of PTIM's atomic writers left under ``folder``."""
    return [p for p in folder.rglob(TMP_GLOB)] + [p for p in folder.rglob(".ptim-probe-*")]


def decode_video(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """Every frame (BGR) of a video file and its timestamp in seconds."""
    with av.open(str(path)) as c:
        frames, ts = [], []
        for f in c.decode(c.streams.video[0]):
            frames.append(f.to_ndarray(format="bgr24"))
            ts.append(float(f.pts * f.time_base))
    return frames, ts


# -- clips ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def scene():
    """The demo scene (two faces) at 320x180, 30 frames."""
    from backend.sources import SCENES

    return replace(SCENES["demo"].resized(320, 180), n_frames=30)


@pytest.fixture(scope="session")
def clip(tmp_path_factory, scene) -> Path:
    """The scene as an H.264 mp4 (read-only use: tests copy it before changing it)."""
    from backend.sources import write_clip

    return write_clip(scene, tmp_path_factory.mktemp("rclips") / "scene.mp4")


@pytest.fixture(scope="session")
def solid_config(tmp_path_factory) -> Path:
    """Settings for fault runs: solid masks (leaks are measurable), solid fail-closed
    frames, and a short detector deadline so stalls cost little time."""
    path = tmp_path_factory.mktemp("rcfg") / "solid.yaml"
    path.write_text("detector:\n  deadline_ms: 250\nmask:\n  type: solid\n"
                    "  fail_closed: solid\n")
    return path


Builder = Callable[[Path], list[str]]


def leaked_frames(frames: list[np.ndarray], ts: list[float], spec) -> list[int]:
    """Indices of output frames where a face core is raw, against the scene's ground truth.

    Two criteria, either one is a leak: ``frame_is_raw`` (the core barely changed) and the
    benchmarks' solid-mask scorer (more than 5% of the core close to the original and not
    black), which also catches a raw face that went through another H.264 generation.
    Output frames are matched to scene frames by timestamp.
    """
    from backend.live import frame_is_raw
    from backend.sources import render
    from bench.common import core_rect, exposed_fraction

    bad = []
    for img, t in zip(frames, ts, strict=True):
        i = round(t * spec.fps)
        orig, boxes = render(spec, i)
        h, w = orig.shape[:2]
        rects = [r for b in boxes if (r := core_rect(b, w, h)) is not None]
        if frame_is_raw(img, orig, list(boxes)) or any(
                exposed_fraction(img, orig, r) > 0.05 for r in rects):
            bad.append(i)
    return bad
