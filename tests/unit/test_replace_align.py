"""Alignment, landmark smoothing, mask shaping and colour transfer on small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from backend.replace.align import (
    ARCFACE_128,
    MAX_FIT_ERROR,
    LandmarkSmoother,
    align,
    similarity,
    template,
)
from backend.replace.merge import core_coverage, covered, face_ellipse, rct, shape_mask


def face_points(cx: float, cy: float, eye: float, angle: float = 0.0) -> np.ndarray:
    """Frontal 5 landmarks (the whole-face template's shape) centred at (cx, cy)."""
    t = template("whole_face")
    p = (t - t.mean(0)) * (eye / (t[1, 0] - t[0, 0]))
    c, s = np.cos(angle), np.sin(angle)
    return p @ np.array([[c, s], [-s, c]]) + (cx, cy)


@pytest.mark.parametrize("scale, angle, shift", [(1.0, 0.0, (0, 0)), (2.5, 0.4, (30, -7)),
                                                 (0.3, -1.2, (-100, 55))])
def test_similarity_recovers_a_known_transform(scale, angle, shift):
    src = face_points(10, 20, 40)
    c, s = np.cos(angle), np.sin(angle)
    dst = src @ (scale * np.array([[c, -s], [s, c]])).T + shift
    m = similarity(src, dst)
    assert np.allclose(src @ m[:, :2].T + m[:, 2], dst, atol=1e-9)


def test_align_puts_the_landmarks_on_the_template():
    pts = template("whole_face")
    al = align(face_points(300, 200, 50, 0.3), pts, 224)
    assert al is not None and al.fit_error < 1e-6
    lm = face_points(300, 200, 50, 0.3)
    assert np.allclose(lm @ al.matrix[:, :2].T + al.matrix[:, 2], pts * 224, atol=1e-6)
    back = (pts * 224) @ al.inverse()[:, :2].T + al.inverse()[:, 2]
    assert np.allclose(back, lm, atol=1e-6)


@pytest.mark.parametrize("points", [
    np.full((5, 2), 100.0),  # no landmarks known: all at the box centre
    np.array([[100, 100], [101, 100], [100, 101], [100, 102], [101, 102]], float),  # tiny
    np.full((5, 2), np.nan),
])
def test_align_refuses_degenerate_points(points):
    assert align(points, template("whole_face"), 224) is None


def test_align_refuses_a_face_turned_too_far():
    lm = face_points(200, 200, 60)
    lm[2, 0] += 75  # the nose far outside the eyes: a profile the frontal template misfits
    lm[3:, 0] += 45
    al = align(lm, template("whole_face"), 224)
    assert al is None or al.fit_error <= MAX_FIT_ERROR
    assert al is None


def test_template_coverage_scales_about_the_centre():
    t1, t2 = template("full_face"), template("full_face", 2.0)
    assert np.allclose(t2 - 0.5, (t1 - 0.5) / 2)
    assert np.allclose(template("arcface_128"), ARCFACE_128)


def test_smoother_calms_a_still_face_and_follows_a_jump():
    rng = np.random.default_rng(0)
    base = face_points(320, 240, 60)
    sm = LandmarkSmoother()
    raw_dev, out_dev = [], []
    for _ in range(200):
        raw = base + rng.normal(0, 1.5, base.shape)
        out = sm.update({1: raw})[1]
        raw_dev.append(np.abs(raw - base).mean())
        out_dev.append(np.abs(out - base).mean())
    assert np.mean(out_dev[20:]) < 0.75 * np.mean(raw_dev[20:])
    moved = base + (200, 0)  # a cut: the face is elsewhere now
    assert np.allclose(sm.update({1: moved})[1], moved)


def test_smoother_keeps_tracks_across_calls_for_others():
    sm = LandmarkSmoother(forget=3)
    a = face_points(100, 100, 40)
    sm.update({1: a})
    sm.update({})  # e.g. a second-pass call on an earlier frame
    near = a + 0.5
    assert not np.allclose(sm.update({1: near})[1], near)  # smoothed: state was kept
    for _ in range(5):
        sm.update({})
    assert np.allclose(sm.update({1: a + 3})[1], a + 3)  # forgotten: starts fresh


def test_shape_mask_zeroes_the_border_and_keeps_the_core():
    m = shape_mask(np.ones((224, 224), np.float32), 2.0, 6.25)
    edge = np.concatenate([m[0], m[-1], m[:, 0], m[:, -1]])
    assert edge.max() < 0.05  # the square crop edge never shows
    assert m[60:160, 60:160].min() > 0.99
    pts = template("whole_face")
    assert core_coverage(m, pts) > 0.99
    assert core_coverage(np.zeros_like(m), pts) == 0.0


def test_face_ellipse_covers_the_features():
    pts = template("full_face")
    m = face_ellipse(pts, 256)
    for x, y in pts * 256:
        assert m[int(y), int(x)] == 1.0
    assert m[2, 2] == 0.0 and m[-3, -3] == 0.0


def test_rct_matches_statistics_inside_the_mask_only():
    rng = np.random.default_rng(1)
    face = rng.uniform(0.2, 0.4, (64, 64, 3)).astype(np.float32)
    ref = rng.uniform(0.5, 0.9, (64, 64, 3)).astype(np.float32)
    ref[:, :32] = 0.0  # black outside the mask: must not pull the colours down
    mask = np.zeros((64, 64), np.float32)
    mask[:, 32:] = 1.0
    out = rct(face, ref, mask)
    import cv2

    lab_o = cv2.cvtColor(out, cv2.COLOR_BGR2LAB)[:, 32:].reshape(-1, 3)
    lab_r = cv2.cvtColor(ref, cv2.COLOR_BGR2LAB)[:, 32:].reshape(-1, 3)
    assert np.allclose(lab_o.mean(0), lab_r.mean(0), atol=1.5)
    flat = rct(np.full((8, 8, 3), 0.5, np.float32), ref[:8, 32:40], np.ones((8, 8), np.float32))
    assert np.isfinite(flat).all()


def test_covered_measures_the_best_paste():
    alpha = np.ones((50, 50), np.float32)
    assert covered(np.array([10, 10, 30, 30.0]), [(0, 0, alpha)]) == pytest.approx(1.0)
    assert covered(np.array([40, 40, 60, 60.0]), [(0, 0, alpha)]) == pytest.approx(0.25)
    assert covered(np.array([100, 100, 120, 120.0]), [(0, 0, alpha)]) == 0.0
