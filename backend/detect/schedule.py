"""The detection schedule: which parts of a frame the detector sees, at which scale.

Detection work is spent where faces are, not on every pixel of every frame:

- a **coarse** pass sees the whole frame every frame at a small input (large and fast faces);
- a **fine** pass sees the frame at the scale the smallest face to protect needs
  (``min_face_px``), in overlapping tiles, one tile per frame, so the whole frame is covered
  once every ``period`` frames: a new small face is first seen at most ``period - 1`` frames
  after it appears (files then mask the frames before, in the second pass);
- a **refinement** crop around every known track, every frame, at a scale that shows its
  face at about ``REFINE_FACE_PX`` input pixels (never below the fine scale's detail), so a
  small face, once found, is re-detected each frame for the cost of its crop.

Everything here is geometry on plain numbers; running the network is the detector's job
(``CenterFaceDetector.detect_regions``). Regions are in source pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from backend.types import Detections, Track

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
STILL_OVERSAMPLE = 1.5
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
    edges: tuple[Region, ...] = ()  # the first frame's border bands at the fine scale

    @property
    def period(self) -> int:
        """Frames until the fine pass has seen the whole frame (1 without a fine pass)."""
        return max(1, len(self.tiles))

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
                    f"{tw}x{th}, one per frame (a new small face is seen within "
                    f"{self.period} frame(s))")
            if self.edges:
                fine += ("; the first frame's edges at the fine scale too (and a file's last "
                         "frame's)")
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
            edges = () if still or not tiles else edge_bands(width, height, fine, ov)
            plan = SchedulePlan(int(width), int(height), self.min_face_px, coarse, fine,
                                tuple(tiles), self.refine and not still, edges)
            self._plans[key] = plan
        return plan

    def regions(self, width: int, height: int, tracks: list[Track] | None = None,
                lead: float = 1.0, still: bool = False) -> list[Region]:
        """Regions for the next frame: the coarse pass, this frame's fine tile (all tiles
        for a still image) and a refinement crop per track."""
        plan = self.plan(width, height, still)
        out = [Region(0, 0, int(width), int(height), plan.coarse_scale, "coarse")]
        if plan.tiles:
            out.extend(plan.tiles if still else [plan.tiles[self._count % len(plan.tiles)]])
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

    def reset(self, start: int = 0) -> None:
        """Start the tile rotation over (a new stream), at frame ``start`` of it.

        A window of a file starts at its first frame's index, so each frame gets the tile it
        gets in a run over the whole file.
        """
        self._count = int(start)
