"""Real photographs and clips made from them: leaks by face size and speed, PTIM vs deface.

Run: ``python bench/real_world.py [--quick] [--photos-only | --clips-only] [--no-deface]
[--sizes 1280x720,1920x1080] [--frames N] [--photos a,b] [--ptim-args "..."]
[--faces DIR] [--json OUT] [--mosaics all [--photos none]]``.

Inputs are the photos and checked face boxes of ``../shared/real-faces`` (``--faces``; see
its README). They are read at run time only, never copied: the clips, their ground truth and
every tool's output go to ``bench/out/real_world`` (git-ignored).

Tools, each run once per input set as one process over all its inputs (model load and start-up
counted once, as on long footage):

* ``ptim``            ``main.py process IN... -o DIR --quiet --mask solid [--ptim-args]``
* ``deface``          ``deface IN... --replacewith solid`` (deface's defaults otherwise:
  threshold 0.2, full-resolution detector input, mask scale 1.3)
* ``deface-640x360``  the same with ``--scale 640x360``
* ``passthrough``     clips only: decode + encode like PTIM's writer, no detection
  (``bench.common.passthrough``), the ceiling of any tool with this codec on this machine

Leak rule (``../shared/real-faces/README.md``): the core of a true box is its central
60% x 60%; the face is LEAKED when less than 90% of the core's lit pixels (max channel >= 45
in the unmasked input) are black (max channel < 30) in the output. Boxes less than 40% inside
the frame, and cores without a lit pixel ("unlit", e.g. the darkest dimmed frames), are not
counted; ``ignore`` boxes are never scored. Face size = box HEIGHT in the scored image's
pixels (photo pixels for photos, clip pixels for clips), bucketed <16, 16-32, 32-64, >64.

Clips (``make_clip_frames``, a pure function of photo, boxes and ``ClipSpec``): a virtual
camera moves over the photo and its crop is scaled to the clip size (upscaled when the crop
is smaller than the clip, so face sizes vary):

* ``pan_zoom``    slow pan with a 1.4-2x zoom in or out over the clip;
* ``sweep_blur``  fast sweeps at 20-60 clip px per frame from frame 0, bouncing at the
  photo's edges, each frame the average of sub-frame renders along the whole frame interval
  (steps of at most 3 px), so the blur length equals the motion;
* ``dim``         slow drift while the gain falls to 0.25-0.35 with sensor noise that grows
  as the gain falls (luma and chroma, seeded).

Each frame's true boxes are the photo's boxes mapped through the camera at mid-exposure.
Over-masking (``blacked away``, photos and clips): the share of the input's lit pixels away
from every face (true and ignore boxes grown 2x about their centre) that the output made
black; for clips the mean over frames, and ``half-black`` counts the frames where it is over
50% (a frame all but blacked out). The leak rule alone would reward blacking everything.

Clips are H.264 crf 18 and cached with their truth (``.json``: spec and boxes per frame;
``.npz``: the lit mask of every scored core, taken from the rendered unmasked frame).

Mosaics (``--mosaics mosaic_600,mosaic_440`` or ``all``; with ``--photos none`` only them):
the photos' faces fill 2.6% or more of a photo's width, so no clip made from them shows a
face under 16 px. A mosaic lays the five crowd photos, shrunk to at most 600 or 440 px wide,
in a 4x3 or 5x3 grid on plain grey (``make_mosaic``, written losslessly to
``bench/out/real_world/mosaics``): 687 and 798 real faces of 9-37 px, as in footage
of a school photo or a stadium; their stills and clips are scored like the photos'.

Sizes: the first of ``--sizes`` (1280x720) is made from every photo (``--frames``, 16); each
further size (1920x1080) from ``--speed-photos`` (the four of ``--quick``) with
``--speed-frames`` (12), to keep deface's full-resolution runs within a sane time.

Speed: fps = frames of all clips of one size / wall time of the tool's one process over them,
solid masks for both tools (the same runs that are scored). ``vs deface`` = fps / deface
default's fps; ``% of pass`` = fps / pass-through fps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    OUT_DIR,
    ROOT,
    decode_frames,
    deface_exe,
    make_clip,
    parse_size,
    passthrough,
    python_exe,
    run_timed,
    show,
    visible_share,
)

DEFAULT_FACES = ROOT.parent / "shared" / "real-faces"
WORK = OUT_DIR / "real_world"

CORE = 0.6  # central share of each box side that must be covered
LIT = 45  # max channel >= this in the input: a pixel that shows something
BLACK = 30  # max channel < this in the output: masked
COVER = 0.9  # share of the lit core that must be black
MIN_INSIDE = 0.4  # boxes less inside the frame than this are not counted
BUCKETS = ("<16", "16-32", "32-64", ">64")
KINDS = ("pan_zoom", "sweep_blur", "dim")
TOOLS = ("ptim", "deface", "deface-640x360")
GEN_VERSION = 1  # bump when the clip generator changes: cached clips are then rebuilt
PTIM_MAIN = [ROOT / "main.py"]  # the main.py that runs; --ptim-root points it at another checkout
QUICK_PHOTOS = ("ulfd_1", "deface_city", "ultralytics_zidane", "opencv_basketball1")


# -- photos ---------------------------------------------------------------------------
@dataclass(slots=True)
class Photo:
    """One photo of the faces folder: BGR pixels, true boxes and ignore boxes (x1,y1,x2,y2)."""

    stem: str
    path: Path
    image: np.ndarray
    boxes: np.ndarray  # (N, 4) float, faces that must be masked
    ignore: np.ndarray  # (M, 4) float, neither required nor penalised
    sha256: str = ""


def load_photos(faces_dir: Path, stems: Sequence[str] | None = None) -> list[Photo]:
    """Every ``<stem>.json`` + ``<stem>.jpg`` of ``faces_dir`` (or only ``stems``), sorted.

    Raises FileNotFoundError when the folder or a named stem is missing, ValueError when a
    photo's size disagrees with its JSON (boxes would not match the pixels).
    """
    import cv2

    if not faces_dir.is_dir():
        raise FileNotFoundError(f"faces folder {faces_dir} not found")
    jsons = sorted(faces_dir.glob("*.json"))
    if stems is not None:
        wanted = set(stems)
        missing = wanted - {j.stem for j in jsons}
        if missing:
            raise FileNotFoundError(f"no {', '.join(sorted(missing))} in {faces_dir}")
        jsons = [j for j in jsons if j.stem in wanted]
    photos = []
    for j in jsons:
        meta = json.loads(j.read_text())
        path = j.with_name(meta["image"])
        # the boxes are in stored pixel order: EXIF rotation would move them
        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if image is None:
            raise FileNotFoundError(f"cannot read {path}")
        if image.shape[:2] != (meta["height"], meta["width"]):
            raise ValueError(f"{path}: {image.shape[1]}x{image.shape[0]} but JSON says "
                             f"{meta['width']}x{meta['height']}")
        photos.append(Photo(j.stem, path, image,
                            np.asarray(meta["boxes"], float).reshape(-1, 4),
                            np.asarray(meta.get("ignore", []), float).reshape(-1, 4),
                            meta.get("sha256", "")))
    if not photos:
        raise FileNotFoundError(f"no photos in {faces_dir}")
    return photos


# -- mosaics: crowds of small faces -------------------------------------------------------
# The photos' faces fill 2.6% or more of a photo's width, so clips made from them (a crop of
# 50-70% of the photo scaled to the clip) show no face under 16 px. Footage of a school
# photo or a stadium does. A mosaic lays the crowd photos, shrunk, side by side in one large
# picture: real faces at 9-37 px that stay that small in its clips.
MOSAIC_STEMS = ("ulfd_27", "ulfd_1", "ulfd_8", "deface_city", "ulfd_11")
MOSAIC_CELLS = {"mosaic_600": (600, 4, 3), "mosaic_440": (440, 5, 3)}  # cell px, cols, rows
MOSAIC_FILL = 110  # grey between the cells: no face, no edge the detector could take for one


def make_mosaic(photos: Sequence[Photo], name: str, cell: int, cols: int, rows: int,
                folder: Path) -> Photo:
    """A ``cols`` x ``rows`` mosaic of ``photos`` (cycled; every second round mirrored), each
    shrunk to at most ``cell`` px wide (never enlarged: an upscaled face is no small face),
    boxes and ignore boxes mapped with it. Written to ``folder/<name>.png`` (lossless) so the
    tools read the pixels that are scored."""
    import hashlib

    import cv2

    cells = []
    for k in range(cols * rows):
        p = photos[k % len(photos)]
        mirrored = (k // len(photos)) % 2 == 1
        s = min(1.0, cell / p.image.shape[1])
        img = cv2.resize(p.image, (round(p.image.shape[1] * s), round(p.image.shape[0] * s)),
                         interpolation=cv2.INTER_AREA) if s < 1.0 else p.image.copy()
        boxes, ignore = p.boxes * s, p.ignore * s
        if mirrored:
            img = img[:, ::-1].copy()
            w = img.shape[1]
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
            ignore = np.stack([w - ignore[:, 2], ignore[:, 1], w - ignore[:, 0], ignore[:, 3]],
                              1) if len(ignore) else ignore
        cells.append((img, boxes, ignore))
    row_h = [max(c[0].shape[0] for c in cells[r * cols:(r + 1) * cols]) for r in range(rows)]
    canvas = np.full((sum(row_h), cols * cell, 3), MOSAIC_FILL, np.uint8)
    all_boxes, all_ignore = [], []
    for k, (img, boxes, ignore) in enumerate(cells):
        r, c = divmod(k, cols)
        h, w = img.shape[:2]
        x0 = c * cell + (cell - w) // 2
        y0 = sum(row_h[:r]) + (row_h[r] - h) // 2
        canvas[y0:y0 + h, x0:x0 + w] = img
        off = np.array([x0, y0, x0, y0], float)
        all_boxes.append(boxes + off)
        if len(ignore):
            all_ignore.append(ignore + off)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    cv2.imwrite(str(path), canvas)
    return Photo(name, path, canvas, np.concatenate(all_boxes).reshape(-1, 4),
                 np.concatenate(all_ignore).reshape(-1, 4) if all_ignore else np.zeros((0, 4)),
                 hashlib.sha256(canvas.tobytes()).hexdigest())


def load_mosaics(faces_dir: Path, names: Sequence[str]) -> list[Photo]:
    """The named mosaics (``MOSAIC_CELLS``), built from ``MOSAIC_STEMS`` of ``faces_dir``."""
    unknown = set(names) - set(MOSAIC_CELLS)
    if unknown:
        raise ValueError(f"unknown mosaic {', '.join(sorted(unknown))}; choose from "
                         f"{', '.join(MOSAIC_CELLS)}")
    crowd = load_photos(faces_dir, MOSAIC_STEMS)
    crowd.sort(key=lambda p: MOSAIC_STEMS.index(p.stem))
    return [make_mosaic(crowd, n, *MOSAIC_CELLS[n], WORK / "mosaics") for n in names]


# -- scoring --------------------------------------------------------------------------
def bucket(height: float) -> str:
    """Size bucket of a face of this box height in pixels."""
    if height < 16:
        return BUCKETS[0]
    if height < 32:
        return BUCKETS[1]
    if height <= 64:
        return BUCKETS[2]
    return BUCKETS[3]


def core_rect(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """Integer (xa, ya, xb, yb) of the box's central 60% x 60%, clipped to the frame.

    At least one pixel per side before clipping (a 6 px face still has a core); None when
    the box is less than 40% inside the frame or its core lies outside it.
    """
    if visible_share(box, width, height) < MIN_INSIDE:
        return None
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) * CORE / 2, (y1 - y0) * CORE / 2
    xa, ya = round(cx - hw), round(cy - hh)
    xb, yb = max(xa + 1, round(cx + hw)), max(ya + 1, round(cy + hh))
    xa, ya, xb, yb = max(0, xa), max(0, ya), min(width, xb), min(height, yb)
    if xb <= xa or yb <= ya:
        return None
    return xa, ya, xb, yb


def lit_mask(image: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """Bool mask of the rect's lit pixels (max channel >= 45) in the unmasked input."""
    xa, ya, xb, yb = rect
    return image[ya:yb, xa:xb].max(axis=2) >= LIT


