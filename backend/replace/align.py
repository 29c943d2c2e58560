"""Alignment: 5 detector landmarks -> a square face crop, and smoothing of those points.

Landmarks are (5, 2) float points in frame pixels, in the detector's order: left eye,
right eye, nose tip, left mouth corner, right mouth corner. A template holds the same
five points as fractions (0..1) of the crop's side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# DeepFaceLab's 5-point mean face placed in the final crop (see ../shared/FACE_REPLACE.md)
TEMPLATES: dict[str, np.ndarray] = {
    # DeepFaceLive's default: coverage 2.2, shifted up 0.08
    "whole_face": np.array([[0.3752, 0.4073], [0.6158, 0.4073], [0.4955, 0.5435],
                            [0.3883, 0.6637], [0.6028, 0.6637]]),
    # DeepFaceLab's "whole face": coverage 2.131, shifted up 0.07
    "dfl_whole_face": np.array([[0.3712, 0.3996], [0.6195, 0.3996], [0.4954, 0.5402],
                                [0.3847, 0.6643], [0.6061, 0.6643]]),
    # "full face": coverage 1.597
    "full_face": np.array([[0.3281, 0.3221], [0.6596, 0.3221], [0.4938, 0.5098],
                           [0.3460, 0.6755], [0.6416, 0.6755]]),
}

# insightface's ArcFace template at 128 px (112 px points shifted +8 px in x, not scaled)
ARCFACE_128 = np.array([[46.2946, 51.6963], [81.5318, 51.5014], [64.0252, 71.7366],
                        [49.5493, 92.3655], [78.7299, 92.2041]]) / 128.0
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]]) / 112.0

MAX_FIT_ERROR = 0.3
"""Largest RMS residual of the similarity fit, as a fraction of the template's eye
distance, that still counts as a face the template describes (a face turned further
away puts nose and mouth where no rotation and scale of a frontal face can)."""

MIN_EYE_PX = 4.0
"""Eyes closer than this in the frame give no usable fit (degenerate or tiny face)."""


def template(name: str, coverage: float = 1.0) -> np.ndarray:
    """The named template's (5, 2) points, scaled about the crop centre by 1/``coverage``."""
    pts = TEMPLATES[name] if name in TEMPLATES else {"arcface_128": ARCFACE_128,
                                                      "arcface_112": ARCFACE_112}[name]
    return 0.5 + (pts - 0.5) / float(coverage)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) taking ``src`` to ``dst``.

    Umeyama's closed form, reflection excluded. ``src``/``dst`` are (n, 2); returns the
    (2, 3) float64 matrix M with ``dst ~ M @ [x, y, 1]``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    var = (s0 ** 2).sum() / len(src)
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / var if var > 0 else 0.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - m[:, :2] @ ms
    return m


@dataclass(slots=True)
class Alignment:
    """One face's crop: ``matrix`` (2, 3) maps frame pixels to crop pixels of ``size``."""

    matrix: np.ndarray
    size: int
    fit_error: float  # RMS residual / the template's eye distance

    def inverse(self) -> np.ndarray:
        """The (2, 3) matrix from crop pixels back to frame pixels."""
        a = np.vstack([self.matrix, [0.0, 0.0, 1.0]])
        return np.linalg.inv(a)[:2]


def align(landmarks: np.ndarray, points: np.ndarray, size: int) -> Alignment | None:
    """Fit ``landmarks`` (5, 2) frame px to template ``points`` (5, 2, 0..1) in a crop of
    ``size`` px; None when the points cannot describe a face (not finite, eyes closer than
    ``MIN_EYE_PX``, or a fit error over ``MAX_FIT_ERROR``: a face turned too far)."""
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    if not np.isfinite(lm).all() or np.linalg.norm(lm[1] - lm[0]) < MIN_EYE_PX:
        return None
    dst = np.asarray(points, np.float64) * size
    m = similarity(lm, dst)
    fitted = lm @ m[:, :2].T + m[:, 2]
    eye = np.linalg.norm(dst[1] - dst[0])
    err = float(np.sqrt(((fitted - dst) ** 2).sum(1).mean()) / max(eye, 1e-9))
    if not np.isfinite(m).all() or err > MAX_FIT_ERROR:
        return None
    return Alignment(m, int(size), err)


class LandmarkSmoother:
    """Exponential smoothing of each track's landmarks in frame pixels, reset on a jump.

    Per point set, the step is measured as the mean point displacement over the eye
    distance. A step at or above ``jump`` resets to the new points (a cut, a fast turn:
    no lag); below it the new points are blended with a weight that rises from
    ``min_weight`` (a still face: the detector's pixel noise is averaged away) to 1 at
    ``jump`` (a moving face follows at once). A track not updated for ``forget`` calls
    is dropped (calls for other tracks, e.g. a file's second pass, keep it).
    """

    def __init__(self, min_weight: float = 0.35, jump: float = 0.25, forget: int = 30) -> None:
        self.min_weight = float(min_weight)
        self.jump = float(jump)
        self.forget = int(forget)
        self._state: dict[int, tuple[np.ndarray, int]] = {}
        self._calls = 0

    def reset(self) -> None:
        """Forget every track."""
        self._state.clear()

    def update(self, points: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Smoothed (5, 2) float64 points for each track id in ``points`` (raw, frame px)."""
        self._calls += 1
        out: dict[int, np.ndarray] = {}
        for tid, raw in points.items():
            raw = np.asarray(raw, np.float64).reshape(5, 2)
            prev, _ = self._state.get(tid, (None, 0))
            if prev is None or not np.isfinite(prev).all():
                new = raw
            else:
                eye = max(np.linalg.norm(raw[1] - raw[0]), 1e-6)
                step = float(np.linalg.norm(raw - prev, axis=1).mean() / eye)
                if step >= self.jump:
                    new = raw
                else:
                    w = self.min_weight + (1.0 - self.min_weight) * step / self.jump
                    new = prev + w * (raw - prev)
            out[tid] = new
            self._state[tid] = (new.copy(), self._calls)
        old = [k for k, (_, seen) in self._state.items() if self._calls - seen > self.forget]
        for k in old:
            del self._state[k]
        return out
