"""The picture's own motion between frames (a camera pan, zoom or sweep), from its pixels.

Faces alone tell the tracker little about how the picture moved: in a crowd of small faces
that a pan moves several face sizes a frame, few are detected in both frames and none
overlaps its last box. The background tells it exactly. ``MotionEstimator`` follows a few
hundred corners of a small grey copy of each frame into the next (pyramidal Lucas-Kanade)
and fits the motion most of them share (a similarity: shift, zoom and roll; RANSAC leaves
out what moves on its own, such as people walking). ``CameraMotion`` carries boxes along it.

Measured on the real-photo clips of ``bench/real_world.py`` against their known camera
paths: within 0.2 px at 1280x720 for pans and zooms, within 2 px for sweeps blurred by
20-60 px of motion, about 2 ms a frame on one core.
"""

from __future__ import annotations

import numpy as np

from backend.types import CameraMotion

# The grey copy's long side: features of a 1280 px frame at a quarter of its size still
# place a 1080p sweep within 2 px; larger copies cost more and placed it no better.
LONG_SIDE = 320
MAX_CORNERS = 100
MIN_CORNER_DISTANCE = 6
# Corners are sought in each cell of this grid (its own strongest ones), so the motion
# found is the one most of the picture shares, not the one of its most textured object (a
# face moving over a plain wall has more strong corners than the wall) ...
GRID = (4, 3)
# ... down to this share of the strongest corner's strength (a plain wall's grain counts)
WEAK_CORNER = 0.001
# Lucas-Kanade window and pyramid levels: 15 px at level 3 follows 60 px of a 1280 px
# frame's motion (15 px of the grey copy) within a pixel, at a third of 21 px at level 4's
# cost.
WINDOW = (11, 11)
LEVELS = 3
# A fit needs this many corners that agree (within RANSAC_PX small-copy pixels) ...
MIN_INLIERS = 12
RANSAC_PX = 1.0
# ... and this share of the corners that were followed, in at least this share of the grid
# cells that had any: fewer means the frame is mostly things moving on their own (or a
# cut), and the picture's motion is not known.
MIN_INLIER_SHARE = 0.3
MIN_CELL_SHARE = 0.5
# ... and in at least this many cells: a third of the picture moving alike (a person walking
# across a plain wall is one or two cells of it, not the camera)
MIN_CELLS = 4
# A zoom of more than this factor between two frames is a cut or a bad fit, not a camera.
MAX_ZOOM_STEP = 1.5


def chain(motions: list[CameraMotion | None]) -> CameraMotion | None:
    """The motions of consecutive frames one after the other; None when any is unknown."""
    out = CameraMotion.identity()
    for m in motions:
        if m is None:
            return None
        out = out.then(m)
    return out


class MotionEstimator:
    """Measures the ``CameraMotion`` from each image to the next one given to it (one
    stream, in order; not thread-safe). ``measure`` returns None for the first image, after
    a change of size, and wherever the motion cannot be told (too few corners agree)."""

    def __init__(self, long_side: int = LONG_SIDE) -> None:
        self.long_side = int(long_side)
        self._prev: np.ndarray | None = None
        self._prev_shape: tuple[int, ...] | None = None

    def reset(self) -> None:
        """Forget the last image (a new stream, or a seek)."""
        self._prev = None
        self._prev_shape = None

    def measure(self, image: np.ndarray,
                faces: np.ndarray | None = None) -> CameraMotion | None:
        """The motion from the previous image to ``image`` (BGR uint8), in its pixels.

        ``faces``: xyxy boxes (n, 4) of the faces in the previous image, whose corners are
        left out (grown by half): a face moving over a plain wall is not the camera."""
        import cv2

        h, w = image.shape[:2]
        factor = min(1.0, self.long_side / max(h, w, 1))
        small = cv2.resize(image, (max(8, round(w * factor)), max(8, round(h * factor))),
                           interpolation=cv2.INTER_NEAREST) if factor < 1.0 else image
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        prev, same = self._prev, self._prev_shape == image.shape
        self._prev, self._prev_shape = grey, image.shape
        if prev is None or not same:
            return None
        away = None if faces is None or not len(faces) else \
            _grown(np.asarray(faces, np.float64).reshape(-1, 4)) * factor
        return _fit(prev, grey, factor, away)