def covered_share(lit: np.ndarray, output: np.ndarray, rect: tuple[int, int, int, int]) -> float:
    """Share of the lit pixels that are black (max channel < 30) in the output; 1.0 if none."""
    n = int(lit.sum())
    if n == 0:
        return 1.0
    xa, ya, xb, yb = rect
    black = output[ya:yb, xa:xb].max(axis=2) < BLACK
    return float((black & lit).sum()) / n


@dataclass(slots=True)
class FaceResult:
    """Verdict on one true box: ``counted`` False when <40% inside or its core is unlit."""

    box: tuple[float, float, float, float]
    height: float  # box height in pixels: the size used for buckets
    counted: bool
    leaked: bool = False
    covered: float = 1.0  # share of the core's lit pixels that are black
    unlit: bool = False  # inside the frame but no lit core pixel: nothing to leak

    @property
    def bucket(self) -> str:
        """Size bucket by box height."""
        return bucket(self.height)


def fit_output(output: np.ndarray, width: int, height: int) -> np.ndarray:
    """The output at the input's size: deface's writer rounds sides up to multiples of 16."""
    if output.shape[:2] == (height, width):
        return output
    import cv2

    return cv2.resize(output, (width, height), interpolation=cv2.INTER_AREA)


def score_face(image: np.ndarray, output: np.ndarray, box: Sequence[float]) -> FaceResult:
    """The leak rule on one true box of an unmasked ``image`` and its masked ``output``
    (same size, BGR uint8)."""
    h, w = image.shape[:2]
    result = FaceResult(tuple(float(v) for v in box), float(box[3] - box[1]), False)
    rect = core_rect(box, w, h)
    if rect is None:
        return result
    lit = lit_mask(image, rect)
    if not lit.any():
        result.unlit = True
        return result
    result.counted = True
    result.covered = covered_share(lit, output, rect)
    result.leaked = result.covered < COVER
    return result


