"""The detection schedule on the real CenterFace model and real face pixels (no mocks).

Faces are scikit-image's astronaut and LFW crops scaled down to 12-20 px and pasted into
generated frames (tests/faces.py). "Found" means what masks a face in a still image: a box
with IoU > 0.3 to the face scoring at least ``detector.threshold`` (the score that starts
a track), from a detector that reports down to the pipeline's threshold.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from backend.detect import CenterFaceDetector
from backend.detect.schedule import (
    AGE_CELL,
    STILL_TILE,
    DetectionSchedule,
    Region,
    coarse_scale_for,
    merge_detections,
    overlap_for,
)
from backend.pipeline import detect_threshold, schedule_for
from backend.track import Tracker
from backend.types import ORIGIN_REFINED, Detections
from config.schema import Settings
from tests.faces import astronaut_face, background, iou, lfw_face, matches, paste

SETTINGS = Settings()
START = SETTINGS.detector.threshold  # a detection this strong starts a track (is masked)
CONTINUE = SETTINGS.tracker.continue_threshold


@pytest.fixture(scope="module")
def detector() -> CenterFaceDetector:
    """The detector as ``process`` builds it on CPU: it reports down to the lower of the
    start and continue thresholds."""
    return CenterFaceDetector(provider="cpu", threshold=detect_threshold(SETTINGS))


def _scores(dets: Detections, face) -> list[float]:
    return [float(c) for b, c in zip(dets.xyxy, dets.confidence, strict=True)
            if iou(b, face) > 0.3]


def _found(dets: Detections, face) -> bool:
    return any(s >= START for s in _scores(dets, face))


def _faces_frame(width: int, height: int, px: int, seed: int) -> tuple[np.ndarray, list]:
    """A frame with six astronaut faces of ``px`` (head and shoulders around each) spread
    over it, away from each other and from the frame's edges."""
    frame = background(width, height, seed)
    patch = astronaut_face(px, margin=1.5)
    rng = np.random.default_rng(seed)
    faces = []
    for fx in (0.15, 0.5, 0.82):
        for fy in (0.25, 0.7):
            x = fx * width + rng.uniform(-20, 20)
            y = fy * height + rng.uniform(-20, 20)
            faces.append(paste(frame, patch, x, y))
    return frame, faces


# -- 1. the scale policy -------------------------------------------------------------------


def test_default_settings_use_the_schedule_and_say_why():
    schedule = schedule_for(SETTINGS)
    assert isinstance(schedule, DetectionSchedule)
    assert schedule.min_face_px == SETTINGS.detector.min_face_px == 12
    plan = schedule.plan(1280, 720)
    assert plan.protected_px <= 12
    assert plan.fine_scale > plan.coarse_scale  # the whole-frame pass alone cannot see 12 px
    assert "faces from 12 px" in plan.describe()


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)], ids=["720p", "1080p"])
@pytest.mark.parametrize(("px", "min_face"), [(12, 12), (16, 12), (20, 12), (16, 16),
                                              (20, 20)])
def test_the_policy_examines_a_face_of_min_size_at_a_scale_that_finds_it(
        detector, size, px, min_face):
    width, height = size
    frame, faces = _faces_frame(width, height, px, seed=px + width)
    schedule = DetectionSchedule(min_face)
    plan = schedule.plan(width, height, still=True)
    assert plan.protected_px <= min_face
    dets = detector.detect_regions(frame, schedule.regions(width, height, still=True))
    missed = [(i, round(max(_scores(dets, f), default=0.0), 2))
              for i, f in enumerate(faces) if not _found(dets, f)]
    assert not missed, (f"{px} px faces at {width}x{height}, min_face_px {min_face} "
                        f"(fine scale {plan.fine_scale:.2f}): missed (face, best score) "
                        f"{missed}; start threshold {START}")


@pytest.mark.parametrize("px", [12, 14])
def test_one_whole_frame_pass_at_448_misses_small_faces(detector, px):
    """Why the policy matters: the old single pass (448 px long side) finds none of them."""
    width, height = 1280, 720
    frame, faces = _faces_frame(width, height, px, seed=7 * px)
    coarse = Region(0, 0, width, height, coarse_scale_for(width, height, 448), "coarse")
    dets = detector.detect_regions(frame, [coarse])
    assert not [f for f in faces if matches(dets.xyxy, f)]


# -- 2. tiles ----------------------------------------------------------------------------


