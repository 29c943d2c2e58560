"""The picture's own motion: ``CameraMotion`` algebra and ``MotionEstimator`` on frames of a
real photo (scikit-image's coffee cup and astronaut) moved by known camera paths."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.track import MotionEstimator
from backend.track.camera import chain
from backend.types import CameraMotion
from tests.faces import astronaut_face, background, blurred_paste


def _photo(name: str = "coffee") -> np.ndarray:
    from skimage import data

    rgb = getattr(data, name)()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _view(photo: np.ndarray, m: np.ndarray, size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """The frame a camera sees: ``m`` (2x3) maps photo pixels to frame pixels."""
    return cv2.warpAffine(photo, m, size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def _camera(t: float) -> np.ndarray:
    """A camera path over the photo: zooming in 3% a frame, panning 23 px and rolling."""
    s = 2.0 * 1.03 ** t
    a = np.deg2rad(0.2 * t)
    c, si = s * np.cos(a), s * np.sin(a)
    return np.array([[c, -si, -23.0 * t - 80], [si, c, 9.0 * t - 60]])


def _truth(m0: np.ndarray, m1: np.ndarray) -> CameraMotion:
    """The motion from the frame of camera ``m0`` to that of ``m1``."""
    return CameraMotion(m0).inverse().then(CameraMotion(m1))


def _max_error(found: CameraMotion, truth: CameraMotion, w: int = 1280, h: int = 720) -> float:
    """Largest distance between where the two motions take the frame's corners and centre."""
    pts = np.array([[0, 0], [w, 0], [0, h], [w, h], [w / 2, h / 2]], np.float64)
    return float(np.abs(found.points(pts) - truth.points(pts)).max())


def test_motion_algebra_composes_inverts_and_carries_boxes() -> None:
    a = CameraMotion(np.array([[1.1, 0.0, 5.0], [0.0, 1.1, -3.0]]))
    b = CameraMotion.shift(10, 20)
    ab = a.then(b)
    p = np.array([[3.0, 4.0], [100.0, -50.0]])
    assert np.allclose(ab.points(p), b.points(a.points(p)))
    assert np.allclose(ab.inverse().points(ab.points(p)), p)
    assert chain([a, b]).matrix == pytest.approx(ab.matrix)
    assert chain([a, None, b]) is None
    box = np.array([10.0, 20.0, 30.0, 60.0])
    moved = a.boxes(box)
    # the centre moves with the picture, the sides grow by the zoom
    assert np.allclose((moved[:2] + moved[2:]) / 2, a.points(np.array([20.0, 40.0])))
    assert np.allclose(moved[2:] - moved[:2], (box[2:] - box[:2]) * 1.1)
    assert a.scale == pytest.approx(1.1)
    assert np.allclose(a.moves(box), a.points(np.array([20.0, 40.0])) - [20.0, 40.0])


def test_a_pan_zoom_and_roll_over_a_real_photo_is_measured_within_a_pixel() -> None:
    photo = _photo("coffee")
    est = MotionEstimator()
    assert est.measure(_view(photo, _camera(0))) is None  # nothing to compare with yet
    for t in range(1, 6):
        found = est.measure(_view(photo, _camera(t)))
        assert found is not None, f"frame {t}: motion not measured"
        err = _max_error(found, _truth(_camera(t - 1), _camera(t)))
        assert err < 1.0, f"frame {t}: off by {err:.2f} px"


def test_a_sweep_blurred_by_its_own_motion_is_measured_within_two_pixels() -> None:
    photo = _photo("astronaut")
    speed = 45.0  # frame px a frame, the shutter open for the whole motion

    def frame(i: int) -> np.ndarray:
        subs = [_view(photo, np.array([[1.5, 0, -speed * (i + (k + 0.5) / 15)],
                                       [0, 1.5, -40.0]])) for k in range(15)]
        return np.mean(subs, axis=0).round().astype(np.uint8)

    est = MotionEstimator()
    est.measure(frame(0))
    for i in range(1, 4):
        found = est.measure(frame(i))
        assert found is not None
        assert _max_error(found, CameraMotion.shift(-speed, 0)) < 2.0


def test_a_face_moving_over_a_still_wall_is_not_taken_for_the_camera() -> None:
    """Most of the picture stands still: the motion found is none, however strongly the
    face's own corners move; told where the face is, the estimator leaves it out."""
    bg = background(1280, 720, seed=3)
    patch = astronaut_face(160, margin=0.3)
    frames = []
    for i in range(3):
        f = bg.copy()
        blurred_paste(f, patch, (300 + 30 * i, 200), (300 + 30 * i + 1, 200), steps=2)
        frames.append(f)
    for faces in (None, np.array([[280.0, 180.0, 520.0, 460.0]])):
        est = MotionEstimator()
        est.measure(frames[0])
        for f in frames[1:]:
            found = est.measure(f, faces)
            assert found is None or _max_error(found, CameraMotion.identity()) < 1.0


def test_a_cut_and_a_change_of_size_are_not_motions() -> None:
    est = MotionEstimator()
    est.measure(_view(_photo("coffee"), _camera(0)))
    assert est.measure(_view(_photo("astronaut"), _camera(0))) is None  # a cut
    assert est.measure(_view(_photo("astronaut"), _camera(0), (640, 360))) is None  # new size
    est.reset()
    assert est.measure(_view(_photo("astronaut"), _camera(1), (640, 360))) is None