def score_photo(image: np.ndarray, boxes: Iterable[Sequence[float]],
                ignore: Iterable[Sequence[float]] | None, output_image: np.ndarray
                ) -> list[FaceResult]:
    """One FaceResult per true box, in order. ``ignore`` boxes are not scored (accepted so
    callers pass the photo's full truth; ``blacked_outside`` uses them). An output of
    another size is scaled to the input's first."""
    del ignore  # never required nor penalised by the leak rule
    h, w = image.shape[:2]
    out = fit_output(output_image, w, h)
    return [score_face(image, out, b) for b in boxes]


def lit_away(image: np.ndarray, boxes: Iterable[Sequence[float]],
             ignore: Iterable[Sequence[float]], grow: float = 2.0) -> np.ndarray:
    """The input's lit pixels away from every face (true and ignore boxes grown ``grow``
    times about their centre), (H, W) bool: where a black output pixel is over-masking."""
    h, w = image.shape[:2]
    away = np.ones((h, w), bool)
    for b in [*boxes, *ignore]:
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        hw, hh = (b[2] - b[0]) * grow / 2, (b[3] - b[1]) * grow / 2
        away[max(0, int(cy - hh)):max(0, math.ceil(cy + hh)),
             max(0, int(cx - hw)):max(0, math.ceil(cx + hw))] = False
    return (image.max(axis=2) >= LIT) & away


def blacked_share(away: np.ndarray, output: np.ndarray) -> float:
    """Share of ``away`` (a ``lit_away`` mask) that is black in ``output`` (same size)."""
    n = int(away.sum())
    return float(((output.max(axis=2) < BLACK) & away).sum()) / n if n else 0.0


def blacked_outside(image: np.ndarray, boxes: Iterable[Sequence[float]],
                    ignore: Iterable[Sequence[float]], output_image: np.ndarray,
                    grow: float = 2.0) -> float:
    """Share of the input's lit pixels away from every face (true and ignore boxes grown
    ``grow`` times about their centre) that are black in the output: over-masking, which
    the leak rule alone would reward."""
    h, w = image.shape[:2]
    return blacked_share(lit_away(image, boxes, ignore, grow), fit_output(output_image, w, h))


@dataclass(slots=True)
class Tally:
    """Leaked / counted face(-frame)s per size bucket, plus unlit ones (not counted)."""

    leaked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    unlit: int = 0
    missing_frames: int = 0  # frames the output lacks (not scored)
    frames: int = 0  # frames scored for over-masking
    blacked: float = 0.0  # sum over those frames of their blacked-away share
    blacked_half: int = 0  # frames with more than half of their away pixels blacked

    def add(self, r: FaceResult) -> None:
        """Count one verdict."""
        if r.unlit:
            self.unlit += 1
        if not r.counted:
            return
        self.total[r.bucket] += 1
        self.leaked[r.bucket] += int(r.leaked)

    def merge(self, other: Tally) -> None:
        """Add another tally's counts to this one."""
        for b in BUCKETS:
            self.leaked[b] += other.leaked[b]
            self.total[b] += other.total[b]
        self.unlit += other.unlit
        self.missing_frames += other.missing_frames
        self.frames += other.frames
        self.blacked += other.blacked
        self.blacked_half += other.blacked_half

    def add_frame(self, share: float) -> None:
        """Count one frame's blacked-away share (over-masking)."""
        self.frames += 1
        self.blacked += share
        self.blacked_half += int(share > 0.5)

    @property
    def blacked_mean(self) -> float:
        """Mean blacked-away share per scored frame."""
        return self.blacked / self.frames if self.frames else 0.0

    @property
    def all_leaked(self) -> int:
        """Leaked over all buckets."""
        return sum(self.leaked.values())

    @property
    def all_total(self) -> int:
        """Counted over all buckets."""
        return sum(self.total.values())

    def as_json(self) -> dict:
        """Per bucket [leaked, total], the sums, unlit and missing frames."""
        return {"buckets": {b: [self.leaked[b], self.total[b]] for b in BUCKETS},
                "total": [self.all_leaked, self.all_total], "unlit": self.unlit,
                "missing_frames": self.missing_frames, "blacked_away": self.blacked_mean,
                "frames_half_blacked": self.blacked_half}


# -- clips ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClipSpec:
    """What a clip is: camera kind, size, length, seed (the photo adds its own), fps."""

    kind: str
    width: int
    height: int
    n_frames: int
    seed: int = 0
    fps: float = 30.0


@dataclass(frozen=True, slots=True)
class Camera:
    """One exposure instant: image point (x0, y0) lands on clip pixel (0, 0); ``scale`` clip
    pixels per image pixel; ``gain`` multiplies brightness."""

    x0: float
    y0: float
    scale: float
    gain: float = 1.0


def _smooth(u: float) -> float:
    """Smoothstep on [0, 1]: eases camera moves in and out."""
    u = min(1.0, max(0.0, u))
    return u * u * (3 - 2 * u)


def _fold(x: float, span: float) -> float:
    """x folded into [0, span] like a ball bouncing between two walls."""
    if span <= 0:
        return 0.0
    m = x % (2 * span)
    return m if m <= span else 2 * span - m


