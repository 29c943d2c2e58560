"""Real face pixels for tests: scikit-image's astronaut and LFW crops, scaled down and pasted
into generated frames and clips.

Nothing here reads ../shared. Frames are BGR uint8 (H, W, 3); boxes are xyxy floats in the
frame's pixels, the face as it was pasted (hairline to chin for the astronaut, the tight LFW
crop for the LFW faces).

The leak rule (as in ../shared/real-faces/README.md): a face leaks in an output frame when
less than 90% of its core (the central 60% of its box), where the input core was lit (max
channel >= 45), is black (max channel < 30).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

Box = tuple[float, float, float, float]

# LFW crops the detector finds well when scaled down (checked: score >= 0.5 at 16-20 px on
# the background below); the subset's first 100 images are faces, the rest are not.
LFW_GOOD = (1, 3, 5, 7, 9, 11, 13)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes."""
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def matches(boxes: np.ndarray, face: Box, thr: float = 0.3) -> int:
    """How many of ``boxes`` (n, 4) overlap ``face`` with IoU > ``thr``."""
    return sum(1 for b in np.asarray(boxes).reshape(-1, 4) if iou(b, face) > thr)


# -- face patches ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _astronaut() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    from backend.sources.face_photo import astronaut

    img, box = astronaut()
    img.setflags(write=False)
    return img, box


@lru_cache(maxsize=1)
def _lfw() -> np.ndarray:
    from skimage import data

    faces = (data.lfw_subset()[:100] * 255).round().astype(np.uint8)
    faces.setflags(write=False)
    return faces


@dataclass(frozen=True, slots=True)
class Patch:
    """A face image to paste: pixels plus the face's box inside them."""

    image: np.ndarray  # (h, w, 3) BGR uint8
    box: Box  # xyxy in the patch's pixels


def astronaut_face(px: float, margin: float = 0.6) -> Patch:
    """The astronaut's face scaled so that its box is ``px`` tall, with ``margin`` face
    heights of the photo around it (hair, suit, background)."""
    img, (x0, y0, x1, y1) = _astronaut()
    fh = y1 - y0
    m = int(round(margin * fh))
    cx0, cy0 = max(0, x0 - m), max(0, y0 - m)
    cx1, cy1 = min(img.shape[1], x1 + m), min(img.shape[0], y1 + m)
    crop = img[cy0:cy1, cx0:cx1]
    s = px / fh
    out = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                     interpolation=cv2.INTER_AREA)
    sx, sy = out.shape[1] / crop.shape[1], out.shape[0] / crop.shape[0]
    box = ((x0 - cx0) * sx, (y0 - cy0) * sy, (x1 - cx0) * sx, (y1 - cy0) * sy)
    return Patch(out, box)


def lfw_face(index: int, px: int) -> Patch:
    """LFW face ``index`` (0-99; a tight 25x25 crop, grey) scaled to ``px`` x ``px``."""
    face = _lfw()[index]
    small = cv2.resize(face, (px, px), interpolation=cv2.INTER_AREA)
    return Patch(cv2.cvtColor(small, cv2.COLOR_GRAY2BGR), (0.0, 0.0, float(px), float(px)))


# -- frames --------------------------------------------------------------------------------


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A lit, textured, face-free BGR frame: smooth colour blobs plus fine grain."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(70, 170, (max(2, height // 80), max(2, width // 80), 3), np.uint8)
    img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    img += rng.integers(-6, 7, (height, width, 3), dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def paste(frame: np.ndarray, patch: Patch, x: float, y: float) -> Box:
    """Paste ``patch`` so that its face box's top-left lands at (x, y) (rounded to whole
    pixels; clipped at the frame's edges). Returns the face box in the frame."""
    bx0, by0, bx1, by1 = patch.box
    ox, oy = int(round(x - bx0)), int(round(y - by0))
    ph, pw = patch.image.shape[:2]
    h, w = frame.shape[:2]
    fx0, fy0 = max(0, ox), max(0, oy)
    fx1, fy1 = min(w, ox + pw), min(h, oy + ph)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = patch.image[fy0 - oy:fy1 - oy, fx0 - ox:fx1 - ox]
    return (ox + bx0, oy + by0, ox + bx1, oy + by1)


def blurred_paste(frame: np.ndarray, patch: Patch, start: tuple[float, float],
                  end: tuple[float, float], steps: int = 16) -> Box:
    """Paste ``patch`` smeared from ``start`` to ``end`` (face box top-left positions): the
    average of ``steps`` sub-frame renders, as a camera's shutter open for the whole motion
    records it. Returns the face box at the middle of the motion."""
    acc = np.zeros(frame.shape, np.float64)
    for k in range(steps):
        t = (k + 0.5) / steps
        sub = frame.copy()
        paste(sub, patch, start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t)
        acc += sub
    frame[:] = np.clip(acc / steps + 0.5, 0, 255).astype(np.uint8)
    w = patch.box[2] - patch.box[0]
    h = patch.box[3] - patch.box[1]
    mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
    return (mx, my, mx + w, my + h)


# -- clips -----------------------------------------------------------------------------------

Render = Callable[[int], tuple[np.ndarray, list[Box]]]


def write_clip(path: Path, render: Render, n_frames: int, fps: int = 30,
               crf: int = 12) -> list[tuple[np.ndarray, list[Box]]]:
    """Write frames ``render(0..n-1)`` as an H.264 mp4 and return them (frame, face boxes).

    A low CRF keeps the small faces' pixels close to what was rendered."""
    import av

    from backend.sinks.recorder import add_h264_stream, to_video_frame

    rate = Fraction(fps)
    tb = Fraction(1, fps)
    frames = []
    with av.open(os.fspath(path), "w", format="mp4") as out:
        first, boxes = render(0)
        h, w = first.shape[:2]
        video = add_h264_stream(out, w, h, rate, tb, crf=crf, preset="veryfast")
        for i in range(n_frames):
            image, boxes = (first, boxes) if i == 0 else render(i)
            frames.append((image, boxes))
            vf = to_video_frame(image, video)
            vf.pts = i
            vf.time_base = tb
            out.mux(video.encode(vf))
        out.mux(video.encode())
    return frames


def decode(path: Path) -> list[np.ndarray]:
    """Every frame of a video file, BGR."""
    import av

    with av.open(os.fspath(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(c.streams.video[0])]


# -- the leak rule ---------------------------------------------------------------------------


def core(box: Box, frac: float = 0.6) -> tuple[int, int, int, int]:
    """The central ``frac`` of ``box``, as whole-pixel slice bounds (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * (1 - frac) / 2, (y1 - y0) * (1 - frac) / 2
    return (int(np.floor(x0 + mx)), int(np.floor(y0 + my)), int(np.ceil(x1 - mx)),
            int(np.ceil(y1 - my)))


def masked_fraction(output: np.ndarray, original: np.ndarray, box: Box) -> float:
    """Share of the box's core, where ``original`` is lit, that is black in ``output``
    (1.0 when no core pixel is lit)."""
    h, w = output.shape[:2]
    x0, y0, x1, y1 = core(box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return 1.0
    lit = original[y0:y1, x0:x1].max(axis=2) >= 45
    if not lit.any():
        return 1.0
    black = output[y0:y1, x0:x1].max(axis=2) < 30
    return float((black & lit).sum() / lit.sum())


def leaks(output: np.ndarray, original: np.ndarray, box: Box) -> bool:
    """True when the face in ``box`` is not masked in ``output`` by the leak rule."""
    return masked_fraction(output, original, box) < 0.9