def _neighbours(tiles):
    """Pairs of tiles next to each other in the grid: same row and next column, or same
    column and next row."""
    xs = sorted({t.x0 for t in tiles})
    ys = sorted({t.y0 for t in tiles})
    by = {(t.x0, t.y0): t for t in tiles}
    for t in tiles:
        i, j = xs.index(t.x0), ys.index(t.y0)
        if i + 1 < len(xs):
            yield "x", t, by[(xs[i + 1], t.y0)]
        if j + 1 < len(ys):
            yield "y", t, by[(t.x0, ys[j + 1])]


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (960, 540), (640, 360),
                                  (3840, 2160), (8192, 6144)])
@pytest.mark.parametrize("still", [False, True], ids=["video", "still"])
@pytest.mark.parametrize("min_face", [8, 12, 20])
def test_tiles_cover_the_frame_and_neighbours_overlap(size, still, min_face):
    width, height = size
    schedule = DetectionSchedule(min_face, period=6)
    plan = schedule.plan(width, height, still=still)
    if not plan.tiles:  # the whole-frame pass already sees the smallest face
        assert plan.coarse_scale >= plan.fine_scale
        return
    assert all(t.kind == "fine" for t in plan.tiles)
    assert plan.tiles[0].scale == plan.fine_scale
    # a still image is tiled at the fine scale and at levels 4x coarser each; video at one
    scales = sorted({t.scale for t in plan.tiles}, reverse=True)
    assert still or scales == [plan.fine_scale]
    for k, scale in enumerate(scales):
        tiles = [t for t in plan.tiles if t.scale == scale]
        assert len({(t.x0, t.y0) for t in tiles}) == len(tiles)
        covered = np.zeros((height, width), bool)
        for t in tiles:
            assert 0 <= t.x0 < t.x1 <= width and 0 <= t.y0 < t.y1 <= height
            covered[t.y0:t.y1, t.x0:t.x1] = True
        assert covered.all(), f"{(~covered).sum()} pixels in no tile at {scale}"
        coarser = scales[k + 1] if k + 1 < len(scales) else plan.coarse_scale
        need = overlap_for(coarser, scale)
        for axis, a, b in _neighbours(tiles):
            got = a.x1 - b.x0 if axis == "x" else a.y1 - b.y0
            assert got >= need, f"{axis} neighbours {a} {b} overlap {got} < {need}"
    tiles = plan.tiles
    if still:
        assert all(t.input_size[0] <= STILL_TILE[0] and t.input_size[1] <= STILL_TILE[1]
                   for t in tiles)
    else:
        assert len(tiles) <= schedule.period
        # one tile a frame: every tile comes round within the period
        seen = set()
        for _ in range(plan.period):
            regions = schedule.regions(width, height)
            assert regions[0] == Region(0, 0, width, height, plan.coarse_scale, "coarse")
            seen.update(r for r in regions if r.kind == "fine")
        assert seen == set(tiles) | set(plan.edges)  # the first frame's edge bands too


def test_the_overlap_holds_the_largest_face_only_the_fine_pass_finds():
    for width, height in ((1280, 720), (1920, 1080)):
        plan = DetectionSchedule(12).plan(width, height)
        largest = 12 / plan.coarse_scale  # bigger faces the coarse pass finds itself
        assert overlap_for(plan.coarse_scale, plan.fine_scale) >= largest


@pytest.mark.parametrize("px", [20, 32])
def test_a_face_across_a_tile_border_is_found_once(detector, px):
    width, height = 1280, 720
    schedule = DetectionSchedule(12)
    plan = schedule.plan(width, height)
    a, b = plan.tiles[0], plan.tiles[1]  # left and right neighbours on the top row
    assert a.y0 == b.y0 and b.x0 < a.x1
    patch = astronaut_face(px, margin=1.5)
    for k, x in enumerate(np.linspace(b.x0 - px / 2, a.x1 - px / 2, 5)):
        frame = background(width, height, seed=100 + k)
        face = paste(frame, patch, float(x), 150.0)
        for regions in ([a, b], schedule.regions(width, height, still=True)):
            dets = detector.detect_regions(frame, regions)
            assert _found(dets, face), f"face at x {x:.0f} not found in {regions}"
            n = matches(dets.xyxy, face)
            assert n == 1, f"face at x {x:.0f} (tile border {b.x0}-{a.x1}): {n} boxes"