class CameraPath:
    """The camera of one clip over one photo, drawn from ``spec.seed``: ``at(t)`` for a
    continuous time t in frames (frame i is exposed over [i, i+1)), ``exposures(i)`` the
    sub-frame instants averaged into frame i, ``mid(i)`` the instant its truth uses."""

    MAX_STEP = 3.0  # clip px between sub-frame renders of a sweep
    MAX_SUB = 24  # sub-frames per frame at most (60 px / 3 px = 20 fits)

    def __init__(self, img_w: int, img_h: int, spec: ClipSpec) -> None:
        self.w, self.h, self.spec = img_w, img_h, spec
        self.aspect = spec.height / spec.width
        rng = np.random.default_rng([spec.seed, KINDS.index(spec.kind), img_w, img_h])
        self.zmax = min(img_w, img_h / self.aspect)  # widest crop that fits the photo
        n = max(spec.n_frames, 1)
        if spec.kind == "pan_zoom":
            za, zb = self.zmax * rng.uniform(0.9, 1.0), self.zmax / rng.uniform(1.4, 2.0)
            self.z0, self.z1 = (za, zb) if rng.random() < 0.5 else (zb, za)
            self.a, self.b = rng.uniform(0, 1, 2), rng.uniform(0, 1, 2)  # centres, 0-1 of photo
            self.duration = n
        elif spec.kind == "sweep_blur":
            self.z0 = self.z1 = self.zmax / rng.uniform(1.4, 2.0)
            self.period = rng.uniform(8, 16)  # frames per speed cycle
            self.phase = rng.uniform(0, 2 * math.pi)
            rx, ry = self._spans(self.z0)
            base = 0.0 if rx >= ry else math.pi / 2  # sweep along the longer free range
            ang = base + rng.uniform(-0.4, 0.4) + (math.pi if rng.random() < 0.5 else 0.0)
            self.dir = (math.cos(ang), math.sin(ang))
            self.p0 = (rng.uniform(0, rx), rng.uniform(0, ry))
        elif spec.kind == "dim":
            self.z0 = self.z1 = self.zmax / rng.uniform(1.1, 1.5)
            self.a = rng.uniform(0.3, 0.7, 2)
            self.b = self.a + rng.uniform(-0.1, 0.1, 2)  # a slow drift
            self.duration = n
            self.gmin = rng.uniform(0.25, 0.35)
        else:
            raise ValueError(f"unknown clip kind {spec.kind!r}; choose from {', '.join(KINDS)}")

    def _spans(self, z: float) -> tuple[float, float]:
        """Free range of the crop's top-left corner for crop width z (image px)."""
        return max(0.0, self.w - z), max(0.0, self.h - z * self.aspect)

    def speed(self, t: float) -> float:
        """Sweep speed in clip px per frame at time t: 20 to 60."""
        return 40 + 20 * math.sin(2 * math.pi * t / self.period + self.phase)

    def at(self, t: float) -> Camera:
        """The camera at time t (frames)."""
        k = self.spec.kind
        if k == "sweep_blur":
            z = self.z0
            scale = self.spec.width / z
            w_ = 2 * math.pi / self.period
            dist = 40 * t - 20 / w_ * (math.cos(w_ * t + self.phase) - math.cos(self.phase))
            rx, ry = self._spans(z)
            x0 = _fold(self.p0[0] + dist / scale * self.dir[0], rx)
            y0 = _fold(self.p0[1] + dist / scale * self.dir[1], ry)
            return Camera(x0, y0, scale)
        e = _smooth(t / self.duration)
        if k == "pan_zoom":
            z = self.z0 * (self.z1 / self.z0) ** e  # geometric: constant zoom rate
            gain = 1.0
        else:
            z = self.z0
            gain = 1.0 - (1.0 - self.gmin) * e
        cx = (self.a[0] + (self.b[0] - self.a[0]) * e) * self.w
        cy = (self.a[1] + (self.b[1] - self.a[1]) * e) * self.h
        rx, ry = self._spans(z)
        x0 = min(max(cx - z / 2, 0.0), rx)  # the crop stays inside the photo
        y0 = min(max(cy - z * self.aspect / 2, 0.0), ry)
        return Camera(x0, y0, self.spec.width / z, gain)

    def mid(self, i: int) -> Camera:
        """Frame i's camera at mid-exposure: where its true boxes are."""
        return self.at(i + 0.5)

    def exposures(self, i: int) -> list[Camera]:
        """Sub-frame instants of frame i: one for slow kinds; for sweeps enough to keep each
        step under 3 clip px, spread evenly over [i, i+1), so blur length = motion."""
        if self.spec.kind != "sweep_blur":
            return [self.mid(i)]
        n = min(self.MAX_SUB, max(1, math.ceil(self.speed(i + 0.5) / self.MAX_STEP)))
        return [self.at(i + (j + 0.5) / n) for j in range(n)]


def map_boxes(boxes: np.ndarray, cam: Camera) -> np.ndarray:
    """Photo boxes (N, 4) in clip pixels for this camera."""
    out = np.empty_like(boxes, dtype=float)
    out[:, 0::2] = (boxes[:, 0::2] - cam.x0) * cam.scale
    out[:, 1::2] = (boxes[:, 1::2] - cam.y0) * cam.scale
    return out


class _Renderer:
    """Warps the photo for a camera; the photo is pre-shrunk once (INTER_AREA) when the
    clip ever downscales it, so every warp upsamples or keeps scale (no aliasing)."""

    def __init__(self, image: np.ndarray, min_scale: float, size: tuple[int, int]) -> None:
        import cv2

        h, w = image.shape[:2]
        if min_scale < 1.0:
            nw, nh = max(1, round(w * min_scale)), max(1, round(h * min_scale))
            self.src = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
            self.fx, self.fy = nw / w, nh / h
        else:
            self.src, self.fx, self.fy = image, 1.0, 1.0
        self.size = size

    def warp(self, cam: Camera) -> np.ndarray:
        """The clip frame (BGR uint8) of one instant, no gain."""
        import cv2

        sx, sy = cam.scale / self.fx, cam.scale / self.fy
        # pixel centres at +0.5: clip u = (x - x0) * scale in continuous coordinates
        m = np.array([[sx, 0, sx * (0.5 - cam.x0 * self.fx) - 0.5],
                      [0, sy, sy * (0.5 - cam.y0 * self.fy) - 0.5]], np.float64)
        return cv2.warpAffine(self.src, m, self.size, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)


