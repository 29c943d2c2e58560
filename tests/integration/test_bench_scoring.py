"""The benchmarks' leak scorer (bench/common.py) counts leaks right on real H.264 files.

Small clips (320x180, 20 frames) keep this under a few seconds: an unmasked re-encode
leaks every face-frame, one with every face core painted black leaks none, and PTIM's own
solid mask scores zero where PTIM finds the faces.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.sinks.recorder import VideoRecorder
from backend.sources.synthetic import SceneSpec, ground_truth, render, write_clip
from backend.types import Frame
from bench.common import (
    Score,
    core_rect,
    decode_frames,
    passthrough,
    scene_spec,
    score_outputs,
    score_video,
)

ROOT = Path(__file__).resolve().parents[2]
SIZE = (320, 180)
FRAMES = 20


def _clip(tmp: Path, name: str) -> tuple[SceneSpec, Path]:
    spec = scene_spec(name, SIZE, FRAMES)
    return spec, write_clip(spec, tmp / f"{name}.mp4")


@pytest.fixture(scope="module")
def fast_clip(tmp_path_factory) -> tuple[SceneSpec, Path]:
    """fast_motion at 320x180, first 20 frames (motion blur, ~19 px per frame)."""
    return _clip(tmp_path_factory.mktemp("bench_scoring"), "fast_motion")


@pytest.fixture(scope="module")
def unmasked(fast_clip, tmp_path_factory) -> Path:
    """The clip decoded and re-encoded with PTIM's encoder settings, nothing masked."""
    _, clip = fast_clip
    out = tmp_path_factory.mktemp("passthrough") / "unmasked.mp4"
    assert passthrough(clip, out) == FRAMES
    return out


def _run_ptim_solid(clip: Path, out: Path, userdata: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PTIM_") or k == "PTIM_CACHE_DIR"}  # the run's int8 cache
    env["PTIM_USERDATA_DIR"] = str(userdata)  # built-in defaults, not the user's config
    cmd = [sys.executable, str(ROOT / "main.py"), "process", str(clip), "-o", str(out),
           "--mask", "solid", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_unmasked_encode_leaks_every_face_frame(fast_clip, unmasked):
    spec, _ = fast_clip
    score = score_video(spec, unmasked)
    assert score.frames == FRAMES
    assert score.face_frames == FRAMES  # one face, visible in every frame
    assert score.leaked == score.face_frames
    assert score.frames_with_leak == FRAMES
    assert min(lk.exposed for lk in score.leaks) > 0.9


def test_black_cores_leak_nothing(fast_clip, unmasked, tmp_path):
    spec, _ = fast_clip
    out = tmp_path / "black_cores.mp4"
    with VideoRecorder(out, fps=spec.fps, size=SIZE) as rec:
        for i, image in enumerate(decode_frames(unmasked)):
            for box in ground_truth(spec, i):
                rect = core_rect(box, *SIZE)
                if rect is not None:
                    xa, ya, xb, yb = rect
                    image[ya:yb, xa:xb] = 0
            rec.write(Frame(i, i / spec.fps, image, "test"))
    score = score_video(spec, out)
    assert score.frames == FRAMES and score.face_frames == FRAMES
    assert score.leaked == 0 and score.frames_with_leak == 0


def test_black_frames_leak_nothing_and_raw_frames_leak_all(fast_clip):
    spec, _ = fast_clip
    black = (np.zeros((SIZE[1], SIZE[0], 3), np.uint8) for _ in range(FRAMES))
    raw = (render(spec, i)[0] for i in range(FRAMES))
    s_black, s_raw = score_outputs(spec, [black, raw])
    assert s_black.leaked == 0
    assert s_raw.leaked == s_raw.face_frames == FRAMES


def test_short_output_is_scored_on_its_frames(fast_clip):
    spec, _ = fast_clip
    (score,) = score_outputs(spec, [(render(spec, i)[0] for i in range(5))])
    assert isinstance(score, Score)
    assert score.frames == 5 and score.frames_expected == FRAMES and score.leaked == 5


def test_ptim_solid_mask_scores_zero_where_faces_are_found(tmp_path):
    # demo (a large and a small face, smooth motion): PTIM finds both in every frame, so
    # any leak here would be the scorer mistaking PTIM's black ellipse for a face
    spec, clip = _clip(tmp_path, "demo")
    out = tmp_path / "demo_solid.mp4"
    _run_ptim_solid(clip, out, tmp_path / "userdata")
    score = score_video(spec, out)
    assert score.frames == FRAMES and score.face_frames == 2 * FRAMES
    assert score.leaked == 0, [(lk.frame, lk.face, lk.box) for lk in score.leaks]


def test_ptim_solid_mask_on_fast_motion_scores_zero(fast_clip, tmp_path):
    spec, clip = fast_clip
    out = tmp_path / "fast_solid.mp4"
    _run_ptim_solid(clip, out, tmp_path / "userdata")
    score = score_video(spec, out)
    assert score.frames == FRAMES
    assert score.leaked == 0, [(lk.frame, lk.box) for lk in score.leaks]