@pytest.mark.parametrize("px", [20, 32])
def test_no_second_box_lies_on_a_face_the_tiles_found(detector, px):
    """The coarse pass sees a 20-32 px face at 7-11 input pixels and may return a loose,
    weak box about twice its size around it; merged with the fine tiles' tight box it must
    not survive as a second box on the face (the tracker would see two faces there)."""
    width, height = 1280, 720
    schedule = DetectionSchedule(12)
    plan = schedule.plan(width, height)
    a, b = plan.tiles[0], plan.tiles[1]
    patch = astronaut_face(px, margin=1.5)
    for k, x in enumerate(np.linspace(b.x0 - px / 2, a.x1 - px / 2, 5)):
        frame = background(width, height, seed=100 + k)
        face = paste(frame, patch, float(x), 150.0)
        dets = detector.detect_regions(frame, schedule.regions(width, height, still=True))
        cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
        on_face = [(bx.round(0).tolist(), round(float(c), 2))
                   for bx, c in zip(dets.xyxy, dets.confidence, strict=True)
                   if bx[0] <= cx <= bx[2] and bx[1] <= cy <= bx[3]]
        assert len(on_face) == 1, f"face {np.round(face)} at x {x:.0f}: boxes {on_face}"


def test_merge_detections_keeps_one_box_per_face():
    face = [100, 100, 130, 136]
    other = [400, 100, 430, 136]
    dets = Detections(
        np.array([face, [101, 99, 131, 137],  # the same face from the next tile
                  [100, 100, 118, 136],  # its left part, where a tile's edge cut it
                  other], np.float32),
        confidence=[0.6, 0.8, 0.3, 0.5],
        origin=[0, 1, 0, 0],
    )
    out = merge_detections(dets)
    assert len(out) == 2
    assert matches(out.xyxy, face) == 1 and matches(out.xyxy, other) == 1
    kept = next(i for i, b in enumerate(out.xyxy) if iou(b, face) > 0.3)
    assert out.confidence[kept] == pytest.approx(0.8)  # the best score is kept
    assert out.origin[kept] == ORIGIN_REFINED  # with its origin
    # a small face inside a large one's box is a face of its own, not a fragment
    big = Detections(np.array([[0, 0, 300, 300], [100, 100, 120, 120]], np.float32),
                     confidence=[0.9, 0.5])
    assert len(merge_detections(big)) == 2


# -- 3. refinement crops -------------------------------------------------------------------


@pytest.mark.parametrize(("index", "px"), [(0, 18), (11, 18), (11, 16)])
def test_refinement_crops_follow_a_moving_small_face(detector, index, px):
    """An LFW face of 16-18 px crossing a 1280x720 frame at 6 px a frame: once its track
    exists it is re-detected in every frame (never only held), in its refinement crop
    where this frame's fine tile does not hold it, and the track keeps its id."""
    width, height = 1280, 720
    schedule = schedule_for(SETTINGS)
    tracker = Tracker(SETTINGS.tracker)
    tracker.new_track_threshold = START
    patch = lfw_face(index, px)
    bg = background(width, height, seed=index)
    track_id = None
    refined = 0
    log = []
    for i in range(24):
        frame = bg.copy()
        face = paste(frame, patch, 300 + 6 * i, 200 + 2 * i)
        regions = schedule.regions(width, height, tracker.tracks, lead=1.0)
        dets = detector.detect_regions(frame, regions)
        tracks = tracker.update(dets, (width, height))
        mine = [t for t in tracks if iou(t.box, face) > 0.25]
        if track_id is None:
            if mine:
                track_id = mine[0].track_id
                born = i
            continue
        tile = next((r for r in regions if r.kind == "fine"), None)
        in_tile = tile is not None and tile.x0 <= face[0] and tile.y0 <= face[1] and \
            face[2] <= tile.x1 and face[3] <= tile.y1
        hit = [k for k, b in enumerate(dets.xyxy) if iou(b, face) > 0.3]
        log.append((i, [round(float(dets.confidence[k]), 2) for k in hit],
                    [int(dets.origin[k]) for k in hit], in_tile))
        assert hit, f"frame {i}: face not re-detected; regions {regions}; so far {log}"
        assert dets.confidence[hit[0]] >= CONTINUE
        if not in_tile:
            assert dets.origin[hit[0]] == ORIGIN_REFINED, log
            refined += 1
        t = next(t for t in tracks if t.track_id == track_id)
        assert not t.held_over, f"frame {i}: track only held; {log}"
        # the track's box is smoothed and padded, the patch has a margin round the face
        assert iou(t.box, face) > 0.25, (t.box, face)
        assert len(mine) == 1 and mine[0].track_id == track_id
    assert track_id is not None, "the face was never found"
    assert born < schedule.plan(width, height).period  # found within one fine period
    assert refined >= 10