def make_clip_frames(image: np.ndarray, boxes: np.ndarray, spec: ClipSpec
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame BGR uint8, true boxes (N, 4) in clip px, same order as ``boxes``) for every
    frame of the clip. A pure function of its arguments: the same call yields the same
    pixels (noise is seeded by ``spec.seed`` and the frame index)."""
    path = CameraPath(image.shape[1], image.shape[0], spec)
    min_scale = min(c.scale for i in range(spec.n_frames) for c in path.exposures(i))
    renderer = _Renderer(image, min_scale, (spec.width, spec.height))
    for i in range(spec.n_frames):
        cams = path.exposures(i)
        if len(cams) == 1:
            frame = renderer.warp(cams[0]).astype(np.float32)
        else:
            frame = np.zeros((spec.height, spec.width, 3), np.float32)
            for cam in cams:  # a box filter over the exposure: motion blur as long as the motion
                frame += renderer.warp(cam)
            frame /= len(cams)
        mid = path.mid(i)
        if spec.kind == "dim":
            frame *= mid.gain
            rng = np.random.default_rng([spec.seed, i])
            sigma = 2.0 + 10.0 * (1.0 - mid.gain)  # gain-up noise: darker scene, more noise
            luma = rng.standard_normal((spec.height, spec.width, 1), dtype=np.float32)
            chroma = rng.standard_normal(frame.shape, dtype=np.float32)
            frame += sigma * luma + (sigma / 2) * chroma
        yield np.clip(frame + 0.5, 0, 255).astype(np.uint8), map_boxes(boxes, mid)


@dataclass(slots=True)
class ClipTruth:
    """Ground truth of a written clip: boxes per frame and the lit mask of each scored core.

    ``cores`` rows are (frame, face, xa, ya, xb, yb); ``lit[k]`` is row k's mask (from the
    rendered unmasked frame, so the rule needs no re-render).
    """

    spec: ClipSpec
    photo: str
    boxes: np.ndarray  # (n_frames, n_faces, 4) clip px
    cores: np.ndarray  # (K, 6) int
    lit: list[np.ndarray]
    unlit: int = 0  # face-frames inside the frame whose core had no lit pixel

    def away_masks(self, clip: Path, ignore: np.ndarray) -> list[np.ndarray]:
        """``lit_away`` of every frame of ``clip`` (this truth's), with this truth's boxes
        and ``ignore`` (frames, M, 4): computed once, shared by every tool's score."""
        return [lit_away(image, self.boxes[i], ignore[i])
                for i, image in zip(range(self.spec.n_frames), decode_frames(clip),
                                    strict=False)]

    def score(self, frames: Iterable[np.ndarray],
              away: Sequence[np.ndarray] | None = None) -> Tally:
        """Tally of one output video's frames against this truth (an output of another size
        is scaled to the clip's; frames past the clip are ignored, missing ones counted).

        With ``away`` (``away_masks``: one mask per clip frame) each frame's over-masking is
        counted too."""
        tally = Tally(unlit=self.unlit)
        by_frame: dict[int, list[int]] = {}
        for k, row in enumerate(self.cores):
            by_frame.setdefault(int(row[0]), []).append(k)
        n = 0
        it = iter(frames)
        try:
            for i, out in zip(range(self.spec.n_frames), it, strict=False):
                n += 1
                out = fit_output(out, self.spec.width, self.spec.height)
                if away is not None and i < len(away):
                    tally.add_frame(blacked_share(away[i], out))
                for k in by_frame.get(i, []):
                    _, face, xa, ya, xb, yb = (int(v) for v in self.cores[k])
                    box = self.boxes[i, face]
                    cov = covered_share(self.lit[k], out, (xa, ya, xb, yb))
                    tally.add(FaceResult(tuple(box), float(box[3] - box[1]), True,
                                         cov < COVER, cov))
        finally:
            if hasattr(it, "close"):
                it.close()  # close the decoder early
        tally.missing_frames = self.spec.n_frames - n
        return tally


def clip_ignore(photo: Photo, spec: ClipSpec) -> np.ndarray:
    """The photo's ignore boxes in clip pixels, per frame (n_frames, M, 4)."""
    path = CameraPath(photo.image.shape[1], photo.image.shape[0], spec)
    return np.array([map_boxes(photo.ignore, path.mid(i)) for i in range(spec.n_frames)]
                    ).reshape(spec.n_frames, -1, 4)


def clip_name(stem: str, spec: ClipSpec) -> str:
    """``<photo>_<kind>_<W>x<H>_<N>f_s<seed>``: the cache key of a clip."""
    return f"{stem}_{spec.kind}_{spec.width}x{spec.height}_{spec.n_frames}f_s{spec.seed}"


def _truth_meta(photo: Photo, spec: ClipSpec) -> dict:
    """What a cached clip must have been made from to be reused."""
    return {"version": GEN_VERSION, "photo": photo.stem, "sha256": photo.sha256,
            "n_faces": len(photo.boxes), "spec": asdict(spec)}


def write_real_clip(image: np.ndarray, boxes: np.ndarray, spec: ClipSpec, path: Path,
                    photo: str = "") -> ClipTruth:
    """Render the clip to ``path`` (H.264 crf 18, mp4) and return its truth (not saved)."""
    import av

    from backend.sinks.recorder import add_h264_stream, to_video_frame

    rate = Fraction(spec.fps).limit_denominator(100000)
    tb = Fraction(rate.denominator, rate.numerator)
    all_boxes = np.zeros((spec.n_frames, len(boxes), 4))
    cores: list[list[int]] = []
    lits: list[np.ndarray] = []
    unlit = 0
    with av.open(os.fspath(path), "w", format="mp4") as out:
        video = add_h264_stream(out, spec.width, spec.height, rate, tb, crf=18)
        for i, (frame, fboxes) in enumerate(make_clip_frames(image, boxes, spec)):
            all_boxes[i] = fboxes
            for face, box in enumerate(fboxes):
                rect = core_rect(box, spec.width, spec.height)
                if rect is None:
                    continue
                lit = lit_mask(frame, rect)
                if not lit.any():
                    unlit += 1
                    continue
                cores.append([i, face, *rect])
                lits.append(lit)
            vf = to_video_frame(frame, video)
            vf.pts, vf.time_base = i, tb
            out.mux(video.encode(vf))
        out.mux(video.encode(None))
    return ClipTruth(spec, photo, all_boxes, np.asarray(cores, int).reshape(-1, 6), lits, unlit)


def _save_truth(truth: ClipTruth, meta: dict, base: Path) -> None:
    """``base.json`` (spec, boxes per frame) and ``base.npz`` (cores, packed lit masks)."""
    meta = {**meta, "unlit": truth.unlit,
            "boxes": np.round(truth.boxes, 2).tolist()}
    flat = np.concatenate([m.ravel() for m in truth.lit]) if truth.lit else np.zeros(0, bool)
    np.savez_compressed(base.with_suffix(".npz"), cores=truth.cores,
                        lit=np.packbits(flat), n_lit=np.array(flat.size))
    base.with_suffix(".json").write_text(json.dumps(meta))


def _load_truth(meta: dict, base: Path, spec: ClipSpec) -> ClipTruth | None:
    """The cached truth if it was made from the same photo, spec and generator."""
    try:
        saved = json.loads(base.with_suffix(".json").read_text())
        z = np.load(base.with_suffix(".npz"))
    except (OSError, ValueError):
        return None
    if any(saved.get(k) != v for k, v in meta.items()):
        return None
    cores = z["cores"].reshape(-1, 6)
    flat = np.unpackbits(z["lit"])[: int(z["n_lit"])].astype(bool)
    lits, pos = [], 0
    for _, _, xa, ya, xb, yb in cores:
        n = (xb - xa) * (yb - ya)
        lits.append(flat[pos:pos + n].reshape(yb - ya, xb - xa))
        pos += n
    return ClipTruth(spec, saved["photo"], np.asarray(saved["boxes"], float), cores, lits,
                     saved.get("unlit", 0))


def clip_for(photo: Photo, spec: ClipSpec, folder: Path) -> tuple[Path, ClipTruth]:
    """(path, truth) of a photo's clip, written once and reused from ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / clip_name(photo.stem, spec)
    path = base.with_suffix(".mp4")
    meta = _truth_meta(photo, spec)
    if path.is_file() and (truth := _load_truth(meta, base, spec)) is not None:
        return path, truth
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    truth = write_real_clip(photo.image, photo.boxes, spec, tmp, photo.stem)
    _save_truth(truth, meta, base)
    os.replace(tmp, path)
    return path, truth


def photo_seed(seed: int, stem: str) -> int:
    """Per-photo seed: each photo gets its own camera moves, stable across runs."""
    return seed + zlib.crc32(stem.encode()) % 100000


# -- running the tools ----------------------------------------------------------------
@dataclass(slots=True)
class ToolRun:
    """One tool's process over a set of inputs: outputs by input, wall time, outcome."""

    tool: str
    outputs: dict[Path, Path]
    seconds: float = 0.0
    ok: bool = False


def _links(inputs: Sequence[Path], folder: Path) -> list[Path]:
    """Symlinks to ``inputs`` in ``folder``: deface writes ``<name>_anonymized`` beside each
    input, so each configuration gets its own folder (links, never copies of the photos)."""
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for p in inputs:
        link = folder / p.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(p.resolve())
        links.append(link)
    return links


def tool_command(tool: str, inputs: Sequence[Path], folder: Path,
                 ptim_args: Sequence[str] = ()) -> tuple[list[str], dict[Path, Path]]:
    """(command, {input: output}) of one tool over all inputs, outputs under ``folder``."""
    if tool == "ptim":
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [python_exe(), str(PTIM_MAIN[0]), "process", *map(str, inputs),
               "-o", str(folder) + os.sep, "--quiet", "--mask", "solid", *ptim_args]
        return cmd, {p: folder / f"{p.stem}_masked{p.suffix}" for p in inputs}
    if tool in ("deface", "deface-640x360"):
        links = _links(inputs, folder)
        extra = ["--scale", "640x360"] if tool == "deface-640x360" else []
        cmd = [deface_exe(), *map(str, links), "--replacewith", "solid", *extra]
        return cmd, {p: folder / f"{p.stem}_anonymized{p.suffix}" for p in inputs}
    if tool == "passthrough":
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [python_exe(), str(Path(__file__).resolve()), "_passthrough", str(folder),
               *map(str, inputs)]
        return cmd, {p: folder / f"{p.stem}_pass{p.suffix}" for p in inputs}
    raise ValueError(f"unknown tool {tool!r}")


def run_tool(tool: str, inputs: Sequence[Path], folder: Path,
             ptim_args: Sequence[str] = ()) -> ToolRun:
    """Run one tool over all inputs as one timed process (stale outputs removed first)."""
    cmd, outputs = tool_command(tool, inputs, folder, ptim_args)
    for out in outputs.values():
        out.unlink(missing_ok=True)  # a failed run must not be scored on an old output
    media = [k for k, a in enumerate(cmd) if Path(a).suffix.lower() in (".mp4", ".jpg", ".png")]
    shown = [a for k, a in enumerate(cmd) if k not in media[1:]]  # one input stands for all
    print(f"$ {show(shown)}" + (f"  (+{len(media) - 1} more inputs)" if len(media) > 1 else ""),
          flush=True)
    res = run_timed(cmd, echo=False)
    print(f"  {tool}: {res.seconds:.1f} s (load average {os.getloadavg()[0]:.2f})", flush=True)
    missing = [o for o in outputs.values() if not o.is_file()]
    if missing:
        print(f"  {tool}: {len(missing)} output(s) missing, e.g. {missing[0].name}")
    return ToolRun(tool, outputs, res.seconds, res.returncode == 0 and not missing)


def _passthrough_many(argv: list[str]) -> int:
    """``real_world.py _passthrough DIR CLIP...``: pass-through of every clip, one process."""
    folder = Path(argv[0])
    for clip in map(Path, argv[1:]):
        passthrough(clip, folder / f"{clip.stem}_pass{clip.suffix}")
    return 0


# -- the benchmark --------------------------------------------------------------------
def run_photos(photos: list[Photo], tools: Sequence[str], ptim_args: Sequence[str]) -> dict:
    """Every tool on every photo; per tool: Tally, per-photo tallies, over-masking share."""
    import cv2

    results: dict = {}
    inputs = [p.path for p in photos]
    for tool in tools:
        run = run_tool(tool, inputs, WORK / "photos" / tool, ptim_args)
        total, per_photo, over = Tally(), {}, []
        for p in photos:
            out_path = run.outputs[p.path]
            out = cv2.imread(str(out_path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) \
                if out_path.is_file() else None
            t = Tally()
            if out is None:  # no output: every face of the photo counts as leaked
                out = p.image
            for r in score_photo(p.image, p.boxes, p.ignore, out):
                t.add(r)
            over.append(blacked_outside(p.image, p.boxes, p.ignore, out))
            per_photo[p.stem] = t
            total.merge(t)
        results[tool] = {"tally": total, "per_photo": per_photo, "ok": run.ok,
                         "blacked_outside": float(np.mean(over)), "seconds": run.seconds}
    return results


def warm_up(size: tuple[int, int], ptim_args: Sequence[str]) -> None:
    """One untimed PTIM run on a short clip: the first run on a machine derives and caches
    the int8 detector (a few seconds, once), which no timed run should pay."""
    _, clip = make_clip("demo", size, 10)
    cmd, _ = tool_command("ptim", [clip], WORK / "warm_up", ptim_args)
    res = run_timed(cmd, echo=False)
    print(f"-- warm-up run {res.seconds:.1f} s (untimed)", flush=True)


@dataclass(frozen=True, slots=True)
class ClipSet:
    """Clips of one size: every kind for each photo, ``n_frames`` each."""

    size: tuple[int, int]
    photos: tuple[Photo, ...]
    n_frames: int

    @property
    def key(self) -> str:
        """'WxH'."""
        return f"{self.size[0]}x{self.size[1]}"


def run_clips(sets: Sequence[ClipSet], seed: int, tools: Sequence[str],
              ptim_args: Sequence[str]) -> tuple[dict, dict, dict]:
    """Per clip set: make the clips, run every tool and the pass-through over all of them
    (one process each), score every output.

    Returns (leaks[size][kind][tool] -> Tally, speed[size][tool] -> {frames, seconds, fps, ok},
    per_clip[size][clip name][tool] -> Tally).
    """
    leaks: dict = {}
    speed: dict = {}
    per_clip: dict = {}
    for cs in sets:
        key, (w, h) = cs.key, cs.size
        t0 = time.perf_counter()
        clips: list[tuple[str, Path, ClipTruth, Photo]] = []
        for p in cs.photos:
            for kind in KINDS:
                spec = ClipSpec(kind, w, h, cs.n_frames, photo_seed(seed, p.stem))
                path, truth = clip_for(p, spec, WORK / "clips")
                clips.append((kind, path, truth, p))
        frames = sum(t.spec.n_frames for _, _, t, _ in clips)
        print(f"-- {key}: {len(cs.photos)} photos, {len(clips)} clips, {frames} frames, ready "
              f"in {time.perf_counter() - t0:.0f} s (load average {os.getloadavg()[0]:.2f})",
              flush=True)
        inputs = [c[1] for c in clips]
        runs = {tool: run_tool(tool, inputs, WORK / key / tool, ptim_args)
                for tool in (*tools, "passthrough")}
        speed[key] = {tool: {"frames": frames, "seconds": r.seconds, "ok": r.ok,
                             "fps": frames / r.seconds if r.ok and r.seconds else 0.0}
                      for tool, r in runs.items()}
        leaks[key] = {kind: {tool: Tally() for tool in tools} for kind in KINDS}
        per_clip[key] = {}
        for kind, path, truth, photo in clips:
            per_clip[key][path.stem] = {}
            away = truth.away_masks(path, clip_ignore(photo, truth.spec))
            for tool in tools:
                out = runs[tool].outputs[path]
                # no output at all: every face-frame counts as leaked
                t = truth.score(decode_frames(out), away) if out.is_file() \
                    else _all_leaked(truth)
                leaks[key][kind][tool].merge(t)
                per_clip[key][path.stem][tool] = t
        print(f"-- {key} scored (load average {os.getloadavg()[0]:.2f})", flush=True)
    return leaks, speed, per_clip


def _all_leaked(truth: ClipTruth) -> Tally:
    """The tally of a clip without output: every scored face-frame leaked (fail closed)."""
    tally = Tally(unlit=truth.unlit)
    for i, face, *_ in truth.cores:
        b = bucket(float(truth.boxes[i, face, 3] - truth.boxes[i, face, 1]))
        tally.total[b] += 1
        tally.leaked[b] += 1
    return tally


# -- printing -------------------------------------------------------------------------
def _cells(t: Tally) -> str:
    """'leaked/total' per bucket and for all, fixed width."""
    cells = [f"{t.leaked[b]}/{t.total[b]}" for b in BUCKETS]
    cells.append(f"{t.all_leaked}/{t.all_total}")
    return "".join(f" {c:>11}" for c in cells)


def _over(t: Tally) -> str:
    """The over-masking cells of a clip row: mean blacked-away share, half-black frames."""
    return f" {t.blacked_mean:>12.2%} {f'{t.blacked_half}/{t.frames}':>10}"


def _head(first: str) -> str:
    """Header row of a leak table."""
    return f"{first:<28}" + "".join(f" {b + ' px':>11}" for b in BUCKETS) + f" {'all':>11}"


def print_photos(res: dict, photos: list[Photo]) -> None:
    """Leaked/total faces per size bucket and tool, then per photo."""
    n = sum(len(p.boxes) for p in photos)
    print(f"\nStill photos: {len(photos)} photos, {n} true faces; leaked/counted by box height "
          f"(photo px)")
    head = _head("tool") + f" {'blacked away':>13}"
    print(head)
    print("-" * len(head))
    for tool, r in res.items():
        flag = "" if r["ok"] else "  (run failed)"
        print(f"{tool:<28}{_cells(r['tally'])} {r['blacked_outside']:>12.2%}{flag}")
    print("(blacked away: share of lit pixels far from any face, true or ignore, made black)")
    print()
    print(f"{'photo':<26} {'faces':>5}" + "".join(f" {t:>15}" for t in res))
    for p in photos:
        cells = "".join(f" {r['per_photo'][p.stem].all_leaked:>15}" for r in res.values())
        print(f"{p.stem:<26} {len(p.boxes):>5}{cells}")


def print_clips(leaks: dict, speed: dict, per_clip: dict, limit: int = 15) -> None:
    """Leak tables per size and kind, the clips where PTIM leaked most, then the speed table
    and the ratios."""
    for key, kinds in leaks.items():
        print(f"\nClips at {key}: leaked/counted face-frames by box height (clip px)")
        head = _head("kind / tool") + f" {'blacked away':>13} {'half-black':>10}"
        print(head)
        print("-" * len(head))
        tools = list(next(iter(kinds.values())))
        for kind, by_tool in kinds.items():
            for tool, t in by_tool.items():
                print(f"{kind + ' / ' + tool:<28}{_cells(t)}{_over(t)}")
        for tool in tools:
            t = Tally()
            for by_tool in kinds.values():
                t.merge(by_tool[tool])
            print(f"{'all / ' + tool:<28}{_cells(t)}{_over(t)}"
                  + (f"  ({t.unlit} unlit not counted)" if t.unlit else ""))
        print("(blacked away: mean share per frame of lit pixels far from any face made black; "
              "half-black: frames where that share is over 50%)")
        worst = sorted(per_clip[key].items(), key=lambda kv: -kv[1]["ptim"].all_leaked)
        worst = [(name, by) for name, by in worst if by["ptim"].all_leaked][:limit]
        if worst:
            print(f"  clips where ptim leaked (leaked/counted; worst {len(worst)}):")
            for name, by in worst:
                cells = ", ".join(f"{tool} {t.all_leaked}/{t.all_total}" for tool, t in by.items())
                print(f"    {name}: {cells}")
    print("\nSpeed (one process per tool over all clips of a size, start-up included once, "
          "solid masks)")
    head = f"{'size':<10} {'tool':<16} {'frames':>6} {'seconds':>8} {'fps':>7} " \
           f"{'vs deface':>9} {'% of pass':>9}"
    print(head)
    print("-" * len(head))
    for key, by_tool in speed.items():
        base = by_tool.get("deface", {}).get("fps", 0.0)
        ceiling = by_tool["passthrough"]["fps"]
        for tool, sp in by_tool.items():
            ratio = f"{sp['fps'] / base:.2f}x" if base and sp["fps"] else "-"
            share = f"{sp['fps'] / ceiling:.0%}" if ceiling and sp["fps"] else "-"
            fps = f"{sp['fps']:.1f}" if sp["ok"] else "failed"
            print(f"{key:<10} {tool:<16} {sp['frames']:>6} {sp['seconds']:>8.1f} {fps:>7} "
                  f"{ratio:>9} {share:>9}")
    for key, by_tool in speed.items():
        ours, deface = by_tool["ptim"]["fps"], by_tool.get("deface", {}).get("fps", 0.0)
        d640 = by_tool.get("deface-640x360", {}).get("fps", 0.0)
        ceiling = by_tool["passthrough"]["fps"]
        line = f"{key}: ptim {ours:.1f} fps"
        if deface:
            line += f", {ours / deface:.2f}x deface ({deface:.1f} fps)"
        if d640:
            line += f", {ours / d640:.2f}x deface-640x360 ({d640:.1f} fps)"
        if ceiling:
            line += f"; pass-through {ceiling:.1f} fps, ptim at {ours / ceiling:.0%} of it"
        print(line)


def _git_state() -> dict:
    """Commit and whether the tree has changes: figures are tied to the code that made them."""
    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], capture_output=True, text=True, cwd=PTIM_MAIN[0].parent)
        return r.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def to_json(args: argparse.Namespace, photos: list[Photo], sets: Sequence[ClipSet],
            photo_res: dict | None, clip_res: tuple[dict, dict, dict] | None,
            seconds: float) -> dict:
    """All figures of the run as plain JSON ([leaked, counted] pairs per bucket)."""
    doc: dict = {"meta": {"argv": sys.argv[1:], "faces": str(args.faces),
                          "photos": [p.stem for p in photos], "ptim_args": args.ptim_args,
                          "ptim_main": str(PTIM_MAIN[0]),
                          "clip_sets": [{"size": cs.key, "frames": cs.n_frames,
                                         "photos": [p.stem for p in cs.photos]} for cs in sets],
                          "seed": args.seed, "cpus": os.cpu_count(),
                          "load_average": os.getloadavg()[0], "seconds": round(seconds, 1),
                          "size_measure": "box height", **_git_state()}}
    if photo_res is not None:
        doc["photos"] = {tool: {**r["tally"].as_json(), "ok": r["ok"],
                                "blacked_outside": r["blacked_outside"],
                                "per_photo": {s: t.as_json() for s, t in r["per_photo"].items()}}
                         for tool, r in photo_res.items()}
    if clip_res is not None:
        leaks, speed, per_clip = clip_res
        doc["clips"] = {key: {kind: {tool: t.as_json() for tool, t in by_tool.items()}
                              for kind, by_tool in kinds.items()}
                        for key, kinds in leaks.items()}
        doc["per_clip"] = {key: {name: {tool: t.as_json() for tool, t in by.items()}
                                 for name, by in clips.items()}
                           for key, clips in per_clip.items()}
        doc["speed"] = speed
        doc["ratios_vs_deface"] = {key: {tool: sp["fps"] / by_tool["deface"]["fps"]
                                         for tool, sp in by_tool.items()}
                                   for key, by_tool in speed.items()
                                   if by_tool.get("deface", {}).get("fps")}
    return doc


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run photos and clips, print the tables; exit 2 without the faces folder,
    1 when a tool run failed, else 0 (figures, not a gate)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_passthrough"]:
        return _passthrough_many(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES,
                        help="folder of photos + boxes (default ../shared/real-faces)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{len(QUICK_PHOTOS)} photos, 12-frame clips, 1280x720 only")
    parser.add_argument("--photos", help="comma-separated photo stems (default all)")
    parser.add_argument("--photos-only", action="store_true", help="still photos only")
    parser.add_argument("--clips-only", action="store_true", help="clips only")
    parser.add_argument("--no-deface", action="store_true", help="PTIM (and pass-through) only")
    parser.add_argument("--sizes", help="comma-separated WxH; the first on every photo, the "
                        "others on --speed-photos (default 1280x720,1920x1080)")
    parser.add_argument("--frames", type=int, help="frames per clip at the first size "
                        "(default 16, quick 12)")
    parser.add_argument("--speed-photos", help="photos of the further sizes: stems or 'all' "
                        f"(default {','.join(QUICK_PHOTOS)})")
    parser.add_argument("--speed-frames", type=int, default=12,
                        help="frames per clip at the further sizes (12)")
    parser.add_argument("--seed", type=int, default=0, help="camera and noise seed (0)")
    parser.add_argument("--ptim-args", default="",
                        help='extra process args, e.g. "--threshold 0.3"')
    parser.add_argument("--ptim-root", type=Path,
                        help="run main.py of this checkout (e.g. a git worktree of HEAD)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--mosaics", help="also (or with --photos none: only) these mosaics of "
                        f"the crowd photos, small faces: {','.join(MOSAIC_CELLS)} or 'all'")
    args = parser.parse_args(argv)
    if args.photos_only and args.clips_only:
        parser.error("--photos-only and --clips-only exclude each other")
    args.sizes = args.sizes or ("1280x720" if args.quick else "1280x720,1920x1080")
    args.frames = args.frames or (12 if args.quick else 16)
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    if not sizes or args.frames < 1 or args.speed_frames < 1:
        parser.error("need a size, and --frames / --speed-frames of at least 1")
    stems = args.photos.split(",") if args.photos else (QUICK_PHOTOS if args.quick else None)
    try:
        photos = [] if stems == ["none"] else load_photos(args.faces, stems)
        if args.mosaics:
            names = list(MOSAIC_CELLS) if args.mosaics == "all" else args.mosaics.split(",")
            photos += load_mosaics(args.faces, names)
        if not photos:
            raise FileNotFoundError("no photos: --photos none needs --mosaics")
    except (FileNotFoundError, ValueError) as exc:
        print(f"real_world: {exc}", file=sys.stderr)
        return 2
    if args.speed_photos == "all":
        speed_photos = photos
    else:
        wanted = args.speed_photos.split(",") if args.speed_photos else QUICK_PHOTOS
        # the default subset shrinks with --photos; named stems must be loaded
        speed_photos = [p for p in photos if p.stem in wanted] or photos
        unknown = set(wanted) - {p.stem for p in photos}
        if args.speed_photos and unknown:
            parser.error(f"--speed-photos not among the photos: {', '.join(sorted(unknown))}")
    if args.ptim_root is not None:
        if not (args.ptim_root / "main.py").is_file():
            parser.error(f"--ptim-root: no main.py in {args.ptim_root}")
        PTIM_MAIN[0] = args.ptim_root.resolve() / "main.py"
    sets = [ClipSet(sizes[0], tuple(photos), args.frames)]
    sets += [ClipSet(sz, tuple(speed_photos), args.speed_frames) for sz in sizes[1:]]
    ptim_args = shlex.split(args.ptim_args)
    tools = ("ptim",) if args.no_deface else TOOLS
    t0 = time.perf_counter()
    print(f"{len(photos)} photos from {args.faces}; {os.cpu_count()} CPUs; "
          f"ptim args: {shlex.join(['--mask', 'solid', *ptim_args])}", flush=True)
    warm_up(sizes[0], ptim_args)
    photo_res = clip_res = None
    if not args.clips_only:
        photo_res = run_photos(photos, tools, ptim_args)
    if not args.photos_only:
        clip_res = run_clips(sets, args.seed, tools, ptim_args)
    seconds = time.perf_counter() - t0
    if photo_res is not None:
        print_photos(photo_res, photos)
    if clip_res is not None:
        print_clips(*clip_res)
    print(f"\nrun took {seconds:.0f} s; load average {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = to_json(args, photos, sets, photo_res, clip_res, seconds)
        args.json.write_text(json.dumps(doc, indent=1))
        print(f"figures written to {args.json}")
    speed = clip_res[1] if clip_res else {}
    failed = [t for t, r in (photo_res or {}).items() if not r["ok"]]
    failed += [f"{t}@{k}" for k, by in speed.items() for t, sp in by.items() if not sp["ok"]]
    if failed:
        print(f"failed runs: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