def _grown(boxes: np.ndarray) -> np.ndarray:
    """xyxy boxes grown by half their size (a quarter on each side)."""
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.25
    return np.concatenate([boxes[:, :2] - half, boxes[:, 2:] + half], axis=1)


def _fit(prev: np.ndarray, grey: np.ndarray, factor: float,
         away: np.ndarray | None = None) -> CameraMotion | None:
    """The similarity most corners of grey image ``prev`` follow into ``grey``, in pixels
    of an image ``1 / factor`` times larger; None when too few corners agree. Corners
    inside the ``away`` boxes (the small image's pixels) are not used."""
    import cv2

    corners, cells = _corners(prev)
    if away is not None and len(corners):
        xy = corners.reshape(-1, 2)
        inside = ((xy[:, None, 0] >= away[None, :, 0]) & (xy[:, None, 0] <= away[None, :, 2])
                  & (xy[:, None, 1] >= away[None, :, 1])
                  & (xy[:, None, 1] <= away[None, :, 3])).any(axis=1)
        corners, cells = corners[~inside], cells[~inside]
    if len(corners) < MIN_INLIERS:
        return None
    moved, status, _ = cv2.calcOpticalFlowPyrLK(prev, grey, corners, None,
                                               winSize=WINDOW, maxLevel=LEVELS)
    ok = status.ravel() == 1
    if ok.sum() < MIN_INLIERS:
        return None
    m, inliers = cv2.estimateAffinePartial2D(corners[ok], moved[ok], method=cv2.RANSAC,
                                             ransacReprojThreshold=RANSAC_PX)
    if m is None or inliers is None:
        return None
    inl = inliers.ravel() == 1
    n = int(inl.sum())
    if n < MIN_INLIERS or n < MIN_INLIER_SHARE * int(ok.sum()):
        return None
    agree = len(np.unique(cells[ok][inl]))
    if agree < MIN_CELLS or agree < MIN_CELL_SHARE * len(np.unique(cells[ok])):
        return None  # what moved alike is one part of the picture, not the picture
    m = np.asarray(m, np.float64)
    m[:, 2] /= factor  # the small copy's shift in the frame's pixels
    motion = CameraMotion(m)
    if not np.isfinite(m).all() or not 1 / MAX_ZOOM_STEP < motion.scale < MAX_ZOOM_STEP:
        return None
    return motion


def _corners(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corners (n, 1, 2) float32 of ``grey``, each cell of ``GRID`` contributing its own
    strongest (at most ``MAX_CORNERS`` over the grid's cells), and the cell index of each
    (n,)."""
    import cv2

    h, w = grey.shape[:2]
    cols, rows = GRID
    per_cell = max(4, MAX_CORNERS // (cols * rows))
    # one pass over the image, weak corners included (strongest first), then each cell's
    # strongest: 12 passes over the cells cost three times as much
    pts = cv2.goodFeaturesToTrack(grey, 4 * MAX_CORNERS, WEAK_CORNER, MIN_CORNER_DISTANCE)
    if pts is None:
        return np.zeros((0, 1, 2), np.float32), np.zeros(0, int)
    xy = pts.reshape(-1, 2)
    cell = (np.minimum(xy[:, 1] * rows // h, rows - 1) * cols
            + np.minimum(xy[:, 0] * cols // w, cols - 1)).astype(int)
    order = np.argsort(cell, kind="stable")  # by cell, strongest first within each
    first = np.searchsorted(cell[order], cell[order], side="left")
    rank = np.empty(len(cell), int)
    rank[order] = np.arange(len(cell)) - first
    keep = rank < per_cell
    return pts[keep], cell[keep]