def test_the_first_frame_also_sees_its_edges_at_the_cover_scale() -> None:
    from backend.detect.schedule import overlap_for

    sched = DetectionSchedule(12)
    plan = sched.plan(1280, 720)
    # the scale every part of the picture is seen at once: 16 px faces at 16 px
    assert plan.cover_scale == pytest.approx(1.0) and plan.fine_scale > plan.cover_scale
    assert len(plan.edges) == 4 and all(r.scale == plan.cover_scale for r in plan.edges)
    depth = overlap_for(plan.coarse_scale, plan.fine_scale)
    border = np.zeros((720, 1280), bool)
    for r in plan.edges:
        border[r.y0:r.y1, r.x0:r.x1] = True
    ring = np.ones((720, 1280), bool)
    ring[depth:720 - depth, depth:1280 - depth] = False
    assert border[ring].all() and not border[~ring].any()  # the ring, nothing else
    first = sched.regions(1280, 720)
    assert [r for r in first if r in plan.edges] == list(plan.edges)
    assert not [r for r in sched.regions(1280, 720) if r in plan.edges]
    sched.reset(5)  # a window that starts later: its first frame is not the file's
    assert not [r for r in sched.regions(1280, 720) if r in plan.edges]
    sched.reset()
    assert [r for r in sched.regions(1280, 720) if r in plan.edges] == list(plan.edges)
    assert "edges" in plan.describe()
    assert sched.plan(1280, 720, still=True).edges == ()  # a still image is tiled whole
    assert DetectionSchedule(40).plan(640, 360).edges == ()  # no fine pass: none


# -- the fine pass's memory of a moving picture ------------------------------------------------


