"""Synthetic scenes: deterministic pixels, ground truth on the real face, the demo source."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest

from backend.errors import InputError
from backend.sources import (
    ASTRONAUT_FACE_BOX,
    SCENES,
    DemoSource,
    SceneSpec,
    Wave,
    ground_truth,
    open_source,
    render,
)
from backend.sources.synthetic import _line_kernel, crossing, linear, sine, static


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def _face_similarity(img: np.ndarray, box: np.ndarray, astronaut, mirror=False) -> float:
    """Normalised correlation between the boxed region and the astronaut's face (gray)."""
    photo, (x0, y0, x1, y1) = astronaut
    ref = cv2.cvtColor(photo[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    if mirror:
        ref = ref[:, ::-1]
    bx0, by0, bx1, by1 = (int(round(v)) for v in box)
    crop = cv2.cvtColor(img[by0:by1, bx0:bx1], cv2.COLOR_BGR2GRAY)
    crop = cv2.resize(crop, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_AREA)
    return _ncc(crop, ref)


SMALL = SceneSpec(
    width=320, height=240, n_frames=40, faces=(sine((0.5, 0.5), (0.2, 0.1), (40, 20), 0.4),)
)


def test_render_is_deterministic():
    for name in ("demo", "dim", "fast_motion"):
        spec = SCENES[name].resized(320, 180)
        a, ba = render(spec, 17)
        b, bb = render(replace(spec), 17)  # an equal, separate spec object
        assert a.dtype == np.uint8 and a.shape == (180, 320, 3) and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ba, bb)
    assert not np.array_equal(render(SMALL, 3)[0], render(SMALL, 4)[0])


@pytest.mark.parametrize(
    "name, index, face",
    [
        ("demo", 0, 0),
        ("demo", 120, 0),
        ("demo", 200, 1),  # the small mirrored face
        ("scaling", 0, 0),  # ~60 px face
        ("scaling", 149, 0),  # ~400 px face
        ("two_faces_crossing", 10, 0),
        ("two_faces_crossing", 10, 1),
        ("dim", 30, 0),
    ],
)
def test_ground_truth_box_holds_the_face(astronaut, name, index, face):
    spec = SCENES[name]
    img, boxes = render(spec, index)
    assert boxes.dtype == np.float32 and boxes.shape == (len(spec.faces), 4)
    box = boxes[face]
    if name == "dim":  # undo the dimming so the comparison is about geometry
        img = cv2.convertScaleAbs(img, alpha=1 / spec.brightness)
    assert _face_similarity(img, box, astronaut, spec.faces[face].mirror) > 0.8
    # a box shifted by half its width no longer matches: the box is really on the face
    w = box[2] - box[0]
    shifted = box + np.array([w / 2, 0, w / 2, 0], np.float32)
    assert _face_similarity(img, shifted, astronaut, spec.faces[face].mirror) < 0.6


def test_face_size_follows_the_path():
    spec = SCENES["scaling"]
    first = ground_truth(spec, 0)[0]
    last = ground_truth(spec, spec.n_frames - 1)[0]
    assert first[3] - first[1] == pytest.approx(60, abs=2)
    assert last[3] - last[1] == pytest.approx(400, abs=2)
    # aspect of the photo's face box is kept
    fx0, fy0, fx1, fy1 = ASTRONAUT_FACE_BOX
    aspect = (last[2] - last[0]) / (last[3] - last[1])
    assert aspect == pytest.approx((fx1 - fx0) / (fy1 - fy0), rel=0.02)


def test_partly_out_boxes_are_unclipped_and_absent_when_outside():
    spec = SCENES["partly_out"]
    assert ground_truth(spec, 0).shape == (0, 4)  # still fully left of the frame
    seen_partial = False
    for i in range(spec.n_frames):
        for b in ground_truth(spec, i):
            assert b[2] > 0 and b[3] > 0 and b[0] < spec.width and b[1] < spec.height
            seen_partial |= bool(b[0] < 0 or b[1] < 0 or b[2] > spec.width or b[3] > spec.height)
    assert seen_partial
    # while the face is half out on the left, the visible part is drawn
    for i in range(spec.n_frames):
        b = ground_truth(spec, i)
        if len(b) and b[0, 0] < 0 < b[0, 2] - 20:
            img, _ = render(spec, i)
            rows, cols = slice(int(b[0, 1]), int(b[0, 3])), slice(0, int(b[0, 2]))
            bg, _ = render(replace(spec, faces=()), i)
            assert np.abs(img[rows, cols].astype(int) - bg[rows, cols]).mean() > 10
            break
    else:
        pytest.fail("no half-visible frame found")


def test_motion_blur_is_along_the_motion_with_the_displacement_length():
    spec = SCENES["fast_motion"]
    sharp_spec = replace(spec, motion_blur=False)
    i = 7
    blurred, boxes = render(spec, i)
    sharp, boxes2 = render(sharp_spec, i)
    np.testing.assert_array_equal(boxes, boxes2)  # blur does not move the ground truth
    b = boxes[0].astype(int)
    region = (slice(max(b[1], 0), b[3]), slice(max(b[0], 0), b[2]))
    gray_b = cv2.cvtColor(blurred[region], cv2.COLOR_BGR2GRAY).astype(np.float32)
    gray_s = cv2.cvtColor(sharp[region], cv2.COLOR_BGR2GRAY).astype(np.float32)
    # horizontal motion dominates in this preset: horizontal detail is what gets smeared
    dx_b = np.abs(np.diff(gray_b, axis=1)).mean()
    dx_s = np.abs(np.diff(gray_s, axis=1)).mean()
    assert dx_b < 0.6 * dx_s
    (ax, ay, _), (bx, by, _) = spec.faces[0].centre(i - 1), spec.faces[0].centre(i)
    assert math.hypot((bx - ax) * spec.width, (by - ay) * spec.height) > 40


@pytest.mark.parametrize("dx, dy", [(10, 0), (0, 7), (12, -5), (0.3, 0.2)])
def test_line_kernel(dx, dy):
    k = _line_kernel(dx, dy)
    if math.hypot(dx, dy) < 1:
        assert k is None
        return
    assert k.sum() == pytest.approx(1.0, abs=1e-5)
    ys, xs = np.nonzero(k > 1e-6)
    c = k.shape[0] // 2
    assert (xs.max() - xs.min()) == pytest.approx(abs(dx), abs=2)
    assert (ys.max() - ys.min()) == pytest.approx(abs(dy), abs=2)
    # centre of mass at the kernel centre: blur does not shift the face
    yy, xx = np.mgrid[0 : k.shape[0], 0 : k.shape[1]]
    assert (k * xx).sum() == pytest.approx(c, abs=1e-3)
    assert (k * yy).sum() == pytest.approx(c, abs=1e-3)


def test_brightness_dims_the_whole_frame():
    spec = SCENES["demo"].resized(320, 180)
    bright, _ = render(spec, 5)
    dim, _ = render(replace(spec, brightness=0.35), 5)
    assert dim.mean() == pytest.approx(0.35 * bright.mean(), rel=0.02)


def test_wave_shapes():
    assert Wave(0.5).at(123) == 0.5
    s = Wave(0.0, 1.0, 8, "sine")
    assert s.at(2) == pytest.approx(1.0) and s.at(6) == pytest.approx(-1.0)
    t = Wave(0.0, 1.0, 10, "triangle")
    assert [round(t.at(i), 3) for i in (0, 2.5, 5, 7.5, 10)] == [-1, 0, 1, 0, -1]
    r = Wave(1.0, 2.0, 10, "ramp")
    assert (r.at(-3), r.at(5), r.at(10), r.at(99)) == (1.0, 2.0, 3.0, 3.0)


def test_path_helpers_and_presence():
    p = linear((0.0, 0.5), (1.0, 0.5), 11, (0.1, 0.2), first=5)
    assert not p.present(4) and p.present(5) and p.present(15) and not p.present(16)
    assert p.centre(5) == pytest.approx((0.0, 0.5, 0.1))
    assert p.centre(15) == pytest.approx((1.0, 0.5, 0.2))
    c = crossing("right", 0.3, 0.2, 30)
    assert c.centre(0)[0] > 1.0 and c.centre(29)[0] < 0.0
    spec = SceneSpec(width=160, height=90, n_frames=30, faces=[c])
    assert isinstance(spec.faces, tuple)
    assert ground_truth(spec, 0).shape == (0, 4) and ground_truth(spec, 29).shape == (0, 4)
    assert ground_truth(spec, 15).shape == (1, 4)
    assert static(0.5, 0.5, 0.3).centre(1000) == (0.5, 0.5, 0.3)


def test_every_preset_renders_at_its_size():
    for name, spec in SCENES.items():
        img, boxes = render(spec, spec.n_frames // 2)
        assert img.shape == (spec.height, spec.width, 3), name
        assert (spec.width, spec.height, spec.fps) == (1280, 720, 30.0)
    assert SCENES["demo"].duration == pytest.approx(10.0)
    assert len(SCENES["demo"].faces) == 2 and SCENES["fast_motion"].motion_blur
    assert SCENES["dim"].brightness == 0.35


@pytest.mark.parametrize(
    "kwargs",
    [dict(width=1), dict(fps=0), dict(n_frames=0), dict(brightness=0), dict(background="sky")],
)
def test_scene_spec_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        SceneSpec(**kwargs)


def test_demo_source_file_like():
    src = DemoSource(spec=SMALL, loop=False)
    with src:
        frames = list(src)
    assert not src.is_live and src.frame_count == SMALL.n_frames
    assert len(frames) == SMALL.n_frames
    assert [f.index for f in frames] == list(range(SMALL.n_frames))
    assert all(f.timestamp == pytest.approx(f.index / SMALL.fps) for f in frames)
    np.testing.assert_array_equal(frames[9].image, render(SMALL, 9)[0])
    np.testing.assert_array_equal(src.ground_truth(9), render(SMALL, 9)[1])


def test_demo_source_loops_as_a_live_source():
    src = DemoSource(spec=SMALL, loop=True)
    src.open()
    assert src.is_live and src.frame_count is None and src.size == (320, 240)
    frames = [src.read() for _ in range(SMALL.n_frames + 2)]
    assert frames[-1] is not None and frames[-1].timestamp > frames[-2].timestamp
    np.testing.assert_array_equal(frames[SMALL.n_frames].image, frames[0].image)
    np.testing.assert_array_equal(src.ground_truth(SMALL.n_frames + 1), src.ground_truth(1))
    src.close()


def test_demo_source_realtime_paces_itself():
    src = DemoSource(spec=replace(SMALL, fps=50.0), loop=True, realtime=True)
    src.open()
    t0 = time.monotonic()
    for _ in range(6):
        src.read()
    assert time.monotonic() - t0 >= 5 / 50.0 - 0.01


def test_open_source_demo_specs():
    assert isinstance(open_source("demo"), DemoSource)
    dim = open_source("demo:dim", loop=False)
    assert dim.spec is SCENES["dim"] and dim.frame_count == SCENES["dim"].n_frames
    with pytest.raises(InputError, match="unknown scene"):
        open_source("demo:nope")
