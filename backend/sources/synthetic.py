"""Synthetic scenes made from a real face photo, with exact ground truth.

A scene pastes a crop of the astronaut's head (``face_photo``) onto a background, moved
and scaled along ``FacePath``s, optionally motion-blurred along its motion, dimmed and
noisy. Every frame is a pure function of (spec, index), so the demo, the tests and the
privacy benchmarks all see the same pixels and know where every face is.

Coordinates in ``FacePath`` are fractions of the frame: x of the width, y and the face
size of the height, so one preset works at any resolution. The face *size* is the height
of the ground-truth face box (hairline to chin, as ``ASTRONAUT_FACE_BOX``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from backend.sources.base import Source
from backend.sources.face_photo import ASTRONAUT_FACE_BOX, astronaut
from backend.types import Frame

# The head crop in the astronaut photo (hair to neck, some margin for the soft edge) and
# the ellipse inside it that is kept; both checked on the photo by eye.
HEAD_CROP: tuple[int, int, int, int] = (141, 0, 313, 226)
_HEAD_ELLIPSE = ((227.0, 112.0), (78.0, 104.0))  # centre, semi-axes (photo pixels)
_FEATHER_SIGMA = 2.0  # photo pixels: soft edge, scales with the face

WaveShape = Literal["sine", "triangle", "ramp"]
Background = Literal["gradient", "noise", "flat"]


# -- motion ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Wave:
    """One coordinate over frames: ``base + amplitude * shape(i / period + phase)``.

    Shapes: "sine" (sin 2 pi p), "triangle" (-1 at p = 0, +1 at p = 0.5, back to -1 at
    p = 1: constant speed back and forth), "ramp" (0 at p <= 0 rising to 1 at p >= 1,
    then held: from ``base`` to ``base + amplitude`` in ``period`` frames).
    ``period <= 0`` or ``amplitude == 0`` is the constant ``base``.
    """

    base: float
    amplitude: float = 0.0
    period: float = 0.0
    shape: WaveShape = "sine"
    phase: float = 0.0

    def at(self, i: float) -> float:
        """Value at frame ``i`` (any real number, negative included)."""
        if self.period <= 0 or self.amplitude == 0:
            return self.base
        p = i / self.period + self.phase
        if self.shape == "sine":
            v = math.sin(2.0 * math.pi * p)
        elif self.shape == "triangle":
            v = 1.0 - 4.0 * abs((p % 1.0) - 0.5)
        elif self.shape == "ramp":
            v = min(max(p, 0.0), 1.0)
        else:
            raise ValueError(f"unknown wave shape {self.shape!r}")
        return self.base + self.amplitude * v


@dataclass(frozen=True, slots=True)
class FacePath:
    """Where one face is in each frame of a scene.

    ``x``/``y``: centre of the face box as fractions of width/height; ``size``: face box
    height as a fraction of the frame height. The face is present in frames
    ``first <= index < last`` (``last`` None: to the end); the waves are evaluated at
    ``index - first``. ``mirror`` flips the face horizontally (a second person).
    """

    x: Wave
    y: Wave
    size: Wave
    first: int = 0
    last: int | None = None
    mirror: bool = False

    def centre(self, index: float) -> tuple[float, float, float]:
        """(x, y, size) fractions at frame ``index``, whether or not the face is present."""
        i = index - self.first
        return self.x.at(i), self.y.at(i), self.size.at(i)

    def present(self, index: int) -> bool:
        """True when the face is in the scene at frame ``index``."""
        return index >= self.first and (self.last is None or index < self.last)


def static(x: float, y: float, size: float) -> FacePath:
    """A face that does not move."""
    return FacePath(Wave(x), Wave(y), Wave(size))


def linear(
    start: tuple[float, float], end: tuple[float, float], n_frames: int,
    size: tuple[float, float] = (0.3, 0.3), first: int = 0,
) -> FacePath:
    """From ``start`` to ``end`` (x, y fractions) and size[0] to size[1] in ``n_frames``.

    Points outside 0..1 are outside the frame: use them for faces entering or leaving.
    The face is present from ``first`` for ``n_frames`` frames.
    """
    n = max(1, n_frames - 1)
    return FacePath(
        Wave(start[0], end[0] - start[0], n, "ramp"),
        Wave(start[1], end[1] - start[1], n, "ramp"),
        Wave(size[0], size[1] - size[0], n, "ramp"),
        first=first, last=first + n_frames,
    )


def sine(
    centre: tuple[float, float], amplitude: tuple[float, float], period: tuple[float, float],
    size: float = 0.3, size_amplitude: float = 0.0, size_period: float = 0.0,
    phase: float = 0.0, mirror: bool = False,
) -> FacePath:
    """Smooth oscillation around ``centre`` (Lissajous when the two periods differ)."""
    return FacePath(
        Wave(centre[0], amplitude[0], period[0], "sine", phase),
        Wave(centre[1], amplitude[1], period[1], "sine", phase),
        Wave(size, size_amplitude, size_period, "sine", phase),
        mirror=mirror,
    )


def bounce(
    centre: tuple[float, float], amplitude: tuple[float, float], period: tuple[float, float],
    size: float = 0.3,
) -> FacePath:
    """Constant speed back and forth on each axis, turning sharply at the ends."""
    return FacePath(
        Wave(centre[0], amplitude[0], period[0], "triangle"),
        Wave(centre[1], amplitude[1], period[1], "triangle"),
        Wave(size),
    )


def zigzag(
    centre: tuple[float, float] = (0.5, 0.5), amplitude: tuple[float, float] = (0.35, 0.2),
    period: tuple[float, float] = (24.0, 30.0), size: float = 0.28,
) -> FacePath:
    """Fast bounce: with the defaults at 1280x720 the face moves ~77 px per frame."""
    return bounce(centre, amplitude, period, size)


def crossing(
    side: Literal["left", "right", "top", "bottom"], along: float = 0.5, size: float = 0.35,
    n_frames: int = 90, first: int = 0, aspect: float = 16 / 9,
) -> FacePath:
    """Enter fully hidden beyond ``side``, cross the frame, leave fully by the other side.

    ``along`` is the other coordinate (y for left/right, x for top/bottom); ``aspect``
    (width/height) converts the face size to a margin in x.
    """
    my = size * 1.3  # the head reaches ~0.9 face heights from the face centre
    mx = my / aspect
    if side in ("left", "right"):
        a, b = -mx, 1.0 + mx
        if side == "right":
            a, b = b, a
        return linear((a, along), (b, along), n_frames, (size, size), first)
    a, b = -my, 1.0 + my
    if side == "bottom":
        a, b = b, a
    return linear((along, a), (along, b), n_frames, (size, size), first)


# -- scenes ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SceneSpec:
    """A synthetic clip: size, rate, length, faces and image conditions.

    ``brightness`` multiplies the whole frame (< 1 dims it); ``noise`` adds Gaussian
    sensor noise of that standard deviation in 8-bit levels; ``motion_blur`` blurs each
    face along its displacement since the previous frame (kernel length = displacement).
    ``faces`` may be given as a list; it is stored as a tuple so specs are hashable.
    """

    width: int = 1280
    height: int = 720
    fps: float = 30.0
    n_frames: int = 300
    faces: tuple[FacePath, ...] = field(default_factory=tuple)
    motion_blur: bool = False
    brightness: float = 1.0
    background: Background = "gradient"
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "faces", tuple(self.faces))
        if self.width < 2 or self.height < 2:
            raise ValueError(f"scene size {self.width}x{self.height} is too small")
        if not self.fps > 0 or self.n_frames < 1:
            raise ValueError("scene needs fps > 0 and n_frames >= 1")
        if not 0.0 < self.brightness <= 4.0:
            raise ValueError(f"brightness {self.brightness} is outside (0, 4]")
        if self.background not in ("gradient", "noise", "flat"):
            raise ValueError(f"unknown background {self.background!r}")

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_frames / self.fps

    def resized(self, width: int, height: int) -> SceneSpec:
        """The same scene at another frame size (positions are fractions)."""
        return replace(self, width=width, height=height)


SCENES: dict[str, SceneSpec] = {
    # periods divide 300 so the looping demo has no jump
    "demo": SceneSpec(
        n_frames=300,
        faces=(
            sine((0.40, 0.47), (0.20, 0.07), (300, 150), 0.32, 0.10, 300),
            sine((0.80, 0.30), (0.07, 0.05), (150, 100), 0.13, 0.02, 300, 0.3, mirror=True),
        ),
    ),
    "fast_motion": SceneSpec(n_frames=120, faces=(zigzag(),), motion_blur=True, seed=1),
    "scaling": SceneSpec(
        n_frames=150, faces=(linear((0.5, 0.5), (0.5, 0.5), 150, (60 / 720, 400 / 720)),),
        background="noise", seed=2,
    ),
    "partly_out": SceneSpec(
        n_frames=180,
        faces=(crossing("left", 0.5, 0.35, 90), crossing("top", 0.4, 0.35, 90, first=90)),
        seed=3,
    ),
    "dim": SceneSpec(
        n_frames=150, faces=(sine((0.5, 0.5), (0.2, 0.05), (150, 75), 0.3),),
        brightness=0.35, noise=3.0, seed=4,
    ),
    "two_faces_crossing": SceneSpec(
        n_frames=120,
        faces=(
            linear((0.15, 0.5), (0.85, 0.5), 120, (0.30, 0.30)),
            replace(linear((0.85, 0.45), (0.15, 0.45), 120, (0.22, 0.22)), mirror=True),
        ),
        background="noise", seed=5,
    ),
}


# -- rendering ------------------------------------------------------------------------
@lru_cache(maxsize=2)
def _head_patch(mirror: bool) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Premultiplied BGRA float32 head crop and the face box in its pixel coordinates."""
    photo, _ = astronaut()
    x0, y0, x1, y1 = HEAD_CROP
    crop = photo[y0:y1, x0:x1].astype(np.float32)
    h, w = crop.shape[:2]
    (cx, cy), (ax, ay) = _HEAD_ELLIPSE
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(
        alpha, (round(cx - x0), round(cy - y0)), (round(ax), round(ay)), 0, 0, 360, 1.0, -1,
        lineType=cv2.LINE_AA,
    )
    # cut out the studio wall around the hair: pale, unsaturated pixels connected to the
    # crop's border (highlights inside the face are not connected, so they stay)
    hsv = cv2.cvtColor(photo[y0:y1, x0:x1], cv2.COLOR_BGR2HSV)
    wall = ((hsv[:, :, 1] < 60) & (hsv[:, :, 2] > 150)).astype(np.uint8)
    wall = cv2.morphologyEx(wall, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _, labels = cv2.connectedComponents(wall)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    alpha[np.isin(labels, edge[edge > 0])] = 0.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), _FEATHER_SIGMA)
    patch = np.dstack([crop * alpha[:, :, None], alpha])
    fx0, fy0, fx1, fy1 = (float(v) for v in ASTRONAUT_FACE_BOX)
    box = (fx0 - x0, fy0 - y0, fx1 - x0, fy1 - y0)
    if mirror:
        patch = patch[:, ::-1]
        box = (w - box[2], box[1], w - box[0], box[3])
    patch = np.ascontiguousarray(patch)
    patch.setflags(write=False)
    return patch, box