def _see(seen: np.ndarray, r: Region, margin: float, offset: int, width: int, height: int,
         cell: int) -> None:
    """Mark in ``seen`` (scene cells of ``cell`` px, the frame ``offset`` px into the scene)
    the cells of region ``r``'s part away from its sides by ``margin`` (sides on the frame's
    edge stay): where a face the fine pass is for lies whole in it."""
    x0 = r.x0 if r.x0 <= 0 else r.x0 + margin
    x1 = r.x1 if r.x1 >= width else r.x1 - margin
    y0 = r.y0 if r.y0 <= 0 else r.y0 + margin
    y1 = r.y1 if r.y1 >= height else r.y1 - margin
    seen[int(np.ceil(y0 / cell)):int(y1 // cell),
         int(np.ceil((x0 + offset) / cell)):int((x1 + offset) // cell)] = True


def _pan(schedule: DetectionSchedule, frames: int, step, width: int = 1280,
         height: int = 720, cell: int = 8) -> tuple[np.ndarray, np.ndarray, int]:
    """Run ``schedule`` over a picture panning by ``step`` (x px a frame, content moving left)
    and return, in scene cells of ``cell`` px, what was in view for two frames or more, what
    a fine-pass region saw (a face the fine pass is for whole in it: away from its sides by
    half the tile overlap), and the fine-pass input pixels spent (the file's end included)."""
    from backend.types import CameraMotion

    plan = schedule.plan(width, height)
    # the schedule's memory is in cells of AGE_CELL px, a face's centre anywhere in one
    margin = overlap_for(plan.coarse_scale, plan.fine_scale) / 2 - AGE_CELL / 2
    span = width + int(abs(step or 0)) * frames
    in_view = np.zeros((height // cell, span // cell + 1), int)
    seen = np.zeros_like(in_view, bool)
    spent = 0

    def mark(regions, offset):
        nonlocal spent
        for r in regions:
            if r.kind != "fine":
                continue
            spent += r.input_pixels
            _see(seen, r, margin, offset, width, height, cell)

    motion = None if step is None else CameraMotion.shift(-abs(step), 0)
    speed = 0 if step is None else int(abs(step))
    for i in range(frames):
        offset = speed * i
        in_view[:, -(-offset // cell):(offset + width) // cell] += 1  # cells wholly in view
        mark(schedule.regions(width, height, [], 1.0, False, motion if i else None,
                              motion if i else None), offset)
    mark(schedule.end_regions(width, height), speed * (frames - 1))
    return in_view >= 2, seen, spent


def test_a_pan_s_new_ground_is_examined_while_in_view() -> None:
    """A fast pan (60 px a frame: the frame's content is replaced in 21 frames): every part
    of the picture in view for two frames or more is examined by the fine pass, new ground
    as it comes in, what leaves unseen in a last look, what the file's end shows in the end
    pass; a schedule that does not know the motion leaves much of it unseen."""
    shown, seen, spent = _pan(DetectionSchedule(12, period=16), 24, 60)
    assert seen[shown].all(), f"{(~seen & shown).sum()} of {shown.sum()} cells never seen"
    # the tiles' plain rotation over the same moving picture leaves a good part unseen
    shown_blind, seen_blind = _pan_blind(24, 60)
    assert (~seen_blind & shown_blind).sum() > 0.1 * shown_blind.sum()
    # a still picture's 24 frames cost one look at all of it and 8 tiles more: the pan
    # costs about one more look at what came in
    _, _, still = _pan(DetectionSchedule(12, period=16), 24, 0)
    assert spent < 2.0 * still, (spent, still)


def _pan_blind(frames: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """``_pan`` with the tiles' plain rotation: the picture moves, the schedule is not told."""
    schedule = DetectionSchedule(12, period=16)
    width, height, cell = 1280, 720, 8
    plan = schedule.plan(width, height)
    margin = overlap_for(plan.coarse_scale, plan.fine_scale) / 2 - AGE_CELL / 2
    span = width + step * frames
    in_view = np.zeros((height // cell, span // cell + 1), int)
    seen = np.zeros_like(in_view, bool)
    for i in range(frames):
        offset = step * i
        in_view[:, -(-offset // cell):(offset + width) // cell] += 1
        _see(seen, plan.tiles[i % len(plan.tiles)], margin, offset, width, height, cell)
    return in_view >= 2, seen


def test_a_still_picture_gets_each_tile_in_turn_and_nothing_more() -> None:
    from backend.types import CameraMotion

    schedule = DetectionSchedule(12, period=16)
    plan = schedule.plan(1280, 720)
    still = CameraMotion.identity()
    chosen = []
    for i in range(48):
        regions = schedule.regions(1280, 720, [], 1.0, False, still if i else None,
                                   still if i else None)
        fine = [r for r in regions if r.kind == "fine" and r not in plan.edges]
        assert len(fine) == 1 and fine[0] in plan.tiles, (i, fine)  # one tile, no patch
        chosen.append(plan.tiles.index(fine[0]))
    # each tile comes round every period, never later: a new small face is seen within one
    assert sorted(chosen[:16]) == list(range(16)), chosen
    assert all(chosen[i] == chosen[i - 16] for i in range(16, 48)), chosen
    # the whole picture was examined: the file's end sees only its edges
    assert schedule.end_regions(1280, 720) == list(plan.edges)


def test_a_short_file_s_end_examines_what_its_tiles_never_reached() -> None:
    schedule = DetectionSchedule(12, period=16)
    plan = schedule.plan(1280, 720)
    for _ in range(6):
        schedule.regions(1280, 720)
    end = schedule.end_regions(1280, 720)
    assert end[:4] == list(plan.edges) and all(r.scale == plan.cover_scale for r in end)
    # with the six tiles seen, the end's regions reach every pixel of the frame, and cost
    # no more than the tiles they stand for would at that scale
    covered = np.zeros((720, 1280), bool)
    for r in [*plan.tiles[:6], *end]:
        covered[r.y0:r.y1, r.x0:r.x1] = True
    assert covered.all()
    rest = [replace(t, scale=plan.cover_scale) for t in plan.tiles[6:]]
    assert sum(r.input_pixels for r in end[4:]) <= sum(r.input_pixels for r in rest)
    schedule.reset()
    assert schedule.end_regions(1280, 720) == list(plan.edges)  # a new stream: no memory


def test_a_file_s_end_over_unseen_ground_takes_few_large_tiles() -> None:
    """A pan's end shows mostly ground the tiles never reached: it is examined in a few
    bounded tiles, not a patch per fine tile, each overlapping its neighbours by what the
    fine pass is for, so a face there lies whole in one."""
    from backend.types import CameraMotion

    schedule = DetectionSchedule(12, period=16)
    plan = schedule.plan(1280, 720)
    pan = CameraMotion.shift(-200, 0)
    for i in range(4):
        schedule.regions(1280, 720, [], 1.0, False, pan if i else None, pan if i else None)
    end = schedule.end_regions(1280, 720)[4:]
    assert 1 <= len(end) <= 3, end
    assert all(max(r.input_size) <= 1024 for r in end)
    per_tile = [replace(t, scale=plan.cover_scale) for t in plan.tiles]
    assert sum(r.input_pixels for r in end) < 0.8 * sum(r.input_pixels for r in per_tile)
    ov = overlap_for(plan.coarse_scale, plan.cover_scale)
    xs = sorted((r.x0, r.x1) for r in end)
    assert all(a[1] - b[0] >= ov for a, b in zip(xs, xs[1:], strict=False) if b[0] > 0)

