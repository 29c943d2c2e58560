"""Data that travels between stages: frames, detections and tracks.

Images are always ``(H, W, 3)`` ``uint8`` arrays in BGR colour order (OpenCV's).
Boxes are ``xyxy`` in pixels of the frame they belong to, as ``float32``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Frame:
    """One video frame: its position in the stream, its time and its pixels."""

    index: int
    timestamp: float  # seconds from the start of the stream (real pts for files)
    image: np.ndarray  # (H, W, 3) uint8 BGR
    source_id: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image."""
        return int(self.image.shape[1]), int(self.image.shape[0])


ORIGIN_DETECTED = 0  # found by the coarse or the fine pass
ORIGIN_REFINED = 1  # found in a refinement crop around a known track


@dataclass(slots=True)
class Detections:
    """Faces found in one image, as a struct of arrays (supervision style).

    ``xyxy`` (n, 4) float32 boxes, ``landmarks`` (n, 5, 2) float32 points
    (eyes, nose, mouth corners), ``confidence`` (n,) float32 in [0, 1], ``origin`` (n,)
    int8: which pass found each face (``ORIGIN_DETECTED`` for the coarse and fine passes,
    ``ORIGIN_REFINED`` for a refinement crop around a known track).
    Index with a boolean mask or an index array to filter: ``d[d.confidence > 0.5]``.
    """

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 5, 2), np.float32))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    origin: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        lm = np.asarray(self.landmarks, dtype=np.float32)
        if lm.size == 0 and n:
            # no landmarks given: put all five at the box centre
            centre = (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2
            lm = np.repeat(centre[:, None, :], 5, axis=1)
        self.landmarks = lm.reshape(n, 5, 2)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(n)
        if self.origin is None:
            self.origin = np.full(n, ORIGIN_DETECTED, np.int8)
        else:
            self.origin = np.asarray(self.origin, dtype=np.int8).reshape(n)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, key: np.ndarray | slice | int) -> Detections:
        if isinstance(key, int):
            key = slice(key, key + 1)
        return Detections(self.xyxy[key], self.landmarks[key], self.confidence[key],
                          self.origin[key])

    @classmethod
    def empty(cls) -> Detections:
        """No faces."""
        return cls()

    @classmethod
    def concat(cls, parts: list[Detections]) -> Detections:
        """All rows of ``parts``, in order."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls()
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.xyxy for p in parts]),
                   np.concatenate([p.landmarks for p in parts]),
                   np.concatenate([p.confidence for p in parts]),
                   np.concatenate([p.origin for p in parts]))

    def is_valid(self, width: int, height: int) -> np.ndarray:
        """Boolean mask of rows with finite, non-degenerate boxes that overlap the frame."""
        b = self.xyxy
        finite = np.isfinite(b).all(axis=1) & np.isfinite(self.confidence)
        with np.errstate(invalid="ignore"):
            ok = (
                finite
                & (b[:, 2] > b[:, 0])
                & (b[:, 3] > b[:, 1])
                & (b[:, 2] > 0)
                & (b[:, 3] > 0)
                & (b[:, 0] < width)
                & (b[:, 1] < height)
            )
        return ok


@dataclass(slots=True)
class Track:
    """A face followed across frames.

    ``box`` is the smoothed xyxy box for the current frame (float32, may extend past the
    frame edges); ``velocity`` is the box's change per frame (4,), used to predict and to
    grow the mask while the face is not detected. ``landmarks`` are those of the latest
    detection (stale while ``held_over``).
    """

    track_id: int
    box: np.ndarray
    velocity: np.ndarray
    score: float
    age: int = 1  # frames since the track was created
    frames_since_seen: int = 0  # 0 when detected in the current frame
    hits: int = 1  # frames in which it was detected
    exempt: bool = False  # shown unmasked: only ever set by an explicit user action
    origin: int = ORIGIN_DETECTED  # the pass that found its latest detection
    # (5, 2) float32 frame-pixel points of the latest detection (eyes, nose, mouth
    # corners), from the refinement crop when one found it; None when not known
    landmarks: np.ndarray | None = None

    @property
    def held_over(self) -> bool:
        """True when the current box is predicted, not detected."""
        return self.frames_since_seen > 0


@dataclass(frozen=True, slots=True, eq=False)
class CameraMotion:
    """How the picture moved from one frame to a later one: the point ``p`` of the earlier
    frame is at ``matrix @ [x, y, 1]`` in the later one (a similarity, 2x3 float64)."""

    matrix: np.ndarray

    @classmethod
    def identity(cls) -> CameraMotion:
        """No motion."""
        return cls(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))

    @classmethod
    def shift(cls, dx: float, dy: float) -> CameraMotion:
        """A pure translation by (dx, dy) pixels."""
        return cls(np.array([[1.0, 0.0, float(dx)], [0.0, 1.0, float(dy)]]))

    @property
    def scale(self) -> float:
        """How much larger things look in the later frame (the zoom)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def points(self, pts: np.ndarray) -> np.ndarray:
        """Points (..., 2) of the earlier frame, where they are in the later one."""
        p = np.asarray(pts, np.float64)
        return p @ self.matrix[:, :2].T + self.matrix[:, 2]

    def boxes(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes (..., 4) carried along: centre moved, sides scaled by the zoom (a
        face's box stays upright whatever the roll)."""
        b = np.asarray(boxes, np.float64)
        centre = self.points((b[..., :2] + b[..., 2:]) / 2)
        half = (b[..., 2:] - b[..., :2]) / 2 * self.scale
        return np.concatenate([centre - half, centre + half], axis=-1)

    def moves(self, box: np.ndarray) -> np.ndarray:
        """How far the centre of ``box`` (4,) moves, (dx, dy)."""
        b = np.asarray(box, np.float64)
        centre = (b[:2] + b[2:]) / 2
        return self.points(centre) - centre

    def then(self, later: CameraMotion) -> CameraMotion:
        """This motion followed by ``later``'s."""
        a = np.vstack([self.matrix, [0.0, 0.0, 1.0]])
        b = np.vstack([later.matrix, [0.0, 0.0, 1.0]])
        return CameraMotion((b @ a)[:2])

    def inverse(self) -> CameraMotion:
        """The motion from the later frame back to the earlier one."""
        a = np.vstack([self.matrix, [0.0, 0.0, 1.0]])
        return CameraMotion(np.linalg.inv(a)[:2])