@lru_cache(maxsize=8)
def _background(width: int, height: int, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "flat":
        bg = np.full((height, width, 3), 110, np.uint8)
    elif kind == "gradient":
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        t = (xx / max(width - 1, 1) * 0.6 + yy / max(height - 1, 1) * 0.4)[:, :, None]
        top = np.array([150, 170, 190], np.float32)  # warm grey (BGR)
        bottom = np.array([110, 80, 60], np.float32)  # dusk blue
        img = top * (1 - t) + bottom * t
        blobs = np.zeros((height, width, 3), np.float32)
        for _ in range(6):  # soft out-of-focus shapes, like a room behind the speaker
            c = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            r = int(rng.integers(max(2, height // 12), max(3, height // 4)))
            cv2.circle(blobs, c, r, rng.uniform(-30, 30, 3).tolist(), -1)
        sigma = max(1.0, height / 30)
        bg = np.clip(img + cv2.GaussianBlur(blobs, (0, 0), sigma), 0, 255).astype(np.uint8)
    else:  # "noise": three octaves of smooth value noise, coloured
        acc = np.zeros((height, width, 3), np.float32)
        for octave, amp in ((4, 50.0), (16, 20.0), (64, 8.0)):
            small = rng.uniform(-1, 1, (octave * height // width + 2, octave + 2, 3))
            acc += amp * cv2.resize(
                small.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
            )
        bg = np.clip(acc + 120.0, 0, 255).astype(np.uint8)
    bg.setflags(write=False)
    return bg


def _line_kernel(dx: float, dy: float) -> np.ndarray | None:
    """Normalised line kernel of length hypot(dx, dy) along (dx, dy); None when < 1 px."""
    length = math.hypot(dx, dy)
    if length < 1.0:
        return None
    half = int(math.ceil(length / 2.0)) + 1
    k = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    n = int(math.ceil(length * 3)) + 1
    for t in np.linspace(-0.5, 0.5, n):
        x, y = half + t * dx, half + t * dy
        ix, iy = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - ix, y - iy
        # bilinear splat keeps the kernel's centre of mass exactly on the line
        k[iy, ix] += (1 - fx) * (1 - fy)
        k[iy, ix + 1] += fx * (1 - fy)
        k[iy + 1, ix] += (1 - fx) * fy
        k[iy + 1, ix + 1] += fx * fy
    return k / k.sum()


def _placement(spec: SceneSpec, face: FacePath, index: float) -> tuple[float, float, float, float]:
    """(scale_x, scale_y, tx, ty): patch pixel edge u maps to frame x = s*u + t."""
    patch, (bx0, by0, bx1, by1) = _head_patch(face.mirror)
    fx, fy, fs = face.centre(index)
    ph, pw = patch.shape[:2]
    scale = max(fs * spec.height, 1.0) / (by1 - by0)
    # integer patch size after resize; keep its exact scale so the box stays exact
    sx = max(1, round(pw * scale)) / pw
    sy = max(1, round(ph * scale)) / ph
    tx = fx * spec.width - sx * (bx0 + bx1) / 2.0
    ty = fy * spec.height - sy * (by0 + by1) / 2.0
    return sx, sy, tx, ty


def _face_box(face: FacePath, place: tuple[float, float, float, float]) -> np.ndarray:
    _, (bx0, by0, bx1, by1) = _head_patch(face.mirror)
    sx, sy, tx, ty = place
    return np.array([sx * bx0 + tx, sy * by0 + ty, sx * bx1 + tx, sy * by1 + ty], np.float32)


def _paste(img: np.ndarray, spec: SceneSpec, face: FacePath, index: int) -> None:
    patch, _ = _head_patch(face.mirror)
    sx, sy, tx, ty = _placement(spec, face, index)
    ph, pw = patch.shape[:2]
    nw, nh = round(pw * sx), round(ph * sy)
    kernel = None
    if spec.motion_blur:
        # the face centre's displacement since the previous frame, in pixels
        (ax, ay, _), (bx, by, _) = face.centre(index - 1), face.centre(index)
        kernel = _line_kernel((bx - ax) * spec.width, (by - ay) * spec.height)
    pad = (kernel.shape[0] // 2 + 1) if kernel is not None else 1
    H, W = img.shape[:2]
    x0, y0 = max(0, math.floor(tx) - pad), max(0, math.floor(ty) - pad)
    x1, y1 = min(W, math.ceil(tx + nw) + pad), min(H, math.ceil(ty + nh) + pad)
    if x1 <= x0 or y1 <= y0:
        return
    interp = cv2.INTER_AREA if sx < 1.0 else cv2.INTER_CUBIC
    scaled = cv2.resize(patch, (nw, nh), interpolation=interp)
    m = np.float32([[1, 0, tx - x0], [0, 1, ty - y0]])
    layer = cv2.warpAffine(
        scaled, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0),
    )
    if kernel is not None:
        # blurring premultiplied colour and alpha together = integrating the moving head
        layer = cv2.filter2D(layer, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    alpha = np.clip(layer[:, :, 3:4], 0.0, 1.0)
    roi = img[y0:y1, x0:x1].astype(np.float32)
    out = roi * (1.0 - alpha) + layer[:, :, :3]
    img[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def ground_truth(spec: SceneSpec, index: int) -> np.ndarray:
    """Face boxes at frame ``index``: (n, 4) float32 xyxy, in ``spec.faces`` order.

    Boxes are NOT clipped to the frame: a face half outside has a box half outside (clip
    with ``np.clip`` for the visible part). Faces whose box does not overlap the frame, or
    that are absent at this index, are left out. Occluded faces are kept.
    """
    boxes = []
    for face in spec.faces:
        if not face.present(index):
            continue
        b = _face_box(face, _placement(spec, face, index))
        if b[2] > 0 and b[3] > 0 and b[0] < spec.width and b[1] < spec.height:
            boxes.append(b)
    return np.array(boxes, np.float32).reshape(-1, 4)


def render(spec: SceneSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``index`` of the scene: ((H, W, 3) uint8 BGR image, ground-truth boxes).

    Deterministic: the same (spec, index) always gives the same pixels. Boxes are as
    ``ground_truth`` (unclipped, (n, 4) float32 xyxy). Later faces are drawn on top.
    """
    img = _background(spec.width, spec.height, spec.background, spec.seed).copy()
    for face in spec.faces:
        if face.present(index):
            _paste(img, spec, face, index)
    if spec.brightness != 1.0 or spec.noise > 0:
        f = img.astype(np.float32) * spec.brightness
        if spec.noise > 0:
            rng = np.random.default_rng([spec.seed, index])
            f += rng.standard_normal(f.shape, dtype=np.float32) * spec.noise
        img = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    return img, ground_truth(spec, index)


# -- as a source ----------------------------------------------------------------------
class DemoSource(Source):
    """A synthetic scene as a source (``demo`` or ``demo:<preset>``).

    ``loop=True``: endless (index wraps over the scene, which the demo preset makes
    seamless), ``is_live`` True and ``frame_count`` None. ``loop=False``: ends after
    ``n_frames`` like a file. ``realtime=True`` makes ``read()`` sleep to keep ``fps``
    (for a GUI demo without a pacing caller); by default it returns as fast as it renders.
    Timestamps are ``index / fps``.
    """

    def __init__(
        self, preset: str = "demo", *, loop: bool = True, realtime: bool = False,
        spec: SceneSpec | None = None,
    ) -> None:
        if spec is None:
            if preset not in SCENES:
                from backend.errors import InputError

                names = ", ".join(sorted(SCENES))
                raise InputError(f"demo:{preset}: unknown scene (choose from {names})")
            spec = SCENES[preset]
        self.spec = spec
        self.preset = preset
        self.loop = loop
        self.realtime = realtime
        self.name = "demo" if preset == "demo" else f"demo:{preset}"
        self.is_live = loop
        self.fps = spec.fps
        self.size = (spec.width, spec.height)
        self.frame_count = None if loop else spec.n_frames
        self._index = 0
        self._t0: float | None = None

    def open(self) -> None:
        """Start from frame 0."""
        self._index = 0
        self._t0 = None

    def read(self) -> Frame | None:
        """Render the next frame (None after the last when not looping)."""
        i = self._index
        if not self.loop and i >= self.spec.n_frames:
            return None
        if self.realtime:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now
            delay = self._t0 + i / self.fps - now
            if delay > 0:
                time.sleep(delay)
        image, _ = render(self.spec, i % self.spec.n_frames)
        self._index += 1
        return Frame(i, i / self.fps, image, self.name)

    def ground_truth(self, index: int) -> np.ndarray:
        """Face boxes of frame ``index`` as returned by ``read()`` (see ``ground_truth``)."""
        return ground_truth(self.spec, index % self.spec.n_frames)

    def close(self) -> None:
        """Nothing to release."""


# -- to a file ------------------------------------------------------------------------
def _tone(start: int, n: int, rate: int) -> np.ndarray:
    t = (np.arange(start, start + n, dtype=np.float64)) / rate
    # 440 Hz, gated twice a second so a listener can check A/V sync by ear
    gate = (np.floor(t * 2) % 2 == 0).astype(np.float64)
    return (0.2 * np.sin(2 * np.pi * 440.0 * t) * gate).astype(np.float32)[None, :]


def _mux_tone(out, stream, done: int, upto: int, rate: int) -> int:
    """Encode the tone's samples [done, upto) into ``stream`` of ``out``; returns the samples
    written so far (``upto``, or ``done`` when there is nothing new)."""
    if upto <= done:
        return done
    af = av.AudioFrame.from_ndarray(_tone(done, upto - done, rate), format="fltp",
                                    layout="mono")
    af.sample_rate, af.pts, af.time_base = rate, done, Fraction(1, rate)
    out.mux(stream.encode(af))
    return upto


def write_clip(
    spec: SceneSpec, path: str | os.PathLike[str], with_audio: bool = False,
    crf: int = 18, preset: str = "veryfast", keyint: int | None = None,
) -> Path:
    """Render the scene to a video file (H.264, mp4/mov/mkv by extension) and return it.

    Frame i has pts i/fps exactly. ``with_audio`` adds a mono 48 kHz AAC track of a gated
    440 Hz tone as long as the video. mp4/mov are written with the index at the front
    (faststart), like files from cameras and the web. ``keyint``: a keyframe every that
    many frames (else x264's own choice). Odd sizes use yuv444p (see
    ``backend.sinks.recorder``).
    """
    from backend.sinks.recorder import add_h264_stream, container_format, to_video_frame

    path = Path(path)
    fmt = container_format(path)
    rate = Fraction(spec.fps).limit_denominator(100000)
    tb = Fraction(rate.denominator, rate.numerator)
    opts = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
    sample_rate = 48000
    with av.open(os.fspath(path), "w", format=fmt, options=opts) as out:
        video = add_h264_stream(out, spec.width, spec.height, rate, tb, crf=crf, preset=preset)
        if keyint:  # a keyframe every ``keyint`` frames exactly (segment tests and benches)
            video.codec_context.options = {
                **video.codec_context.options,
                "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"}
        audio = None
        if with_audio:
            audio = out.add_stream("aac", rate=sample_rate, layout="mono")
            audio.time_base = Fraction(1, sample_rate)
        samples_done = 0
        for i in range(spec.n_frames):
            image, _ = render(spec, i)
            vf = to_video_frame(image, video)
            vf.pts = i
            vf.time_base = tb
            out.mux(video.encode(vf))
            if audio is not None:
                samples_done = _mux_tone(out, audio, samples_done,
                                         round((i + 1) / spec.fps * sample_rate), sample_rate)
        out.mux(video.encode(None))
        if audio is not None:
            out.mux(audio.encode(None))
    return path
